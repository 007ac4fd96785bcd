"""The Parquet store under DEST: tables committed in batches, with a manifest that makes runs resumable.

Layout (DESIGN.md: many videos per file, files named by a deterministic batch id):

    DEST/videos/part-<batch>.parquet   DEST/shots/part-<batch>.parquet   DEST/tags/part-<batch>.parquet
    DEST/_manifest/files/<batch>.json  what each batch holds: video rows and (video_id, shot_idx) keys
    DEST/_manifest/runs/<run>.json     one summary per run: done / failed / skipped, timings

A batch is committed by writing its Parquet files first and its manifest entry last, so a
data file without an entry is debris of a crashed run, removed when the next run starts.
Rows are keyed by video_id (videos) and (video_id, shot_idx) (shots, tags): a re-run skips
complete videos and, for a video cut off mid-way, writes only the shots not yet committed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from movielib.features.schema import FEATURE_MODALITIES, TABLES
from movielib.io.uri import S3Options, filesystem_for

DATA_FOLDERS = (*TABLES, *(f"features/{m}" for m in FEATURE_MODALITIES))
PART_RE = re.compile(r"part-([0-9a-f]{16,64})\.parquet$")


@dataclass
class Committed:
    """What earlier runs committed, read from the manifest."""

    videos: dict[str, dict] = field(default_factory=dict)  # video_id -> {"status", "n_shots", "uri"}
    shots: dict[str, set[int]] = field(default_factory=dict)  # video_id -> committed shot_idx
    batch_ids: set[str] = field(default_factory=set)

    def is_complete(self, video_id: str) -> bool:
        v = self.videos.get(video_id)
        if v is None:
            return False
        return v["status"] != "ok" or len(self.shots.get(video_id, ())) >= v["n_shots"]

    def partial(self) -> dict[str, set[int]]:
        """Shots committed for videos that are not complete: the only keys a run must filter."""
        ids = {vid for vid in self.shots if not self.is_complete(vid)}
        return {vid: self.shots[vid] for vid in ids}


def batch_id(keys: list[tuple[str, int]]) -> str:
    """Deterministic id of a batch from the row keys it holds: the same rows give the same file names."""
    h = hashlib.sha1()
    for vid, idx in sorted(keys):
        h.update(f"{vid}:{idx};".encode())
    return h.hexdigest()[:24]


class CatalogStore:
    """Reads the manifest and commits batches of rows to DEST (local folder or s3:// prefix)."""

    def __init__(self, dest: str, s3: S3Options | None = None):
        self.dest = dest
        self.s3 = s3
        self.fs, self.root = filesystem_for(dest, s3)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def _list(self, folder: str) -> list[pafs.FileInfo]:
        infos = self.fs.get_file_info(pafs.FileSelector(self._path(folder), allow_not_found=True))
        return [i for i in infos if i.type == pafs.FileType.File]

    def _put(self, path: str, data: bytes) -> None:
        """Write whole-object: S3 PUTs are atomic; local files are written aside and renamed."""
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = path if isinstance(self.fs, pafs.S3FileSystem) else f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        if tmp != path:
            self.fs.move(tmp, path)

    def read_committed(self) -> Committed:
        state = Committed()
        for info in self._list("_manifest/files"):
            if not info.path.endswith(".json"):
                continue
            with self.fs.open_input_stream(info.path) as f:
                entry = json.loads(f.read())
            state.batch_ids.add(entry["batch_id"])
            state.videos.update(entry["videos"])
            for vid, idxs in entry["shots"].items():
                state.shots.setdefault(vid, set()).update(idxs)
        return state

    def remove_orphans(self, committed: Committed) -> list[str]:
        """Delete data files that no manifest entry names (a run died between data and manifest)."""
        removed = []
        for table in DATA_FOLDERS:
            for info in self._list(table):
                m = PART_RE.search(info.path)
                if (m and m.group(1) not in committed.batch_ids) or ".tmp-" in info.path:
                    self.fs.delete_file(info.path)
                    removed.append(info.path)
        return removed

    def commit(self, tables: dict[str, pa.Table], run_id: str, videos: dict[str, dict]) -> str | None:
        """Write one batch (tables keyed by name) and then its manifest entry; returns the batch id."""
        keys = [(v, -1) for v in tables["videos"].column("video_id").to_pylist()]
        shots: dict[str, list[int]] = {}
        for vid, idx in zip(tables["shots"].column("video_id").to_pylist(), tables["shots"].column("shot_idx").to_pylist()):
            shots.setdefault(vid, []).append(idx)
            keys.append((vid, idx))
        if not keys:
            return None
        bid = batch_id(keys)
        files = {}
        for name, table in tables.items():
            if table.num_rows:
                files[name] = f"{name}/part-{bid}.parquet"
                sink = pa.BufferOutputStream()
                pq.write_table(table.cast(TABLES[name]) if name in TABLES else table, sink, compression="zstd")
                self._put(self._path(files[name]), sink.getvalue().to_pybytes())
        entry = {"batch_id": bid, "run_id": run_id, "files": files, "videos": videos, "shots": shots}
        self._put(self._path("_manifest", "files", f"{bid}.json"), json.dumps(entry).encode())
        return bid

    def write_run_summary(self, run_id: str, summary: dict) -> str:
        path = self._path("_manifest", "runs", f"{run_id}.json")
        self._put(path, json.dumps(summary, indent=2, default=str).encode())
        return path

    def read_tables(self, *names: str, video_id: str | None = None) -> dict[str, pa.Table]:
        """Output tables (videos, shots, tags, features/<modality>) from the files the manifest names.

        The manifest is read once for all `names`; `video_id` keeps one video's rows, filtered
        while reading (Parquet statistics skip files that do not hold it).
        """
        batch_ids = self.read_committed().batch_ids
        filters = [("video_id", "=", video_id)] if video_id else None
        tables = {}
        for name in names:
            paths = sorted(i.path for i in self._list(name) if (m := PART_RE.search(i.path)) and m.group(1) in batch_ids)
            if not paths:
                tables[name] = TABLES[name].empty_table() if name in TABLES else pa.table({})
                continue
            tables[name] = pa.concat_tables(pq.read_table(p, filesystem=self.fs, schema=TABLES.get(name), filters=filters)
                                            for p in paths)
        return tables

    def read_table(self, name: str, video_id: str | None = None) -> pa.Table:
        return self.read_tables(name, video_id=video_id)[name]


def new_run_id() -> str:
    return f"{os.environ.get('MOVIELIB_RUN_PREFIX', 'run')}-{uuid.uuid4().hex[:12]}"
