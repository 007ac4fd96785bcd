"""Ray Data feeding of the three Movies2Scenes steps, from the catalog's tables (never gathered on the driver).

    movies(store, table)       one row per movie: its shot features, stacked in shot order
    movie_pairs(...)           movie pairs (a, b, label) joined with both movies' features
    keyframe_movies(store)     one row per movie: its keyframe JPEGs in shot order
    scene_frames(...)          selected scene pairs joined with both movies' keyframes: the scenes' JPEGs

Pairs and scene pairs are small (ids and shot numbers) and come from the driver; the features and
frames they point at stay in Ray Data's blocks. The joins (hash shuffles) run once, before training:
their results are materialized in the object store (spilled to disk when large) and every epoch
streams them through a cheap map (padding, JPEG decoding) to the workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from movielib.store import CatalogStore, not_null
from movielib.train.movies2scenes.similarity import pad_or_cut
from movielib.train.tables import movie_partitions, partitions_for

if TYPE_CHECKING:
    import ray.data

PAIRS = pa.schema([("a", pa.string()), ("b", pa.string()), ("label", pa.float32())])


def stack_movies(shots: int | None = None):
    """A map_groups function: a movie's rows (any order) -> one row (video_id, shot_idx list, features: n_shots *
    dim floats in shot order), cut to its first `shots` shots when given (step 1 pads or cuts to 1024 anyway:
    only those travel)."""

    def stack_movie(group: pa.Table) -> pa.Table:
        group = group.sort_by("shot_idx")
        return _stack_movie(group.slice(0, shots) if shots else group)

    return stack_movie


def _stack_movie(group: pa.Table) -> pa.Table:
    """A movie's rows (in shot order) -> one row: video_id, shot_idx (list), features (n_shots * dim floats)."""
    emb = group["embedding"].combine_chunks()
    return pa.table(
        {
            "video_id": [group["video_id"][0].as_py()],
            "shot_idx": [group["shot_idx"].combine_chunks()],
            "features": pa.array([emb.flatten()], pa.list_(pa.float32())),
        },
        schema=pa.schema(
            [("video_id", pa.string()), ("shot_idx", pa.list_(pa.int32())), ("features", pa.list_(pa.float32()))]
        ),
    )


def movies(
    store: CatalogStore, table: str, model: str | None = None, version: str | None = None, shots: int | None = None
) -> ray.data.Dataset:
    """One row per movie with its per-shot features (features/keyframe or features/image), stacked (its first
    `shots` shots when given)."""
    ds = store.dataset(table, columns=["video_id", "shot_idx", "model", "embedding"], model=model, version=version)
    ds = ds.filter(expr=not_null("embedding"))
    return ds.groupby("video_id", num_partitions=movie_partitions(store)).map_groups(
        stack_movies(shots), batch_format="pyarrow"
    )


def _join_movies(pairs: ray.data.Dataset, movie_rows: ray.data.Dataset, partitions: int) -> ray.data.Dataset:
    """pairs (a, b, ...) with columns a_shot_idx, a_features, b_shot_idx, b_features from the movie rows."""
    for side in ("a", "b"):
        renamed = movie_rows.rename_columns(
            {"video_id": side, "shot_idx": f"{side}_shot_idx", "features": f"{side}_features"}
        )
        pairs = pairs.join(renamed, join_type="inner", num_partitions=partitions, on=(side,))
    return pairs


class PadPairs:
    """Joined pair rows -> fixed-size tensors: x1, x2 (shots, dim) padded or cut, their masks, the label."""

    def __init__(self, shots: int, dim: int):
        self.shots, self.dim = shots, dim

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        import torch

        out: dict[str, list] = {"x1": [], "m1": [], "x2": [], "m2": []}
        # np.array copies: Arrow's buffers are read-only, and torch warns on a tensor over one
        for side, key in (("a", "1"), ("b", "2")):
            for feats in batch[f"{side}_features"].to_numpy(zero_copy_only=False):
                x, m = pad_or_cut(torch.from_numpy(np.array(feats, np.float32).reshape(-1, self.dim)), self.shots)
                out[f"x{key}"].append(x.numpy())
                out[f"m{key}"].append(m.numpy())
        return {**{k: np.stack(v) for k, v in out.items()}, "label": batch["label"].to_numpy()}


def movie_pairs(
    store: CatalogStore,
    pairs: pa.Table,
    table: str,
    model: str | None,
    version: str | None = None,
    shots: int | None = None,
) -> ray.data.Dataset:
    """Movie pairs (a, b, label) with both movies' stacked shot features; step 1 materializes it once and maps
    `PadPairs` over it each epoch, step 2 reads every shot."""
    import ray.data

    return _join_movies(
        ray.data.from_arrow(pairs), movies(store, table, model, version, shots), partitions_for(pairs.num_rows)
    )


