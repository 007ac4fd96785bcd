"""Sequences of k consecutive shots from a tagged catalog: per shot each modality's frozen feature and whether it
is there (long_range_multimodal_pretraining.txt §3, "Pretraining Dataset").

Each modality's features table is grouped per movie (Ray Data), the movies joined on video_id with video as the
anchor (a movie without audio rows or subtitles keeps its video), materialized once; every epoch then cuts each
movie into max(1, n // k) windows of k shots from a random start, so an epoch sees other sequence boundaries while
the number of sequences, hence of steps, stays fixed. A short movie's window is padded and the padding masked; a
shot without audio or subtitle (a null embedding, or no row) is masked in that modality. Language read from the
cues table is aligned to the shots by time first (Eq. 4: a shot's token is the mean of the cues on screen during
it). Nothing gathers the
features on the driver: it reads the movies' shot counts and ids only.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movielib.errors import ConfigError
from movielib.store import CatalogStore
from movielib.train.config import InputSection
from movielib.train.tables import aligned, features_per_movie, movie_partitions, resolve_input


def windows(n: int, k: int, rng: np.random.Generator) -> list[range]:
    """The k-shot windows of a movie of n shots for one epoch: max(1, n // k) of them, back to back from a random
    offset in [0, k), so every shot opens a window on some epoch (a movie of a multiple of k shots too); a window
    that runs past the movie's end is cut short (padded and masked). A movie shorter than k: one window of its n
    shots."""
    if n <= k:
        return [range(0, n)]
    start = int(rng.integers(0, k))
    return [range(start + j * k, min(n, start + (j + 1) * k)) for j in range(n // k)]


def groups(linked: np.ndarray) -> np.ndarray:
    """Each position's group in a window: the index of the first of the run of positions it is linked to
    (`linked[j]`: position j shares an input with j - 1, such as a subtitle cue on screen across a cut)."""
    out = np.arange(len(linked))
    for j in range(1, len(linked)):
        if linked[j]:
            out[j] = out[j - 1]
    return out


class Sequences:
    """Per epoch: each movie's windows as training sequences, every modality aligned to the video's shots.
    Out: `<m>` (B, k, dim) float32, `<m>_valid` (B, k) bool and `<m>_group` (B, k) int64 (tokens that share an
    input, masked together: `groups`) per modality."""

    def __init__(self, k: int, dims: dict[str, int], seed: int | None = None):
        self.k, self.dims, self.seed = k, dims, seed  # seed None: new starts on every pass (what an epoch wants)

    def windows(self, n: int, rng: np.random.Generator) -> list[range]:
        return windows(n, self.k, rng)

    def aligned(self, row: dict, name: str, shots: list[int]) -> tuple[np.ndarray, np.ndarray]:
        return aligned(row, name, self.dims[name], shots)

    @staticmethod
    def linked(row: dict, name: str, shots: list[int]) -> np.ndarray:
        """Which of `shots` share an input with the shot before (`<name>_link`, as cues_per_shot writes it)."""
        own = row.get(f"{name}_link")
        if not own:
            return np.zeros(len(shots), bool)
        at = {s: i for i, s in enumerate(row[f"{name}_shots"])}
        return np.array([s in at and bool(own[at[s]]) for s in shots], bool)

    def __call__(self, movies: pa.Table) -> dict[str, np.ndarray]:
        out: dict[str, list] = {}
        for name in self.dims:
            out |= {name: [], f"{name}_valid": [], f"{name}_group": []}
        rows = movies.to_pylist()
        # fixed windows (validation): seeded by the batch's first movie, whichever task runs it
        key = [self.seed, *rows[0]["video_id"].encode()] if self.seed is not None and rows else None
        rng = np.random.default_rng(key)
        for row in rows:
            shots = row["video_shots"]
            aligned = {name: self.aligned(row, name, shots) for name in self.dims}
            links = {name: self.linked(row, name, shots) for name in self.dims}
            for w in self.windows(len(shots), rng):
                for name, (emb, valid) in aligned.items():
                    x, v = np.zeros((self.k, self.dims[name]), np.float32), np.zeros(self.k, bool)
                    x[: len(w)], v[: len(w)] = emb[w.start : w.stop], valid[w.start : w.stop]
                    link = np.zeros(self.k, bool)
                    link[: len(w)] = links[name][w.start : w.stop]
                    out[name].append(x)
                    out[f"{name}_valid"].append(v)
                    out[f"{name}_group"].append(groups(link))
        return {
            key: np.stack(v) if v else np.zeros((0, self.k, *((self.dims[key],) if key in self.dims else ())))
            for key, v in out.items()
        }


def cue_times(group: pa.Table, dim: int) -> pa.Table:
    """A movie's cues -> one row: their times and embeddings (flattened)."""
    return pa.table(
        {
            "video_id": [group["video_id"][0].as_py()],
            "cue_start": [group["start_s"].to_pylist()],
            "cue_end": [group["end_s"].to_pylist()],
            "cue_emb": [np.stack(group["embedding"].to_numpy(False)).reshape(-1).tolist()],
        }
    )


def shot_times(group: pa.Table) -> pa.Table:
    """A movie's shots -> one row: their ids and times, in order."""
    group = group.sort_by("shot_idx")
    return pa.table({"video_id": [group["video_id"][0].as_py()]} | {c: [group[c].to_pylist()] for c in SHOT_TIMES})


SHOT_TIMES = ("shot_idx", "start_s", "end_s")


def cues_per_shot(movies: pa.Table, name: str, dim: int) -> pa.Table:
    """Each movie's cues aligned to its shots (Eq. 4, `losses.shot_language`): a shot's token is the mean of the
    cues on screen during it; a shot no cue overlaps is masked. Out: per_movie's columns and `<name>_link`, which
    shots share a cue with the shot before (their tokens are masked together, `groups`)."""
    import torch

    from movielib.train.multimodal.losses import cue_overlap, shot_language

    out: dict[str, list] = {"video_id": [], f"{name}_shots": [], f"{name}_emb": [], f"{name}_has": []}
    out[f"{name}_link"] = []
    for row in movies.to_pylist():
        t = {k: torch.tensor(row[k], dtype=torch.float64) for k in ("cue_start", "cue_end", "start_s", "end_s")}
        tokens = torch.tensor(row["cue_emb"], dtype=torch.float32).reshape(-1, dim)
        mean, has = shot_language(tokens, t["cue_start"], t["cue_end"], t["start_s"], t["end_s"])
        out["video_id"].append(row["video_id"])
        out[f"{name}_shots"].append(row["shot_idx"])
        out[f"{name}_emb"].append(mean.reshape(-1).tolist())
        out[f"{name}_has"].append(has.tolist())
        overlap = cue_overlap(t["cue_start"], t["cue_end"], t["start_s"], t["end_s"])  # (shots, cues)
        out[f"{name}_link"].append([False, *(overlap[1:] & overlap[:-1]).any(dim=1).tolist()])
    return pa.table(out)


def language_table(store: CatalogStore, section: InputSection) -> str:
    """The table language is read from: the one named, else cues when the catalog has them, else features/text."""
    if section.table:
        return section.table
    return "cues" if "cues" in store.table_names() else "features/text"


def modality(
    store: CatalogStore, name: str, section: InputSection, partitions: int = 2
) -> tuple[object, str, str, str, int]:
    """A modality's features as one row per movie (Ray Data, grouped and joined over `partitions` hash
    partitions); its table, model, version and width."""
    field = f"inputs.{name}"
    table = language_table(store, section) if name == "language" else section.table
    if not table:
        raise ConfigError(f"{field}.table: is required (a features table of {store.dest!r})")
    if table not in store.table_names():
        raise ConfigError(
            f"{field}.table: {store.dest!r} has no {table} table"
            + (f"; tag with audio / .srt subtitles, or set {field}.use=false" if name != "video" else "")
        )
    model, version, dim = resolve_input(store, table, section, field)
    if table == "cues":
        cues = store.dataset(table, columns=["video_id", "start_s", "end_s", "embedding"], model=model, version=version)
        cues = cues.groupby("video_id", num_partitions=partitions).map_groups(
            partial(cue_times, dim=dim), batch_format="pyarrow"
        )
        shots = store.dataset("shots", columns=["video_id", *SHOT_TIMES]).groupby("video_id", num_partitions=partitions)
        shots = shots.map_groups(shot_times, batch_format="pyarrow")
        joined = cues.join(shots, join_type="inner", on=("video_id",), num_partitions=partitions)
        movies = joined.map_batches(partial(cues_per_shot, name=name, dim=dim), batch_format="pyarrow")
    else:
        movies = features_per_movie(store, name, table, model, version, dim, partitions)
    return movies, table, model, version or "", dim


def catalog_movies(store: CatalogStore, inputs: dict[str, InputSection], val_fraction: float = 0.0, seed: int = 0):
    """Every movie's modalities joined (materialized), each movie's video shot count, the inputs' tables / models /
    versions / widths, and the held-out movies (`val_fraction` of them, seeded)."""
    if "videos" not in set(store.table_names()):
        raise ConfigError(f"catalog: {store.dest!r} holds no tagged catalog (no videos table)")
    partitions = movie_partitions(store)
    found = {name: modality(store, name, section, partitions) for name, section in inputs.items()}
    movies = found["video"][0]
    for name in ("audio", "language"):
        if name in found:
            movies = movies.join(found[name][0], join_type="left_outer", on=("video_id",), num_partitions=partitions)
    movies = movies.materialize()
    counts = movies.map_batches(
        lambda b: pa.table({"video_id": b["video_id"], "n": pc.list_value_length(b["video_shots"])}),
        batch_format="pyarrow",
    ).take_all()
    ids = sorted(r["video_id"] for r in counts)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(ids, int(round(val_fraction * len(ids))), replace=False).tolist()) if ids else set()
    shots = {r["video_id"]: int(r["n"]) for r in counts}
    meta = {name: {"table": t, "model": m, "version": v, "dim": d} for name, (_, t, m, v, d) in found.items()}
    return movies, shots, held, meta


def sequence_count(shots: dict[str, int], ids, k: int) -> int:
    """Sequences an epoch cuts from these movies (fixed: windows() makes max(1, n // k) per movie)."""
    return sum(max(1, shots[v] // k) for v in ids)


def run_inputs(meta: dict) -> dict[str, InputSection]:
    """The input features a run trained on (table, model, version per modality), as the readers take them."""
    return {n: InputSection(table=m["table"], model=m["model"], version=m["version"] or None) for n, m in meta.items()}
