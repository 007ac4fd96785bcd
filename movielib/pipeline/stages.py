"""Ray Data stages of the tagging job. Each is a plain callable on a batch, testable without Ray.

    DecodeAndDetect (CPU task)   video row -> per-shot rows with sampled, cropped frames
    ClipSceneScorer (actor pool) per-shot rows -> + top-k CLIPSceneScore tags (frames dropped)
    CatalogSink     (writer)     per-shot rows -> videos / shots / tags Parquet + manifest entry
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import torch
from ray.data import Datasink
from ray.data.block import BlockAccessor
from ray.data.extensions import ArrowVariableShapedTensorArray

from movielib.features.schema import SHOTS, TAGS, VIDEOS
from movielib.features.store import CatalogStore
from movielib.io.uri import S3Options
from movielib.io.video import VideoReadError, local_copy, read_frames
from movielib.models.clip import ClipSpec, crop_frames, load_clip, to_model_input
from movielib.pipeline.resources import StageResources
from movielib.shots.detect import ContentShotDetector, DetectedVideo, Shot
from movielib.shots.sampling import sample_frame_indices
from movielib.tagging.scene_score import CleanRules, clip_scene_score
from movielib.taxonomy.labels import LabelSet

# Columns every per-shot row carries between stages; error rows have shot_idx == -1.
SHOT_ROW = pa.schema([
    *VIDEOS,
    ("n_shots", pa.int32()),
    *[f for f in SHOTS if f.name != "video_id"],
])
TAG_COLUMNS = [f for f in TAGS if f.name not in ("video_id", "shot_idx")]


def _video_fields(video_id: str, uri: str, det: DetectedVideo | None, error: str | None) -> dict:
    return {
        "video_id": video_id, "uri": uri,
        "duration_s": det.duration_s if det else None, "fps": det.fps if det else None,
        "width": det.width if det else None, "height": det.height if det else None,
        "n_frames": det.n_frames if det else None,
        "status": "error" if error else "ok", "error": error,
        "n_shots": len(det.shots) if det else 0,
    }


class DecodeAndDetect:
    """Cut one video into shots and sample its frames (4 fps per shot), as a CPU task.

    Yields blocks of `shots_per_block` shots so a long movie streams through in bounded
    memory; frames travel as model-sized uint8 crops. Any failure to read the video becomes
    one error row (shot_idx -1) and the job goes on.
    """

    resources = StageResources(num_cpus=1.0)

    def __init__(self, detector: ContentShotDetector, image_size: int, sampling_fps: float = 4.0,
                 s3: S3Options | None = None, scratch_dir: str | None = None, shots_per_block: int = 16):
        self.detector = detector
        self.image_size = image_size
        self.sampling_fps = sampling_fps
        self.s3 = s3
        self.scratch_dir = scratch_dir
        self.shots_per_block = shots_per_block

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video otherwise
        for video_id, uri in zip(batch["video_id"], batch["uri"]):
            yield from self.process(str(video_id), str(uri))

    def process(self, video_id: str, uri: str) -> Iterator[pa.Table]:
        try:
            with local_copy(uri, self.s3, self.scratch_dir) as path:
                det = self.detector.detect(path)
                yield from self._shot_blocks(video_id, uri, path, det)
        except Exception as exc:  # one bad video must not stop the catalog
            msg = str(exc) if isinstance(exc, VideoReadError) else f"{type(exc).__name__}: {exc}"
            yield self._error_row(video_id, uri, msg)

    def _shot_blocks(self, video_id: str, uri: str, path: str, det: DetectedVideo) -> Iterator[pa.Table]:
        video = _video_fields(video_id, uri, det, None)
        plan = {shot.idx: sample_frame_indices(shot.start_frame, shot.end_frame, det.fps, self.sampling_fps)
                for shot in det.shots}
        wanted = iter(read_frames(path, (i for idxs in plan.values() for i in idxs)))
        for first in range(0, len(det.shots), self.shots_per_block):
            shots = det.shots[first:first + self.shots_per_block]
            frames = [crop_frames([next(wanted)[1] for _ in plan[s.idx]], self.image_size) for s in shots]
            yield self._shot_table(video, shots, [plan[s.idx] for s in shots], det.fps, frames)

    def _shot_table(self, video: dict, shots: list[Shot], keyframes: list[list[int]], fps: float,
                    frames: list[np.ndarray]) -> pa.Table:
        rows = [{**video, "shot_idx": s.idx, "start_frame": s.start_frame, "end_frame": s.end_frame,
                 "start_s": s.start_s, "end_s": s.end_s, "keyframes": kf,
                 "keyframe_s": [k / fps for k in kf]} for s, kf in zip(shots, keyframes)]
        table = pa.Table.from_pylist(rows, schema=SHOT_ROW)
        return table.append_column("frames", ArrowVariableShapedTensorArray.from_numpy(frames))

    def _error_row(self, video_id: str, uri: str, error: str) -> pa.Table:
        row = {**_video_fields(video_id, uri, None, error), "shot_idx": -1}
        table = pa.Table.from_pylist([row], schema=SHOT_ROW)
        empty = np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return table.append_column("frames", ArrowVariableShapedTensorArray.from_numpy([empty]))


def _frames_column(table: pa.Table) -> list[np.ndarray]:
    return [a for chunk in table.column("frames").chunks for a in chunk.to_numpy()]


class ClipSceneScorer:
    """CLIPSceneScore for every shot (MovieCLIP §4), one model per actor.

    Text embeddings of the prompts are computed once, in __init__; each call embeds all the
    batch's frames in `frames_per_forward` chunks under inference mode, averages per-frame
    label softmaxes per shot, and keeps the top-k with the clean / multi-label rules.
    """

    def __init__(self, spec: ClipSpec, labels: LabelSet, rules: CleanRules, s3: S3Options | None = None,
                 frames_per_forward: int = 64, precision: str = "auto", torch_threads: int | None = None):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if precision == "auto":
            precision = "bf16" if self.device == "cuda" else "fp32"
        self.clip = load_clip(spec, s3, device=self.device, precision=precision)
        self.labels = labels
        self.rules = rules
        self.frames_per_forward = frames_per_forward
        self.model_name = f"{spec.name}/{spec.version}"
        with torch.inference_mode():
            tokens = self.clip.tokenizer(labels.prompts()).to(self.device)
            self.text_emb = self.clip.model.encode_text(tokens, normalize=True).float()

    @torch.inference_mode()
    def embed_images(self, crops: np.ndarray) -> torch.Tensor:
        """(n, S, S, 3) uint8 crops -> (n, D) float32 embeddings, in chunks of frames_per_forward."""
        dtype = next(self.clip.model.parameters()).dtype
        out = []
        for i in range(0, len(crops), self.frames_per_forward):
            x = to_model_input(crops[i:i + self.frames_per_forward], self.clip.mean, self.clip.std)
            out.append(self.clip.model.encode_image(x.to(self.device, dtype)).float())
        return torch.cat(out)

    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = _frames_column(batch)
        scored = [i for i, f in enumerate(frames) if len(f)]
        columns: dict[str, list] = {f.name: [None] * batch.num_rows for f in TAG_COLUMNS}
        if scored:
            counts = [len(frames[i]) for i in scored]
            emb = self.embed_images(np.concatenate([frames[i] for i in scored]))
            scores = clip_scene_score(emb, self.text_emb, counts).cpu().numpy()
            for row, shot_scores in zip(scored, scores):
                tags = self.rules.apply(shot_scores, self.labels.labels)
                for key in ("labels", "scores", "clean", "labels_multi"):
                    columns[key][row] = getattr(tags, key)
                columns["model"][row] = self.model_name
        out = batch.drop_columns(["frames"])
        for f in TAG_COLUMNS:
            out = out.append_column(f, pa.array(columns[f.name], f.type))
        return out


class CatalogSink(Datasink[list[dict]]):
    """Commits scored per-shot rows as videos / shots / tags Parquet, one batch per write call.

    `skip_shots` holds the (video_id -> shot_idx) keys earlier runs committed for videos they
    left unfinished, so a resumed run never writes a row twice. Each write returns counts and
    top-1 label tallies, which the driver folds into the run summary.
    """

    def __init__(self, dest: str, s3: S3Options | None, run_id: str, rows_per_file: int,
                 skip_shots: dict[str, set[int]] | None = None, skip_videos: set[str] | None = None):
        self.dest = dest
        self.s3 = s3
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.skip_shots = skip_shots or {}
        self.skip_videos = skip_videos or set()

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks, ctx) -> list[dict]:
        """Commit the rows Ray hands this task in batches of at most rows_per_file rows."""
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        rows = pa.concat_tables(tables).to_pylist() if tables else []
        store = CatalogStore(self.dest, self.s3)
        return [self._commit(store, rows[i:i + self.rows_per_file]) for i in range(0, len(rows), self.rows_per_file)]

    def _commit(self, store: CatalogStore, rows: list[dict]) -> dict:
        t0 = time.perf_counter()
        videos, shots, tags, entries = [], [], [], {}
        top1: collections.Counter[str] = collections.Counter()
        errors = []
        for r in rows:
            vid, idx = r["video_id"], r["shot_idx"]
            if idx <= 0 and vid not in self.skip_videos:
                videos.append({k: r[k] for k in VIDEOS.names})
                entries[vid] = {"status": r["status"], "n_shots": r["n_shots"], "uri": r["uri"]}
                if r["status"] == "error":
                    errors.append({"uri": r["uri"], "error": r["error"]})
            if idx < 0 or idx in self.skip_shots.get(vid, ()):
                continue
            shots.append({k: r[k] for k in SHOTS.names})
            tags.append({k: r[k] for k in TAGS.names})
            if r["labels"]:
                top1[r["labels"][0]] += 1
        bid = store.commit({"videos": pa.Table.from_pylist(videos, schema=VIDEOS),
                            "shots": pa.Table.from_pylist(shots, schema=SHOTS),
                            "tags": pa.Table.from_pylist(tags, schema=TAGS)}, self.run_id, entries)
        return {"batch_id": bid, "videos_ok": sum(e["status"] == "ok" for e in entries.values()),
                "videos_error": len(errors), "errors": errors, "shots": len(shots),
                "clean": sum(bool(t["clean"]) for t in tags), "top1": dict(top1),
                "write_s": time.perf_counter() - t0}

    def on_write_complete(self, write_result) -> None:
        """Runs on the driver: keep the per-batch returns for the run summary."""
        self.results = [r for batch in write_result.write_returns for r in batch]
