"""What a run still has to tag: the listing minus what DEST holds, as Parquet chunks Ray Data reads.

The listing is turned into Arrow columns at once, compared with the videos table's video_id
column (Arrow's is_in, no per-video Python objects), and written as chunk files of at most
`chunk_videos` rows under DEST/_movielib/runs/<run_id>/. Each chunk is one bounded Ray Data
execution (read_parquet), so the driver's memory does not grow with the catalog.
"""

from __future__ import annotations

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


def listing_table(listing: SourceListing) -> pa.Table:
    """(video_id, uri) in listing order, first occurrence of each video only."""
    table = pa.table({"video_id": [r.video_id for r in listing.videos], "uri": [r.uri for r in listing.videos]},
                     schema=TODO)
    first = table.append_column("i", pa.array(range(table.num_rows), pa.int64())) \
        .group_by("video_id", use_threads=False).aggregate([("i", "min")])["i_min"]
    return table.take(pc.sort_indices(first))


def plan_todo(store: CatalogStore, listing: pa.Table, run_id: str, chunk_videos: int) -> Todo:
    """Split the listing into done (a videos row exists) and to-do, and write the to-do chunks."""
    done = pc.is_in(listing["video_id"], value_set=store.video_ids())
    todo_rows = listing.filter(pc.invert(done))
    skipped = listing.filter(done)
    out = Todo(videos=todo_rows.num_rows, listed=listing.num_rows, skipped=skipped.num_rows,
               skipped_sample=skipped["uri"].to_pylist()[:SAMPLE])
    for n, start in enumerate(range(0, todo_rows.num_rows, chunk_videos)):
        path = "/".join([store.root, META, "runs", run_id, f"todo-{n:05d}.parquet"])
        store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        pq.write_table(todo_rows.slice(start, chunk_videos), path, filesystem=store.fs)
        out.chunks.append(path)
    return out


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
