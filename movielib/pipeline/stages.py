"""Ray Data stages of the tagging job. Each is a plain callable on a batch, testable without Ray.

    DecodeAndDetect (CPU task)   video row -> per-shot rows: sampled crops, detector frames,
                                 audio samples, subtitle text
    DetectPeople    (CPU task)   + face_count, largest_face_frac, person_present
    EmbedAudio      (CPU task)   + audio_embedding
    EmbedText       (CPU task)   + text_embedding (subtitles)
    ClipSceneScorer (actor pool) + top-k CLIPSceneScore tags, image_embedding (frames dropped)
    CatalogSink     (writer)     videos / shots / tags / features/<modality> Parquet + manifest entry

What each stage needs (CPUs, GPUs, memory) is part of the job config (decode.*, scoring.*) and
is mapped onto Ray in one place, `movielib.pipeline.tagging.build_dataset`.
"""

from __future__ import annotations

import collections
import functools
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from ray.data import Datasink
from ray.data.block import BlockAccessor
from ray.data.extensions import ArrowVariableShapedTensorArray

from movielib.features.schema import SHOTS, TAGS, VIDEOS, table_schema
from movielib.features.store import CatalogStore
from movielib.io.audio import extract_audio, slice_seconds
from movielib.io.subtitles import sidecar_subtitles, text_between
from movielib.io.uri import S3Options
from movielib.io.video import VideoReadError, local_copy, read_frames
from movielib.models.clip import ClipSpec, crop_frames, load_clip, to_model_input
from movielib.models.faces import PersonFaceDetector
from movielib.models.text import embed_texts
from movielib.shots.detect import DetectedVideo, Shot, ShotDetector
from movielib.shots.sampling import sample_frame_indices
from movielib.tagging.scene_score import CleanRules, clip_scene_score
from movielib.taxonomy.labels import LabelSet

# Columns every per-shot row carries between stages; error rows have shot_idx == -1.
SHOT_ROW = pa.schema([
    *VIDEOS,
    ("n_shots", pa.int32()),
    *[f for f in SHOTS if f.name != "video_id"],
])
SCORE_COLUMNS = [TAGS.field(n) for n in ("labels", "scores", "clean", "labels_multi", "model")]
PEOPLE_COLUMNS = [TAGS.field(n) for n in ("face_count", "largest_face_frac", "person_present")]
EMBEDDING = pa.list_(pa.float32())
NO_AUDIO = np.zeros(0, np.float32)


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature stage writes: the features/<modality> table's model, version and width."""

    modality: str
    model: str
    version: str
    dim: int


def with_stage_time(table: pa.Table, stage: str, seconds: float) -> pa.Table:
    """Spread a stage's wall time over the rows it produced (column t_<stage>); the sink sums it."""
    return table.append_column(f"t_{stage}", pa.array([seconds / max(1, table.num_rows)] * table.num_rows, pa.float64()))


def timed(stage: str):
    """Decorate a stage's __call__(batch) -> table so its wall time lands in column t_<stage>."""
    def wrap(call):
        @functools.wraps(call)
        def timed_call(self, batch: pa.Table) -> pa.Table:
            t0 = time.perf_counter()
            out = call(self, batch)
            return with_stage_time(out, stage, time.perf_counter() - t0)
        return timed_call
    return wrap


def tensor_column(table: pa.Table, name: str) -> list[np.ndarray]:
    return [a for chunk in table.column(name).chunks for a in chunk.to_numpy()]


def with_tensor_column(table: pa.Table, name: str, arrays: list[np.ndarray]) -> pa.Table:
    return table.append_column(name, ArrowVariableShapedTensorArray.from_numpy(arrays))


def _video_fields(video_id: str, uri: str, det: DetectedVideo | None, error: str | None) -> dict:
    return {
        "video_id": video_id, "uri": uri,
        "duration_s": det.duration_s if det else None, "fps": det.fps if det else None,
        "width": det.width if det else None, "height": det.height if det else None,
        "n_frames": det.n_frames if det else None,
        "status": "error" if error else "ok", "error": error,
        "n_shots": len(det.shots) if det else 0,
    }


