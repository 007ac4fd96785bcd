"""What a run still has to tag: the listing minus what DEST holds, as Parquet chunks Ray Data reads.

The listing is turned into Arrow columns batch by batch, compared with the videos table's video_id
column (an index built once, no per-video Python objects kept), and written as chunk files of at
most `chunk_videos` rows under DEST/_movielib/runs/<run_id>/. Each chunk is one bounded Ray Data
execution, so the driver's memory does not grow with the catalog.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from movielib.io.uri import SourceListing
from movielib.store.store import CatalogStore

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
    table = pa.table(
        {"video_id": [r.video_id for r in listing.videos], "uri": [r.uri for r in listing.videos]}, schema=TODO
    )
    first = (
        table.append_column("i", pa.array(range(table.num_rows), pa.int64()))
        .group_by("video_id", use_threads=False)
        .aggregate([("i", "min")])["i_min"]
    )
    return table.take(pa.array(np.sort(first.to_numpy())))


_HEX = np.full(256, 255, np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _prefix_keys(ids: pa.Array) -> np.ndarray | None:
    """The first 64 bits of hex video ids as uint64 (vectorized); None when some id is not lowercase hex."""
    try:
        fixed = pc.cast(pc.utf8_slice_codeunits(ids, 0, 16), pa.binary(16))
    except pa.ArrowInvalid:
        return None
    if fixed.null_count or pc.any(pc.less(pc.utf8_length(ids), 16)).as_py():
        return None
    nibbles = _HEX[np.frombuffer(fixed.buffers()[1], np.uint8, len(fixed) * 16, fixed.offset * 16)]
    if (nibbles == 255).any():
        return None
    nibbles = nibbles.reshape(-1, 16).astype(np.uint64)
    return (nibbles << (np.uint64(4) * np.arange(15, -1, -1, dtype=np.uint64))).sum(axis=1, dtype=np.uint64)


class IdIndex:
    """Membership of video ids, built once and probed batch after batch.

    Arrow's is_in hashes its whole value set on every call: probing a million done ids with 50
    listing batches would hash them 50 times. Here the ids are sorted once by their first 64 bits
    (video ids are hex digests) and probed by binary search, with the full id compared on a hit.
    Ids that are not hex fall back to is_in.
    """

    def __init__(self, ids: pa.Array):
        self.ids, self.keys = ids, _prefix_keys(ids)  # keys None: not hex, is_in it is
        if self.keys is not None:
            order = np.argsort(self.keys, kind="stable")
            self.keys, self.ids = self.keys[order], ids.take(pa.array(order))

    def contains(self, ids: pa.Array) -> pa.Array:
        keys = _prefix_keys(ids) if self.keys is not None else None
        if keys is None:
            return pc.is_in(ids, value_set=self.ids)
        if not len(self.keys):
            return pa.array(np.zeros(len(ids), bool))
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        hit = self.keys[pos] == keys
        same = pc.equal(ids, self.ids.take(pa.array(pos))).to_numpy(zero_copy_only=False)
        return pa.array(hit & same)


def plan_todo(store: CatalogStore, listings: Iterable[SourceListing], run_id: str, chunk_videos: int) -> Todo:
    """Split the listing into done (a videos row exists) and to-do, and write the to-do chunks.

    The listing comes in batches; what is kept across them is DEST's done ids (sorted once, about
    36 bytes a video) and one partial chunk, so memory does not grow with per-video Python objects.
    """
    done = IdIndex(store.video_ids())
    out, pending = Todo(), TODO.empty_table()
    for listing in listings:
        out.ignored += len(listing.ignored)
        out.ignored_sample += listing.ignored[: SAMPLE - len(out.ignored_sample)]
        # a video listed twice within a batch is kept once; twice in two batches of a huge manifest, it is
        # decoded twice and written once (the Committer closes a video once, claims skip a done one)
        batch = listing_table(listing)
        is_done = done.contains(batch["video_id"].combine_chunks())
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
    path = store.meta_path("runs", run_id, f"todo-{len(todo.chunks):05d}.parquet")
    store.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(rows, path, filesystem=store.fs)
    todo.chunks.append(path)
    todo.videos += rows.num_rows


def read_chunk(store: CatalogStore, path: str) -> pa.Table:
    return pq.read_table(path, filesystem=store.fs, schema=TODO)


def remove_chunks(store: CatalogStore, run_id: str) -> None:
    store.fs.delete_dir_contents(store.meta_path("runs", run_id), missing_dir_ok=True)
