"""What every pretraining method reads from the catalog before its workers start (a features table's width, joined
rows computed once with a per-epoch map over them) and how its `embed` job writes features back."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa

from movielib.errors import ConfigError
from movielib.store import FEATURES, CatalogStore, not_null

if TYPE_CHECKING:
    import ray.data


def feature_dim(store: CatalogStore, table: str, model: str | None, version: str | None, field: str) -> int:
    """The width of `model`'s embeddings in `table` (one row read); ConfigError naming `field` when it has none."""
    sample = store.dataset(table, columns=["embedding"], model=model, version=version)
    sample = sample.filter(expr=not_null("embedding")).take(1)
    if not sample:
        raise ConfigError(
            f"{field}: {table} of {store.dest!r} holds no embeddings" + (f" of model {model!r}" if model else "")
        )
    return len(sample[0]["embedding"])


def per_epoch(joined: ray.data.Dataset, fn, batch_size: int = 16) -> ray.data.Dataset:
    """The joined rows computed once (materialized before the workers start), then `fn` over them on every
    epoch's pass; the workers print their own per-epoch lines, so Ray Data's progress log is off there."""
    ds = joined.materialize().map_batches(fn, batch_format="pyarrow", batch_size=batch_size)
    ds.context.enable_progress_bars = False
    return ds


def partitions_for(rows: int, per_partition: int = 20_000) -> int:
    """Hash-shuffle partitions for a join of `rows` rows: from the data size, not a constant."""
    return max(2, min(1024, -(-rows // per_partition)))


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