def _stack_keyframes(group: pa.Table) -> pa.Table:
    group = group.sort_by("shot_idx")
    return pa.table(
        {
            "video_id": [group["video_id"][0].as_py()],
            "shot_idx": [group["shot_idx"].combine_chunks()],
            "jpegs": [group["jpeg"].combine_chunks()],
        },
        schema=pa.schema(
            [("video_id", pa.string()), ("shot_idx", pa.list_(pa.int32())), ("jpegs", pa.list_(pa.binary()))]
        ),
    )


def keyframe_movies(store: CatalogStore) -> ray.data.Dataset:
    """One row per movie: its shot numbers and keyframe JPEGs, in shot order."""
    return (
        store.dataset("keyframes", columns=["video_id", "shot_idx", "jpeg"])
        .groupby("video_id", num_partitions=movie_partitions(store))
        .map_groups(_stack_keyframes, batch_format="pyarrow")
    )


def decode_jpegs(jpegs: list[bytes]) -> np.ndarray:
    """JPEGs of one size -> (n, H, W, 3) RGB uint8."""
    import cv2

    return np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for j in jpegs])


def decode_scenes(batch: pa.Table) -> dict[str, np.ndarray]:
    """q, k JPEG lists -> (B, n shots, H, W, 3) uint8 scenes."""
    return {side: np.stack([decode_jpegs(j) for j in batch[side].to_pylist()]) for side in ("q", "k")}


SCENE_SHOTS = pa.schema(
    [
        ("pair", pa.int64()),
        ("side", pa.int8()),
        ("pos", pa.int16()),
        ("video_id", pa.string()),
        ("shot_idx", pa.int32()),
    ]
)


def wanted_shots(scene_pairs: pa.Table) -> pa.Table:
    """One row per shot a scene pair needs: (pair, side 0 = movie a / 1 = movie b, position in the scene,
    video_id, shot_idx), from the pairs' first / last shots (inclusive)."""
    cols = []
    for side, (movie, first, last) in enumerate((("movie_a", "a_first", "a_last"), ("movie_b", "b_first", "b_last"))):
        f, lengths = scene_pairs[first].to_numpy(), scene_pairs[last].to_numpy() - scene_pairs[first].to_numpy() + 1
        pair = np.repeat(np.arange(scene_pairs.num_rows), lengths)
        pos = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        ids = np.repeat(np.asarray(scene_pairs[movie].to_pylist(), dtype=object), lengths)
        cols.append(
            pa.table(
                {
                    "pair": pair,
                    "side": np.full(len(pair), side, np.int8),
                    "pos": pos.astype(np.int16),
                    "video_id": pa.array(ids.tolist(), pa.string()),
                    "shot_idx": (np.repeat(f, lengths) + pos).astype(np.int32),
                },
                schema=SCENE_SHOTS,
            )
        )
    return pa.concat_tables(cols)


def assemble_scenes(group: pa.Table) -> pa.Table:
    """One pair's wanted shots with their JPEGs -> q (movie a's scene) and k (movie b's), in shot order; a shot
    without a keyframe borrows its scene's nearest earlier one (or, at the start, the first there is)."""
    rows = sorted(group.to_pylist(), key=lambda r: (r["side"], r["pos"]))
    out = {}
    for side, name in ((0, "q"), (1, "k")):
        jpegs = [r["jpeg"] for r in rows if r["side"] == side]
        known = [j for j in jpegs if j is not None]
        last = known[0] if known else b""
        filled = []
        for j in jpegs:
            last = j if j is not None else last
            filled.append(last)
        out[name] = [filled]
    return pa.table(out, schema=pa.schema([("q", pa.list_(pa.binary())), ("k", pa.list_(pa.binary()))]))


def scene_frames(store: CatalogStore, scene_pairs: pa.Table) -> ray.data.Dataset:
    """The selected scene pairs (movie_a, a_first, a_last, movie_b, ...) as the JPEGs of both scenes: materialize
    it once, then `.map_batches(decode_scenes)` per epoch. Only the scenes' keyframes move: the pairs become one
    row per wanted shot, joined to the keyframes table on (video_id, shot_idx) and gathered back per pair, so
    what is shuffled and materialized is the 2 x `shots` keyframes of each pair, not whole movies."""
    import ray.data

    wanted = wanted_shots(scene_pairs)
    keyframes = store.dataset("keyframes", columns=["video_id", "shot_idx", "jpeg"])
    partitions = partitions_for(wanted.num_rows)
    joined = ray.data.from_arrow(wanted).join(
        keyframes, join_type="left_outer", num_partitions=partitions, on=("video_id", "shot_idx")
    )
    return joined.groupby("pair", num_partitions=partitions).map_groups(assemble_scenes, batch_format="pyarrow")
