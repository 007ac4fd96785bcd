"""What a run still has to tag: the listing minus what DEST holds, as Parquet chunks Ray Data reads.

The listing is turned into Arrow columns batch by batch, compared with the videos table's video_id
column (Arrow's is_in, no per-video Python objects kept), and written as chunk files of at most
`chunk_videos` rows under DEST/_movielib/runs/<run_id>/. Each chunk is one bounded Ray Data
execution (read_parquet), so the driver's memory does not grow with the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movielib.features.store import META, CatalogStore
from movielib.io.uri import SourceListing

TODO = pa.schema([("video_id", pa.string()), ("uri", pa.string())])
SAMPLE = 100  # URIs kept by name in plans and summaries; counts are kept for all


@dataclass
class Todo:
    chunks: list[str] = field(default_factory=list)  # Parquet files (pyarrow paths in the store's filesystem)
    videos: int = 0
    listed: int = 0
    skipped: int = 0
    skipped_sample: list[str] = field(default_factory=list)
    ignored: int = 0  # objects under SOURCE that are not videos by extension
    ignored_sample: list[str] = field(default_factory=list)


def listing_table(listing: SourceListing) -> pa.Table:
    """(video_id, uri) in listing order, first occurrence of each video only."""
    table = pa.table({"video_id": [r.video_id for r in listing.videos], "uri": [r.uri for r in listing.videos]},
                     schema=TODO)
    first = table.append_column("i", pa.array(range(table.num_rows), pa.int64())) \
        .group_by("video_id", use_threads=False).aggregate([("i", "min")])["i_min"]
    return table.take(pc.sort_indices(first))


def plan_todo(store: CatalogStore, listings: Iterable[SourceListing], run_id: str, chunk_videos: int) -> Todo:
    """Split the listing into done (a videos row exists) and to-do, and write the to-do chunks.

    The listing comes in batches; what is kept across them is Arrow columns of ids (DEST's done
    videos, the videos listed so far) and one partial chunk, so memory stays a few dozen bytes a video.
    """
    done = store.video_ids()
    seen = pa.array([], pa.string())
    out, pending = Todo(), TODO.empty_table()
    for listing in listings:
        out.ignored += len(listing.ignored)
        out.ignored_sample += listing.ignored[: SAMPLE - len(out.ignored_sample)]
        batch = listing_table(listing)
        batch = batch.filter(pc.invert(pc.is_in(batch["video_id"], value_set=seen)))  # listed twice: once
        seen = pa.concat_arrays([seen, batch["video_id"].combine_chunks()])
        is_done = pc.is_in(batch["video_id"], value_set=done)
        skipped = batch.filter(is_done)
        out.listed += batch.num_rows
        out.skipped += skipped.num_rows
        out.skipped_sample += skipped["uri"].to_pylist()[: SAMPLE - len(out.skipped_sample)]
        pending = pa.concat_tables([pending, batch.filter(pc.invert(is_done))])
        while pending.num_rows >= chunk_videos:
            _write_chunk(store, run_id, out, pending.slice(0, chunk_videos))
            pending = pending.slice(chunk_videos)
    if pending.num_rows:
        _write_chunk(store, run_id, out, pending)
    return out


def _write_chunk(store: CatalogStore, run_id: str, todo: Todo, rows: pa.Table) -> None:
    path = "/".join([store.root, META, "runs", run_id, f"todo-{len(todo.chunks):05d}.parquet"])
    store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(rows, path, filesystem=store.fs)
    todo.chunks.append(path)
    todo.videos += rows.num_rows


def read_chunk(store: CatalogStore, path: str) -> pa.Table:
    return pq.read_table(path, filesystem=store.fs, schema=TODO)


def keep_only(store: CatalogStore, path: str, video_ids: list[str]) -> int:
    """Rewrite a chunk file with the videos this run won the claims of; returns how many."""
    table = read_chunk(store, path)
    table = table.filter(pc.is_in(table["video_id"], value_set=pa.array(video_ids, pa.string())))
    pq.write_table(table, path, filesystem=store.fs)
    return table.num_rows


def remove_chunks(store: CatalogStore, run_id: str) -> None:
    store.fs.delete_dir_contents("/".join([store.root, META, "runs", run_id]), missing_dir_ok=True)
