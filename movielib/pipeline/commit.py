"""The end of the graph: scored per-shot rows become whole videos, and whole videos become commits.

This module stays light (no torch, no model code): the Committer actor imports it in a process
of its own, which must start quickly beside the decode tasks.

A video's shots reach the end of the graph in several blocks, possibly through different write
tasks, so no write task can tell when a video is complete. One `Committer` actor per run gathers
the rows (the Datasink's tasks hand it their blocks), and commits a batch of complete videos to the
Delta tables when it holds `rows_per_commit` shot rows or its oldest row waited `commit_every_s`:
progressive commits, full files, and a videos row only after all of the video's shots (the rule
NeMo Curator applies after its 1:N fan-out).
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import ray
from ray.data import Datasink
from ray.data.block import BlockAccessor

from movielib.errors import StorageError
from movielib.io.uri import S3Options
from movielib.store.schema import SHOTS, TAGS, VIDEOS, FeatureSpec, table_schema
from movielib.store.store import CatalogStore

MAX_ERRORS_KEPT = 100  # the run summary keeps a sample; the full list is a query on the videos table


@dataclass
class Pending:
    """One video on its way: its shot rows by index, and its videos row once the last block told the count."""

    shots: dict[int, dict] = field(default_factory=dict)
    video: dict | None = None
    n_shots: int | None = None


@dataclass
class Tally:
    """What was committed, summed: small at any catalog size."""

    videos_ok: int = 0
    videos_error: int = 0
    shots: int = 0
    clean_shots: int = 0
    shots_with_faces: int = 0
    commits: int = 0
    top1: collections.Counter = field(default_factory=collections.Counter)
    stage_s: collections.Counter = field(default_factory=collections.Counter)  # wall seconds per stage
    stage_cpu_s: collections.Counter = field(default_factory=collections.Counter)  # CPU seconds per stage
    errors: list[dict] = field(default_factory=list)  # a sample of MAX_ERRORS_KEPT
    # failed for reasons not their own (I/O that stayed down, a lost worker, a bug): no videos row, a re-run
    # tries them again; a sample of MAX_ERRORS_KEPT, and (per chunk, not summed) every id, to release its claim
    videos_retryable: int = 0
    retryable: list[dict] = field(default_factory=list)
    retryable_ids: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # per chunk: claimed videos no row of which reached the sink


COUNTS = ("videos_ok", "videos_error", "videos_retryable", "shots", "clean_shots", "shots_with_faces", "commits")


def keyframe_row(row: dict) -> dict:
    """A shot row's keyframe (the scorer's JPEG of its middle sampled frame) as a keyframes row."""
    from movielib.tagging.tagger import keyframe_index

    times = row.get("keyframe_s") or [None]
    shape = _jpeg_size(row["keyframe_jpeg"])
    return {
        "video_id": row["video_id"],
        "shot_idx": row["shot_idx"],
        "frame_s": times[keyframe_index(len(times))],
        "width": shape[1],
        "height": shape[0],
        "jpeg": row["keyframe_jpeg"],
    }


def cue_rows(row: dict, spec: FeatureSpec) -> list[dict]:
    """The cues a shot row carries (those that start in it) as rows of table cues."""
    return [
        {"video_id": row["video_id"], **c, "model": spec.model, "model_version": spec.version, "embedding": e}
        for c, e in zip(row.get("cues") or [], row.get("cue_embeddings") or [])
    ]


def _jpeg_size(data: bytes) -> tuple[int, int]:
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE).shape[:2]


def add_tally(total, part: Tally) -> None:
    """Add `part` into `total` (a Tally, or the run summary, which has the same fields)."""
    for name in COUNTS:
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.top1.update(part.top1)
    total.stage_s.update(part.stage_s)
    total.stage_cpu_s.update(part.stage_cpu_s)
    total.errors += part.errors[: max(0, MAX_ERRORS_KEPT - len(total.errors))]
    total.retryable += part.retryable[: max(0, MAX_ERRORS_KEPT - len(total.retryable))]


class VideoAssembler:
    """Rows in, batches of whole videos out: an error row drops whatever shots its video had sent."""

    def __init__(self, features: list[FeatureSpec]):
        self.features = features
        self.open: dict[str, Pending] = {}
        self.closed: set[str] = set()  # complete or failed in this chunk: late rows of these are dropped
        self.ready: list[tuple[dict, list[dict]]] = []  # (videos row, its shot rows in order)
        self.ready_rows = 0
        self.oldest: float | None = None

    def add(self, row: dict) -> None:
        vid, idx = row["video_id"], row["shot_idx"]
        if vid in self.closed:
            return
        if idx < 0:  # the video failed (maybe after some of its shots were sent): one error row, no shots
            self.open.pop(vid, None)
            self._close(vid, {k: row[k] for k in VIDEOS.names}, [])
            return
        p = self.open.setdefault(vid, Pending())
        p.shots[idx] = row
        if row["n_shots"] is not None:  # the last block knows the counts and the video's own fields
            p.n_shots, p.video = row["n_shots"], {k: row[k] for k in VIDEOS.names}
        if p.n_shots is not None and len(p.shots) >= p.n_shots:
            del self.open[vid]
            self._close(vid, p.video, [p.shots[i] for i in sorted(p.shots)])

    def _close(self, vid: str, video: dict, shots: list[dict]) -> None:
        self.closed.add(vid)
        self.ready.append((video, shots))
        self.ready_rows += max(1, len(shots))
        self.oldest = self.oldest or time.monotonic()

    def take(self, rows: int | None = None) -> list[tuple[dict, list[dict]]]:
        """Whole videos, oldest first, until they hold `rows` shot rows (all of them when None)."""
        n, got = 0, 0
        while n < len(self.ready) and (rows is None or got < rows):
            got += max(1, len(self.ready[n][1]))
            n += 1
        taken, self.ready = self.ready[:n], self.ready[n:]
        self.ready_rows -= got
        self.oldest = time.monotonic() if self.ready else None
        return taken

    def unfinished(self) -> dict[str, Pending]:
        """Videos some of whose shots never arrived (a chunk ended without them)."""
        return self.open

    def tables(self, videos: list[tuple[dict, list[dict]]]) -> tuple[dict[str, pa.Table], Tally]:
        """The rows of a batch per table, and what they add to the run's tally."""
        keyframes = any(f.modality == "keyframe" for f in self.features)
        cue = next((f for f in self.features if f.modality == "cue"), None)  # rows of table cues, not features/cue
        per_shot = [f for f in self.features if f.modality != "cue"]
        out: dict[str, list[dict]] = {
            "videos": [],
            "shots": [],
            "tags": [],
            **({"keyframes": []} if keyframes else {}),
            **({"cues": []} if cue else {}),
            **{f"features/{f.modality}": [] for f in per_shot},
        }
        tally = Tally()
        for video, shots in videos:
            if video["status"] == "retryable":  # not done: no videos row, so a later run takes it again
                tally.videos_retryable += 1
                tally.retryable.append({"uri": video["uri"], "error": video["error"]})
                tally.retryable_ids.append(video["video_id"])
                continue
            out["videos"].append(video)
            if video["status"] == "error":
                tally.videos_error += 1
                tally.errors.append({"uri": video["uri"], "error": video["error"]})
            else:
                tally.videos_ok += 1
            for r in shots:
                tally.stage_s.update({k[2:]: v for k, v in r.items() if k.startswith("t_") and v})
                tally.stage_cpu_s.update({k[2:]: v for k, v in r.items() if k.startswith("c_") and v})
                out["shots"].append({k: r[k] for k in SHOTS.names})
                out["tags"].append({k: r.get(k) for k in TAGS.names})
                for f in per_shot:
                    out[f"features/{f.modality}"].append(
                        {
                            "video_id": r["video_id"],
                            "shot_idx": r["shot_idx"],
                            "model": f.model,
                            "model_version": f.version,
                            "embedding": r.get(f"{f.modality}_embedding"),
                        }
                    )
                if keyframes and r.get("keyframe_jpeg"):
                    out["keyframes"].append(keyframe_row(r))
                if cue:
                    out["cues"] += cue_rows(r, cue)
                if r.get("labels"):
                    tally.top1[r["labels"][0]] += 1
                tally.clean_shots += bool(r.get("clean"))
                tally.shots_with_faces += bool(r.get("face_count"))
        tally.shots = len(out["shots"])
        return {name: pa.Table.from_pylist(rows, schema=table_schema(name)) for name, rows in out.items()}, tally


