"""What every pretraining method reads from the catalog before its workers start: a features table's width, and
joined rows computed once with a per-epoch map over them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from movielib.errors import ConfigError
from movielib.store import CatalogStore, not_null

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
