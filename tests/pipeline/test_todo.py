"""Planning a run: the listing against DEST's done ids, in batches, into Parquet to-do chunks."""

import numpy as np
import pyarrow as pa
import pytest

from movielib.io.uri import SourceListing, VideoRef
from movielib.pipeline.todo import IdIndex, plan_todo, read_chunk
from movielib.store.store import CatalogStore


@pytest.mark.parametrize("hex_ids", [True, False])
def test_id_index_is_exact_also_when_the_first_64_bits_agree(hex_ids):
    rng = np.random.default_rng(0)
    done = [f"{x:020x}" for x in rng.integers(0, 2**63, 5000)]
    twin = done[7][:16] + ("0000" if done[7][16:] != "0000" else "1111")  # same prefix key, other id
    if not hex_ids:
        done = [f"id-{d}" for d in done]
        twin = f"id-{twin}"
    index = IdIndex(pa.array(done))
    probe = [done[3], twin, done[7], "f" * 20, done[-1]]
    assert index.contains(pa.array(probe)).to_pylist() == [True, False, True, False, True]
    assert IdIndex(pa.array([], pa.string())).contains(pa.array(probe)).to_pylist() == [False] * 5


def test_plan_splits_batches_into_done_and_full_chunks(tmp_path):
    refs = [VideoRef(f"/catalog/{n:03d}.mp4", n, 1) for n in range(25)]
    store = CatalogStore(str(tmp_path / "out"))
    done = [r.video_id for r in refs[::3]]  # 9 of them are in DEST already
    store.tables.append("videos", pa.table({"video_id": done, "status": ["ok"] * len(done)}))
    batches = [SourceListing(refs[:10] + refs[:2], ["/catalog/notes.txt"]), SourceListing(refs[10:], [])]
    todo = plan_todo(store, batches, "run-a", chunk_videos=4)
    assert (todo.listed, todo.skipped, todo.videos, todo.ignored) == (25, 9, 16, 1)
    chunks = [read_chunk(store, c) for c in todo.chunks]
    assert [c.num_rows for c in chunks] == [4, 4, 4, 4]  # full chunks across the listing's batches
    planned = [v for c in chunks for v in c["video_id"].to_pylist()]
    assert planned == [r.video_id for r in refs if r.video_id not in done]  # listing order, each once
