"""The genre model's data: each labelled trailer's experts per clip (shot), laid out to the model's clips.

Every expert's features table is grouped per movie (Ray Data) and joined on video_id with the first expert as the
anchor (a movie missing another expert keeps the rest: that expert is masked for its clips), materialized once.
Each epoch lays every trailer out to `clips * sequences` clips: a longer trailer gives a window of consecutive
shots from a random start (validation: a fixed start), a shorter one is padded and the padding masked. Nothing
gathers the features on the driver.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from movielib.errors import ConfigError
from movielib.store import CatalogStore, video_in
from movielib.train.config import InputSection
from movielib.train.tables import aligned, catalog_ids, features_per_movie, partitions_for, read_genres, resolve_input


def expert_table(store: CatalogStore, name: str, section: InputSection) -> str:
    """The table an expert reads: the one named, else for the scene expert features/scene when the scene
    pretraining wrote it, else features/scores."""
    if section.table:
        return section.table
    if name != "scene":
        raise ConfigError(f"experts.{name}.table: is required (a features table of {store.dest!r})")
    return "features/scene" if "features/scene" in store.table_names() else "features/scores"


def labelled(store: CatalogStore, path: str, s3=None) -> tuple[dict[str, list[str]], list[str]]:
    """Each tagged movie's genres (video_id -> sorted genres) and the genre names; a file naming movies the
    catalog does not hold fails before any work, counted, with a sample."""
    ids = catalog_ids(store)
    named = read_genres(path, s3)
    unknown = sorted(m for m in named if m not in ids)
    if unknown:
        raise ConfigError(
            f"genres: {len(unknown)} of {len(named)} movies in {path!r} are not tagged videos of {store.dest!r} "
            f"(by uri or video_id), e.g. {', '.join(unknown[:5])}"
        )
    genres = {ids[m]: sorted(g) for m, g in named.items() if g}
    names = sorted({g for gs in genres.values() for g in gs})
    if len(names) < 2:
        raise ConfigError(f"genres: {path!r} names {len(names)} genre; a classifier needs at least 2")
    return genres, names


def held_out_trailers(genres: dict[str, list[str]], fraction: float, seed: int) -> set[str]:
    """`fraction` of the trailers held out, seeded, drawn within each genre set in turn (rarest sets first) so the
    held-out trailers cover the genres as the catalog does: a plain draw can leave whole genres out of a small
    catalog's validation, and their figures undefined. Sets too small for a share of their own are topped up from
    the rest at random."""
    rng = np.random.default_rng(seed)
    target = int(round(fraction * len(genres)))
    groups: dict[tuple, list[str]] = {}
    for video in sorted(genres):
        groups.setdefault(tuple(sorted(genres[video])), []).append(video)
    held: set[str] = set()
    for key in sorted(groups, key=lambda k: (len(groups[k]), k)):
        members = groups[key]
        take = min(int(fraction * len(members)), target - len(held))
        held |= set(rng.choice(members, take, replace=False).tolist()) if take > 0 else set()
    rest = sorted(set(genres) - held)
    if target > len(held) and rest:
        held |= set(rng.choice(rest, target - len(held), replace=False).tolist())
    return held


def catalog_trailers(store: CatalogStore, experts: dict[str, InputSection], genres: dict[str, list[str]] | None):
    """Every labelled movie's experts joined (materialized; every movie when `genres` is None) and the experts'
    tables / models / versions / widths."""
    if "videos" not in set(store.table_names()):
        raise ConfigError(f"catalog: {store.dest!r} holds no tagged catalog (no videos table)")
    partitions = partitions_for(len(genres) if genres is not None else len(catalog_ids(store)), 256)
    found, meta = {}, {}
    for name, section in experts.items():
        field = f"experts.{name}"
        table = expert_table(store, name, section)
        if table not in store.table_names():
            hint = {"features/scores": "features.scores", "features/motion": "features.motion"}.get(table)
            raise ConfigError(
                f"{field}.table: {store.dest!r} has no {table} table"
                + (f"; tag with --set {hint}=true, or set {field}.use=false" if hint else f"; or {field}.use=false")
            )
        model, version, dim = resolve_input(store, table, section, field)
        found[name] = features_per_movie(store, name, table, model, version, dim, partitions)
        meta[name] = {"table": table, "model": model, "version": version or "", "dim": dim}
    names = list(found)
    movies = found[names[0]]
    if genres is not None:
        movies = movies.filter(expr=video_in(genres))
    for name in names[1:]:
        movies = movies.join(found[name], join_type="left_outer", on=("video_id",), num_partitions=partitions)
    return movies.materialize(), meta


def laid_out(row: dict, dims: dict[str, int], shots: list[int], clips: int, rng) -> dict[str, np.ndarray]:
    """A movie row's experts at `shots` laid out to `clips` clips: a window of consecutive shots from a random
    start when there are more (a fixed start with a seeded `rng`), padded and masked when there are fewer."""
    start = int(rng.integers(0, len(shots) - clips + 1)) if len(shots) > clips else 0
    shots = shots[start : start + clips]
    out = {}
    for name, dim in dims.items():
        emb, valid = aligned(row, name, dim, shots)
        x, v = np.zeros((clips, dim), np.float32), np.zeros(clips, bool)
        x[: len(shots)], v[: len(shots)] = emb, valid
        out[name], out[f"{name}_valid"] = x, v
    return out


class Trailers:
    """Per epoch: each movie row -> its trailer laid out to `clips` clips, every expert aligned to the union of
    the experts' shots, with its genre targets. Out: `<expert>` (B, clips, dim), `<expert>_valid` (B, clips) bool,
    `targets` (B, genres) float32, and with `ids` the `video_id`s (embedding; tensors cannot hold them). With
    `halves`, each trailer's first and second half of shots laid out apart, under the prefixes `a_` and `b_` (the
    fine-grained stage's two views)."""

    def __init__(
        self,
        clips: int,
        dims: dict[str, int],
        genres: dict[str, list[str]],
        names: list[str],
        seed: int | None = None,
        ids: bool = False,
        halves: bool = False,
    ):
        self.clips, self.dims, self.genres, self.seed, self.ids, self.halves = clips, dims, genres, seed, ids, halves
        self.index = {g: i for i, g in enumerate(names)}

    def __call__(self, movies: pa.Table) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        rows = movies.to_pylist()
        key = [self.seed, *rows[0]["video_id"].encode()] if self.seed is not None and rows else None
        rng = np.random.default_rng(key)
        for row in rows:
            shots = sorted({s for name in self.dims for s in (row.get(f"{name}_shots") or [])})  # every expert's
            if self.halves and len(shots) < 2:
                continue  # no two halves to contrast
            views = {"a_": shots[: len(shots) // 2], "b_": shots[len(shots) // 2 :]} if self.halves else {"": shots}
            for prefix, part in views.items():
                for k, v in laid_out(row, self.dims, part, self.clips, rng).items():
                    out.setdefault(prefix + k, []).append(v)
            y = np.zeros(len(self.index), np.float32)
            y[[self.index[g] for g in self.genres.get(row["video_id"], ())]] = 1  # unlabelled (embedding): none
            out.setdefault("targets", []).append(y)
            if self.ids:
                out.setdefault("video_id", []).append(row["video_id"])
        return {k: np.array(v) if k == "video_id" else np.stack(v) for k, v in out.items()}
