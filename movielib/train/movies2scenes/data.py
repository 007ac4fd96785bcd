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

if TYPE_CHECKING:
    import ray.data

PAIRS = pa.schema([("a", pa.string()), ("b", pa.string()), ("label", pa.float32())])


def _stack_movie(group: pa.Table) -> pa.Table:
    """A movie's rows (any order) -> one row: video_id, shot_idx (list), features (n_shots * dim floats, shot order)."""
    group = group.sort_by("shot_idx")
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


def movies(store: CatalogStore, table: str, model: str | None = None) -> ray.data.Dataset:
    """One row per movie with its per-shot features (features/keyframe or features/image), stacked."""
    ds = store.dataset(table, columns=["video_id", "shot_idx", "model", "embedding"], model=model)
    ds = ds.filter(expr=not_null("embedding"))
    return ds.groupby("video_id").map_groups(_stack_movie, batch_format="pyarrow")


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
        for side, key in (("a", "1"), ("b", "2")):
            for feats in batch[f"{side}_features"].to_numpy(zero_copy_only=False):
                x, m = pad_or_cut(torch.from_numpy(np.asarray(feats, np.float32).reshape(-1, self.dim)), self.shots)
                out[f"x{key}"].append(x.numpy())
                out[f"m{key}"].append(m.numpy())
        return {**{k: np.stack(v) for k, v in out.items()}, "label": batch["label"].to_numpy()}


def movie_pairs(
    store: CatalogStore, pairs: pa.Table, table: str, model: str | None, partitions: int = 4
) -> ray.data.Dataset:
    """Movie pairs (a, b, label) with both movies' stacked shot features; step 1 materializes it once and maps
    `PadPairs` over it each epoch, step 2 reads every shot."""
    import ray.data

    return _join_movies(ray.data.from_arrow(pairs), movies(store, table, model), partitions)


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
        .groupby("video_id")
        .map_groups(_stack_keyframes, batch_format="pyarrow")
    )


def decode_jpegs(jpegs: list[bytes]) -> np.ndarray:
    """JPEGs of one size -> (n, H, W, 3) RGB uint8."""
    import cv2

    return np.stack([cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for j in jpegs])


def _scene(row: dict, side: str) -> list[bytes]:
    """The keyframe JPEGs of one side's scene (shots first..last); a shot without a keyframe borrows the last."""
    shots = row[f"{side}_shot_idx"]
    first = shots.index(row[f"{side}_first"])
    wanted = row[f"{side}_last"] - row[f"{side}_first"] + 1
    jpegs = row[f"{side}_jpegs"][first : first + wanted]
    return jpegs + jpegs[-1:] * (wanted - len(jpegs))


def cut_scenes(batch: pa.Table) -> pa.Table:
    """Scene-pair rows joined with both movies' keyframes -> only the two scenes' JPEGs (q: movie a, k: movie b)."""
    rows = batch.to_pylist()
    jpegs = pa.list_(pa.binary())
    return pa.table(
        {"q": pa.array([_scene(r, "a") for r in rows], jpegs), "k": pa.array([_scene(r, "b") for r in rows], jpegs)}
    )


def decode_scenes(batch: pa.Table) -> dict[str, np.ndarray]:
    """q, k JPEG lists -> (B, n shots, H, W, 3) uint8 scenes."""
    return {side: np.stack([decode_jpegs(j) for j in batch[side].to_pylist()]) for side in ("q", "k")}


def scene_frames(store: CatalogStore, scene_pairs: ray.data.Dataset, partitions: int = 4) -> ray.data.Dataset:
    """Selected scene pairs (movie_a, a_first, a_last, movie_b, ...) as the JPEGs of both scenes: materialize it
    once, then `.map_batches(decode_scenes)` per epoch."""
    frames = keyframe_movies(store)
    for side in ("a", "b"):
        renamed = frames.rename_columns(
            {"video_id": f"movie_{side}", "shot_idx": f"{side}_shot_idx", "jpegs": f"{side}_jpegs"}
        )
        scene_pairs = scene_pairs.join(renamed, join_type="inner", num_partitions=partitions, on=(f"movie_{side}",))
    return scene_pairs.map_batches(cut_scenes, batch_format="pyarrow", batch_size=16)