class Committer:
    """The run's single writer (a Ray actor): gathers rows into whole videos and commits them in batches."""

    def __init__(
        self,
        dest: str,
        s3: S3Options | None,
        run_id: str,
        rows_per_commit: int,
        commit_every_s: float,
        features: list[FeatureSpec],
    ):
        self.store = CatalogStore(dest, s3)
        self.run_id = run_id
        self.rows_per_commit = rows_per_commit
        self.commit_every_s = commit_every_s
        self.assembler = VideoAssembler(features)
        self.seq = 1  # the Delta application-transaction version of the next batch (app id: the run id)
        self.tally = Tally()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.failure: Exception | None = None  # a timed commit that failed: raised to the next caller
        self.claimed_until = float("inf")  # epoch seconds: this run's claims on the chunk's videos lapse then
        threading.Thread(target=self._tick, daemon=True).start()

    def add(self, table: pa.Table) -> None:
        with self.lock:
            self._raise_failure()
            for row in table.to_pylist():
                self.assembler.add(row)
            while self.assembler.ready_rows >= self.rows_per_commit:  # full files: one commit per rows_per_commit
                self._commit(self.rows_per_commit)

    def _tick(self) -> None:
        """Commits on time too: a slow catalog still commits every `commit_every_s` seconds."""
        while not self.stopped.wait(min(1.0, self.commit_every_s / 4)):
            with self.lock:
                oldest = self.assembler.oldest
                if oldest is not None and time.monotonic() - oldest >= self.commit_every_s and not self.failure:
                    try:
                        self._commit()
                    except Exception as exc:  # the store is unreachable: the graph's next call reports it
                        self.failure = exc

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    def claims_valid_until(self, epoch_s: float) -> None:
        """The driver says until when this run holds its videos (set per chunk, moved on by each renewal)."""
        self.claimed_until = epoch_s

    def _commit(self, rows: int | None = None) -> None:
        if not self.assembler.ready:
            return
        if time.time() >= self.claimed_until:  # another run may own these videos now: never write them twice
            raise StorageError(
                f"run {self.run_id}: its claims lapsed at {time.ctime(self.claimed_until)} (not renewed "
                f"in output.claim_ttl_s); stopping before writing videos another run may have taken"
            )
        videos = self.assembler.take(rows)
        t0, c0 = time.perf_counter(), time.process_time()
        tables, tally = self.assembler.tables(videos)
        self.store.commit(tables, self.run_id, self.seq)
        self.seq += 1
        tally.commits, tally.stage_s["write"] = 1, time.perf_counter() - t0
        tally.stage_cpu_s["write"] = time.process_time() - c0
        add_tally(self.tally, tally)
        self.tally.retryable_ids += tally.retryable_ids

    def finish_chunk(self, expected: list[str], failed: bool = False) -> Tally:
        """Commit what is complete and return (and reset) the chunk's tally. Of the `expected` videos, those
        some of whose shots never arrived become retryable (their task died past its retries, or the chunk
        failed), and those no row of which arrived are listed as `lost` for the driver to report."""
        with self.lock:
            self._raise_failure()
            for p in list(self.assembler.unfinished().values()):
                row = next(iter(p.shots.values()))
                want = p.n_shots if p.n_shots is not None else "?"
                self.assembler.add(
                    {
                        **{k: row[k] for k in VIDEOS.names},
                        "shot_idx": -1,
                        "status": "retryable",
                        "error": f"only {len(p.shots)} of {want} shots reached the sink"
                        + (" (the chunk failed)" if failed else ""),
                        "duration_s": None,
                        "n_frames": None,
                    }
                )
            self._commit()
            out, self.tally = self.tally, Tally()
            out.lost = [vid for vid in expected if vid not in self.assembler.closed]
            self.assembler = VideoAssembler(self.assembler.features)
            return out

    def stop(self) -> None:
        self.stopped.set()


class CommitterSink(Datasink[None]):
    """Hands every block to the run's Committer; the task waits for it, so a slow store slows the graph."""

    def __init__(self, committer: ray.actor.ActorHandle):
        self.committer = committer

    def write(self, blocks, ctx) -> None:
        refs = []
        for b in blocks:
            table = BlockAccessor.for_block(b).to_arrow()
            keep = [c for c in table.column_names if c not in ("frames", "people_frames", "audio", "subtitle")]
            refs.append(self.committer.add.remote(table.select(keep)))
        ray.get(refs)