def spread(items: list, k: int) -> list:
    """At most k items, evenly spaced, first and last included when k >= 2."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(j * (len(items) - 1) / (k - 1))] for j in range(k)]


def _shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    return frame if scale >= 1 else cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


class DecodeAndDetect:
    """Cut one video into shots and gather what later stages need per shot, as a CPU task.

    Frames are sampled at 4 fps per shot (at least one) and decoded once: each becomes a
    model-sized crop for CLIP, and up to `people_frames_per_shot` of them, evenly spread, a
    copy at most `people_max_side` pixels for the people detector. Audio is extracted once per video and cut per
    shot; sidecar subtitles are cut the same way. Blocks of `shots_per_block` shots keep a
    long movie in bounded memory. Any failure to read the video becomes one error row.
    """

    def __init__(self, detector: ShotDetector, image_size: int, sampling_fps: float = 4.0,
                 s3: S3Options | None = None, scratch_dir: str | None = None, shots_per_block: int = 16,
                 people_max_side: int | None = None, audio: bool = False, subtitles: bool = False,
                 prepare_threads: int = 2, people_frames_per_shot: int = 3):
        self.detector = detector
        self.image_size = image_size
        self.sampling_fps = sampling_fps
        self.s3 = s3
        self.scratch_dir = scratch_dir
        self.shots_per_block = shots_per_block
        self.people_max_side = people_max_side
        self.audio = audio
        self.subtitles = subtitles
        self.prepare_threads = prepare_threads
        self.people_frames_per_shot = people_frames_per_shot

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video otherwise
        for video_id, uri in zip(batch["video_id"], batch["uri"]):
            yield from self.process(str(video_id), str(uri))

    def process(self, video_id: str, uri: str) -> Iterator[pa.Table]:
        t0 = time.perf_counter()
        try:
            with local_copy(uri, self.s3, self.scratch_dir) as path:
                det = self.detector.detect(path)
                samples = extract_audio(path) if self.audio else None
                cues = sidecar_subtitles(uri, self.s3) if self.subtitles else None
                for block in self._shot_blocks(video_id, uri, path, det, samples, cues):
                    yield with_stage_time(block, "decode", time.perf_counter() - t0)
                    t0 = time.perf_counter()  # the time spent downstream while suspended is not ours
        except Exception as exc:  # one bad video must not stop the catalog
            msg = str(exc) if isinstance(exc, VideoReadError) else f"{type(exc).__name__}: {exc}"
            yield with_stage_time(self._error_row(video_id, uri, msg), "decode", time.perf_counter() - t0)

    def _shot_blocks(self, video_id, uri, path, det: DetectedVideo, samples, cues) -> Iterator[pa.Table]:
        video = _video_fields(video_id, uri, det, None)
        plan = {shot.idx: sample_frame_indices(shot.start_frame, shot.end_frame, det.fps, self.sampling_fps)
                for shot in det.shots}
        with ThreadPoolExecutor(self.prepare_threads) as pool:
            # frames are cropped (PIL releases the GIL) while the decoder moves on to the next ones
            people = {i for idxs in plan.values() for i in spread(idxs, self.people_frames_per_shot)}
            prepared = (pool.submit(self._prepare, frame, i in people)
                        for i, frame in read_frames(path, (i for idxs in plan.values() for i in idxs)))
            for first in range(0, len(det.shots), self.shots_per_block):
                shots = det.shots[first:first + self.shots_per_block]
                futures = [[next(prepared) for _ in plan[s.idx]] for s in shots]
                ready = [[f.result() for f in fs] for fs in futures]
                table = self._shot_table(video, shots, [plan[s.idx] for s in shots], det.fps)
                yield self._with_inputs(
                    table, [np.stack([c for c, _ in r]) for r in ready],
                    people=[[p for _, p in r if p is not None] for r in ready],
                    audio=[slice_seconds(samples, s.start_s, s.end_s) if samples is not None else NO_AUDIO for s in shots],
                    has_audio=samples is not None,
                    subtitles=[text_between(cues, s.start_s, s.end_s) if cues else None for s in shots])

    def _with_inputs(self, table: pa.Table, frames: list[np.ndarray], people: list[list[bytes]],
                     audio: list[np.ndarray], has_audio: bool, subtitles: list[str | None]) -> pa.Table:
        """Append what the enabled downstream stages consume: crops, detector frames, audio, subtitles."""
        table = with_tensor_column(table, "frames", frames)
        if self.people_max_side:
            table = table.append_column("people_frames", pa.array(people, pa.list_(pa.binary())))
        if self.audio:
            table = with_tensor_column(table, "audio", audio)
            table = table.append_column("has_audio", pa.array([has_audio] * table.num_rows))
        if self.subtitles:
            table = table.append_column("subtitle", pa.array(subtitles, pa.string()))
        return table

    def _prepare(self, frame: np.ndarray, for_people: bool) -> tuple[np.ndarray, bytes | None]:
        """One decoded frame -> its CLIP crop and, for the people detector's frames, a small PNG copy."""
        crop = crop_frames([frame], self.image_size)[0]
        people = _encode_frame(_shrink(frame, self.people_max_side)) if self.people_max_side and for_people else None
        return crop, people

    def _shot_table(self, video: dict, shots: list[Shot], keyframes: list[list[int]], fps: float) -> pa.Table:
        rows = [{**video, "shot_idx": s.idx, "start_frame": s.start_frame, "end_frame": s.end_frame,
                 "start_s": s.start_s, "end_s": s.end_s, "keyframes": kf,
                 "keyframe_s": [s.start_s + (k - s.start_frame) / fps for k in kf]} for s, kf in zip(shots, keyframes)]
        return pa.Table.from_pylist(rows, schema=SHOT_ROW)

    def _error_row(self, video_id: str, uri: str, error: str) -> pa.Table:
        table = pa.Table.from_pylist([{**_video_fields(video_id, uri, None, error), "shot_idx": -1}], schema=SHOT_ROW)
        no_frames = np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return self._with_inputs(table, [no_frames], people=[[]], audio=[NO_AUDIO], has_audio=False, subtitles=[None])


