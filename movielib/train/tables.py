"""What every pretraining method reads from the catalog before its workers start (a features table's width, joined
rows computed once with a per-epoch map over them) and how its `embed` job writes features back."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds

from movielib.errors import ConfigError
from movielib.io.uri import S3Options, read_tabular
from movielib.store import FEATURES, CatalogStore
from movielib.train.config import InputSection

if TYPE_CHECKING:
    import ray.data


def feature_dim(store: CatalogStore, table: str, model: str | None, version: str | None, field: str) -> int:
    """The width of `model`'s embeddings in `table` (the scan stops at the first row that has one, on the driver: no
    pipeline for a row); ConfigError naming `field` when it has none."""
    has = pds.field("embedding").is_valid()
    sample = store.read_table(table, columns=["embedding"], filter=has, model=model, version=version, limit=1)
    if not sample.num_rows:
        raise ConfigError(
            f"{field}: {table} of {store.dest!r} holds no embeddings" + (f" of model {model!r}" if model else "")
        )
    return len(sample["embedding"][0])


def resolve_input(store: CatalogStore, table: str, section: InputSection, field: str) -> tuple[str, str | None, int]:
    """The model, version (None: the table has no versions) and width an input reads from `table`; ConfigError
    naming `field` when the table, model or version is not there."""
    model = store.feature_model(table, section.model, f"{field}.model")
    version = store.feature_version(table, model, section.version, f"{field}.version") or None
    return model, version, feature_dim(store, table, model, version, f"{field}.table")


def per_movie(group: pa.Table, name: str, dim: int) -> pa.Table:
    """A features table's rows of one movie -> one row: its shot ids in order, their features (flattened, zeros
    where null) and which are there (columns <name>_shots, <name>_emb, <name>_has)."""
    group = group.sort_by("shot_idx")
    present = pc.is_valid(group["embedding"])
    emb = np.zeros((group.num_rows, dim), np.float32)
    if pc.any(present).as_py():
        emb[present.to_numpy(zero_copy_only=False)] = np.stack(group["embedding"].filter(present).to_numpy(False))
    return pa.table(
        {
            "video_id": [group["video_id"][0].as_py()],
            f"{name}_shots": [group["shot_idx"].to_pylist()],
            f"{name}_emb": [emb.reshape(-1).tolist()],
            f"{name}_has": [present.to_pylist()],
        }
    )


def features_per_movie(
    store: CatalogStore, name: str, table: str, model: str, version: str | None, dim: int, partitions: int
) -> ray.data.Dataset:
    """`table`'s rows of one model (and version) grouped into one row per movie (per_movie), over `partitions`
    hash partitions (Ray Data's default is 200 at any size)."""
    ds = store.dataset(table, columns=["video_id", "shot_idx", "embedding"], model=model, version=version)
    return ds.groupby("video_id", num_partitions=partitions).map_groups(
        partial(per_movie, name=name, dim=dim), batch_format="pyarrow"
    )


def _sums(batch: pa.Table, dims: dict[str, int]) -> pa.Table:
    """A block of per-movie rows -> per input the count, sum and sum of squares of its present shots' features."""
    out = {}
    for name, dim in dims.items():
        n, total, squares = 0, np.zeros(dim), np.zeros(dim)
        for flat, has in zip(batch[f"{name}_emb"].to_pylist(), batch[f"{name}_has"].to_pylist()):
            if flat:
                x = np.asarray(flat, np.float64).reshape(-1, dim)[np.asarray(has, bool)]
                n, total, squares = n + len(x), total + x.sum(0), squares + (x * x).sum(0)
        out |= {f"{name}_n": [n], f"{name}_sum": [total.tolist()], f"{name}_squares": [squares.tolist()]}
    return pa.table(out)


def feature_stats(movies: ray.data.Dataset, dims: dict[str, int]) -> dict[str, tuple[list[float], list[float]]]:
    """Per input, the mean and standard deviation of each dimension over the present shots of `movies` (per-movie
    rows as features_per_movie makes them): what a model standardises its inputs with. Inputs come in any scale
    (log-mel statistics around 7, CLIP label scores around 0.005) and unscaled the largest drowns the rest. A
    dimension that never varies keeps a deviation of 1."""
    parts = movies.map_batches(partial(_sums, dims=dims), batch_format="pyarrow", batch_size=None).take_all()
    stats = {}
    for name, dim in dims.items():
        n = sum(p[f"{name}_n"] for p in parts)
        total = np.sum([p[f"{name}_sum"] for p in parts], axis=0) if parts else np.zeros(dim)
        squares = np.sum([p[f"{name}_squares"] for p in parts], axis=0) if parts else np.zeros(dim)
        mean = total / max(n, 1)
        std = np.sqrt(np.maximum(squares / max(n, 1) - mean * mean, 0.0))
        stats[name] = (mean.tolist(), np.where(std > 1e-6 * np.maximum(np.abs(mean), 1.0), std, 1.0).tolist())
    return stats


def aligned(row: dict, name: str, dim: int, shots: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A movie row's `name` features at `shots` (its anchor's shot ids): (len(shots), dim) and which are there
    (a shot the input has no row or a null for is zero and masked)."""
    emb, valid = np.zeros((len(shots), dim), np.float32), np.zeros(len(shots), bool)
    own = row.get(f"{name}_shots")
    if own:
        at = {s: i for i, s in enumerate(own)}
        flat = np.asarray(row[f"{name}_emb"], np.float32).reshape(-1, dim)
        has = row[f"{name}_has"]
        for j, s in enumerate(shots):
            i = at.get(s)
            if i is not None and has[i]:
                emb[j], valid[j] = flat[i], True
    return emb, valid


def genre_sets(genres: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Each movie's genres as a set (case and spaces do not matter)."""
    return {movie: frozenset(g.strip().lower() for g in gs if g.strip()) for movie, gs in genres.items()}


def read_genres(path: str, s3: S3Options | None = None) -> dict[str, frozenset[str]]:
    """Each movie's genre set from a genres file (CSV or Parquet: movie = uri or video_id, genres = "a|b" or a
    list), as Movies2Scenes' similarity and the genre model read it."""
    t = read_tabular(path, ["movie", "genres"], "genres file", s3)
    values = t["genres"].to_pylist()
    return genre_sets(
        {m: g if isinstance(g, list) else str(g or "").split("|") for m, g in zip(t["movie"].to_pylist(), values)}
    )


def catalog_ids(store: CatalogStore) -> dict[str, str]:
    """The catalog's tagged (status ok) videos by video_id and by uri -> video_id: how users' files name movies."""
    videos = store.read_table("videos", columns=["video_id", "uri", "status"])
    ok = [(v, u) for v, u, s in zip(*(videos[c].to_pylist() for c in ("video_id", "uri", "status"))) if s == "ok"]
    return {v: v for v, _ in ok} | {u: v for v, u in ok}


def per_epoch(joined: ray.data.Dataset, fn, batch_size: int = 16) -> ray.data.Dataset:
    """The joined rows computed once (materialized before the workers start), then `fn` over them on every
    epoch's pass; the workers print their own per-epoch lines, so Ray Data's progress log is off there."""
    ds = joined.materialize().map_batches(fn, batch_format="pyarrow", batch_size=batch_size)
    ds.context.enable_progress_bars = False
    return ds


def partitions_for(rows: int, per_partition: int = 20_000) -> int:
    """Hash-shuffle partitions for a join of `rows` rows: from the data size, not a constant."""
    return max(2, min(1024, -(-rows // per_partition)))


def movie_partitions(store: CatalogStore) -> int:
    """Hash-shuffle partitions for a per-movie groupby or join over the catalog: from its tagged movies (256 a
    partition), not Ray Data's 200 at any size (200 shuffle actors' worth of work for 18 movies)."""
    videos = store.read_table("videos", columns=["status"])
    return partitions_for(int(pc.sum(pc.equal(videos["status"], "ok")).as_py() or 0), 256)


class EmbedSummary(dict):
    """What an `embed` job wrote, rendered for the console."""

    exit_code = 0

    def render(self) -> str:
        return (
            f"{self['table']}: {self['rows']} rows ({', '.join(self['models'])}), model_version "
            f"{self['model_version']}, {self['commits']} commits"
        )


def write_features(
    store: CatalogStore, table: str, ds: ray.data.Dataset, version: str, models: list[str], rows_per_commit: int = 4096
) -> EmbedSummary:
    """`ds`'s feature rows into `table`, a commit per `rows_per_commit`; rows of the same `version` written before
    (the same weights embedded again) are replaced, other versions stay beside them."""
    if table in store.table_names():
        store.tables.delete(table, [version], key="model_version")
    rows = commits = 0
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=rows_per_commit):
        part = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        store.tables.append(table, part.cast(FEATURES), metadata={"movielib.embed": version})
        rows, commits = rows + part.num_rows, commits + 1
    return EmbedSummary(
        {
            "table": f"{store.dest.rstrip('/')}/{table}",
            "model_version": version,
            "rows": rows,
            "commits": commits,
            "models": models,
        }
    )