def _encode_frame(rgb: np.ndarray) -> bytes:
    """Detector frames travel PNG-encoded: lossless, and a fraction of the raw size."""
    import cv2

    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    return buf.tobytes()


def _decode_frame(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


class DetectPeople:
    """Per shot, over its sampled frames: most faces in one frame, largest face's area fraction,
    whether any frame shows a person. Consumes the `people_frames` column."""

    def __init__(self, detector: PersonFaceDetector):
        self.detector = detector

    @timed("people")
    def __call__(self, batch: pa.Table) -> pa.Table:
        counts, fracs, persons = [], [], []
        for frames in batch.column("people_frames").to_pylist():
            found = [self.detector.detect(_decode_frame(f)) for f in frames or []]
            counts.append(max((len(p.faces) for p in found), default=None))
            fracs.append(max((p.largest_face_frac for p in found), default=None))
            persons.append(any(p.person for p in found) if found else None)
        out = batch.drop_columns(["people_frames"])
        for field, values in zip(PEOPLE_COLUMNS, (counts, fracs, persons)):
            out = out.append_column(field, pa.array(values, field.type))
        return out


class EmbedAudio:
    """Audio embedding per shot (log-mel statistics, or a TorchScript encoder); null without audio."""

    def __init__(self, encoder):
        self.encoder = encoder

    @timed("audio")
    def __call__(self, batch: pa.Table) -> pa.Table:
        has = batch.column("has_audio").to_pylist()
        clips = tensor_column(batch, "audio")
        emb = [self.encoder.embed(c).tolist() if h and len(c) else None for h, c in zip(has, clips)]
        return batch.drop_columns(["audio", "has_audio"]).append_column("audio_embedding", pa.array(emb, EMBEDDING))


class EmbedText:
    """Sentence embedding of each shot's subtitle text (all-MiniLM-L6-v2 by default); null without text."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path

    @timed("text")
    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("subtitle").to_pylist()
        idx = [i for i, t in enumerate(texts) if t]
        emb: list = [None] * len(texts)
        if idx:
            for i, e in zip(idx, embed_texts([texts[i] for i in idx], self.model_path)):
                emb[i] = e.tolist()
        return batch.append_column("text_embedding", pa.array(emb, EMBEDDING))


class ClipSceneScorer:
    """CLIPSceneScore for every shot (MovieCLIP §4), one model per actor.

    Text embeddings of the prompts are computed once, in __init__; each call embeds all the
    batch's frames in `frames_per_forward` chunks under inference mode, averages per-frame
    label softmaxes per shot, and keeps the top-k with the clean / multi-label rules. The same
    forward pass gives the shot's image feature: the mean of its normalised frame embeddings.
    """

    def __init__(self, spec: ClipSpec, labels: LabelSet, rules: CleanRules, s3: S3Options | None = None,
                 frames_per_forward: int = 64, precision: str = "auto", torch_threads: int | None = None,
                 image_features: bool = False):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if torch_threads:
            torch.set_num_threads(torch_threads)
        if precision == "auto":
            precision = "bf16" if self.device == "cuda" else "fp32"
        self.clip = load_clip(spec, s3, device=self.device, precision=precision)
        self.labels = labels
        self.rules = rules
        self.frames_per_forward = frames_per_forward
        self.image_features = image_features
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

    @timed("score")
    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = tensor_column(batch, "frames")
        scored = [i for i, f in enumerate(frames) if len(f)]
        columns: dict[str, list] = {f.name: [None] * batch.num_rows for f in SCORE_COLUMNS}
        image_emb: list = [None] * batch.num_rows
        if scored:
            counts = [len(frames[i]) for i in scored]
            emb = self.embed_images(np.concatenate([frames[i] for i in scored]))
            scores = clip_scene_score(emb, self.text_emb, counts).cpu().numpy()
            per_shot = torch.split(torch.nn.functional.normalize(emb, dim=-1), counts)
            for row, shot_scores, shot_emb in zip(scored, scores, per_shot):
                tags = self.rules.apply(shot_scores, self.labels.labels)
                for key in ("labels", "scores", "clean", "labels_multi"):
                    columns[key][row] = getattr(tags, key)
                columns["model"][row] = self.model_name
                image_emb[row] = shot_emb.mean(dim=0).cpu().tolist()
        out = batch.drop_columns(["frames"])
        for f in SCORE_COLUMNS:
            out = out.append_column(f, pa.array(columns[f.name], f.type))
        if self.image_features:
            out = out.append_column("image_embedding", pa.array(image_emb, EMBEDDING))
        return out


class CatalogSink(Datasink[list[dict]]):
    """Commits scored per-shot rows as videos / shots / tags / features Parquet, in batches.

    `skip_shots` holds the (video_id -> shot_idx) keys earlier runs committed for videos they
    left unfinished, so a resumed run never writes a row twice. Each write returns counts and
    top-1 label tallies, which the driver folds into the run summary.
    """

    def __init__(self, dest: str, s3: S3Options | None, run_id: str, rows_per_file: int,
                 features: list[FeatureSpec] | None = None,
                 skip_shots: dict[str, set[int]] | None = None, skip_videos: set[str] | None = None):
        self.dest = dest
        self.s3 = s3
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.features = features or []
        self.skip_shots = skip_shots or {}
        self.skip_videos = skip_videos or set()
        self.results: list[dict] = []

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks, ctx) -> list[dict]:
        """Commit the rows Ray hands this task in batches of at most rows_per_file rows."""
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        rows = pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []
        store = CatalogStore(self.dest, self.s3)
        return [self._commit(store, rows[i:i + self.rows_per_file]) for i in range(0, len(rows), self.rows_per_file)]

    def _commit(self, store: CatalogStore, rows: list[dict]) -> dict:
        t0 = time.perf_counter()
        out: dict[str, list[dict]] = {"videos": [], "shots": [], "tags": [], **{f"features/{f.modality}": [] for f in self.features}}
        entries: dict[str, dict] = {}
        top1: collections.Counter[str] = collections.Counter()
        stage_s: collections.Counter[str] = collections.Counter()
        errors = []
        for r in rows:
            vid, idx = r["video_id"], r["shot_idx"]
            stage_s.update({k[2:]: v for k, v in r.items() if k.startswith("t_") and v})
            if idx <= 0 and vid not in self.skip_videos:
                out["videos"].append({k: r[k] for k in VIDEOS.names})
                entries[vid] = {"status": r["status"], "n_shots": r["n_shots"], "uri": r["uri"]}
                if r["status"] == "error":
                    errors.append({"uri": r["uri"], "error": r["error"]})
            if idx < 0 or idx in self.skip_shots.get(vid, ()):
                continue
            out["shots"].append({k: r[k] for k in SHOTS.names})
            out["tags"].append({k: r.get(k) for k in TAGS.names})
            for f in self.features:
                out[f"features/{f.modality}"].append({"video_id": vid, "shot_idx": idx, "model": f.model,
                                                      "model_version": f.version, "embedding": r.get(f"{f.modality}_embedding")})
            if r["labels"]:
                top1[r["labels"][0]] += 1
        dims = {f.modality: f.dim for f in self.features}
        bid = store.commit({name: pa.Table.from_pylist(rows_, schema=table_schema(name, dims)) for name, rows_ in out.items()},
                           self.run_id, entries)
        return {"batch_id": bid, "videos_ok": sum(e["status"] == "ok" for e in entries.values()),
                "videos_error": len(errors), "errors": errors, "shots": len(out["shots"]),
                "clean": sum(bool(t["clean"]) for t in out["tags"]), "top1": dict(top1),
                "faces": sum(1 for t in out["tags"] if t.get("face_count")), "stage_s": dict(stage_s),
                "write_s": time.perf_counter() - t0}

    def on_write_complete(self, write_result) -> None:
        """Runs on the driver: keep the per-batch returns for the run summary."""
        self.results = [r for batch in write_result.write_returns for r in batch]
