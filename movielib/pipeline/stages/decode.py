"""DecodeAndDetect: one video in, its shots out, from a single decode pass (a CPU task, or NVDEC on a GPU task)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from movielib.devices import torch_device
from movielib.io.audio import extract_audio, slice_seconds
from movielib.io.decode import Decoder, make_decoder
from movielib.io.subtitles import sidecar_subtitles, text_between
from movielib.io.uri import S3Options
from movielib.io.video import VideoReadError, local_copy
from movielib.models.clip import FramePreprocess
from movielib.pipeline.attempts import TransientError, VideoGuard
from movielib.pipeline.stages.columns import NO_AUDIO, SHOT_ROW, encode_frame, with_stage_time, with_tensor_column
from movielib.shots.detect import Shot, ShotDetector
from movielib.shots.onepass import OnePass, Sample
from movielib.shots.sampling import ThinnedSamples


def spread(items: list, k: int) -> list:
    """At most k items, evenly spaced, first and last included when k >= 2."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(j * (len(items) - 1) / (k - 1))] for j in range(k)]


def shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    return frame if scale >= 1 else cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


@dataclass
class DecodeAndDetect:
    """Cut one video into shots and gather what later stages need per shot.

    One decode pass feeds the detector and the 4 fps sampler (movielib.shots.onepass). Each
    sampled frame becomes a model-size crop for CLIP (open_clip's eval resize + crop) on a thread
    pool while decoding goes on, and a copy at most `people_max_side` pixels kept for the people
    detector (`people_frames_per_shot` of them, evenly spread, PNG-encoded at the shot's end).
    A shot keeps at most `max_frames_per_shot` samples (evenly thinned past that). Audio is
    extracted once per video and cut per shot; sidecar subtitles are cut the same way. Blocks of
    `shots_per_block` shots are emitted as they complete. A video that cannot be read becomes
    one error row; a failure that is not the video's fault (the store, the worker, a bug), one
    retryable row; `guard` bounds the attempts at a video and its time and memory.
    """

    detector: ShotDetector
    preprocess: FramePreprocess
    sampling_fps: float = 4.0
    s3: S3Options | None = None
    scratch_dir: str | None = None
    shots_per_block: int = 16
    people_max_side: int | None = None  # None: no people detector frames
    audio: bool = False
    subtitles: bool = False
    prepare_threads: int = 2
    people_frames_per_shot: int = 3
    max_frames_per_shot: int = 512
    decoder: str | Decoder = "auto"  # auto | pyav | nvdec, or a Decoder object
    guard: VideoGuard | None = None  # attempts, limits, I/O retries (movielib.pipeline.attempts); None: none

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video otherwise
        for video_id, uri in zip(batch["video_id"], batch["uri"]):
            yield from self.process(str(video_id), str(uri))

    def process(self, video_id: str, uri: str) -> Iterator[pa.Table]:
        """The video's shot blocks, or one row saying why not: an error row when the video itself is bad
        (or killed its worker `max_attempts` times), a retryable row when the failure was not its fault."""
        t0 = time.perf_counter()
        emitted = 0
        guard = self.guard or VideoGuard(None)
        attempt = guard.begin(video_id)
        poison = guard.exhausted(attempt)
        if poison:
            yield with_stage_time(self._error_row(video_id, uri, poison), "decode", time.perf_counter() - t0)
            return
        try:
            with guard.watching(video_id, uri, attempt), \
                    guard.reading(uri, lambda: local_copy(uri, self.s3, self.scratch_dir)) as path:
                for block in self._shot_blocks(video_id, uri, path):
                    emitted += block.num_rows
                    yield with_stage_time(block, "decode", time.perf_counter() - t0)
                    t0 = time.perf_counter()  # the time spent downstream while suspended is not ours
        except Exception as exc:  # one bad video must not stop the catalog
            bad_video = isinstance(exc, VideoReadError)
            msg = str(exc) if bad_video or isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
            if emitted:  # its first shots already went downstream: the sink drops them when this row arrives
                msg = f"stopped after {emitted} of its shots: {msg}"
            row = self._error_row(video_id, uri, msg, status="error" if bad_video else "retryable")
            yield with_stage_time(row, "decode", time.perf_counter() - t0)

    def _shot_blocks(self, video_id: str, uri: str, path: str) -> Iterator[pa.Table]:
        """Run the one pass; a block is emitted when `shots_per_block` shots are done, the rest at the end."""
        onepass = OnePass(self.detector, self.sampling_fps)
        done: list[tuple[Shot, list[tuple[int, float, Future]], list[Future]]] = []
        frames, people = self._new_shot()
        decoder = self.decoder if not isinstance(self.decoder, str) else \
            make_decoder(self.decoder, gpu_reserved=torch_device() == "cuda")
        with ThreadPoolExecutor(self.prepare_threads) as pool, decoder.open_stream(path) as stream:
            # the container opened as a video: now its audio track and sidecar subtitles
            samples = extract_audio(path) if self.audio else None
            cues = sidecar_subtitles(uri, self.s3) if self.subtitles else None
            for event in onepass.run(stream):
                if isinstance(event, Sample):
                    if frames.wants(event.k):
                        # crop (PIL releases the GIL) while the decoder moves on to the next frames
                        for_people = bool(self.people_max_side) and people.wants(event.k)
                        prepared = pool.submit(self._prepare, event.frame, for_people)
                        frames.add(event.k, (event.frame.index, event.frame.pts_s, prepared))
                        if for_people:
                            people.add(event.k, prepared)
                    continue
                done.append((event, frames.values(), people.values()))
                frames, people = self._new_shot()
                if len(done) > self.shots_per_block:  # the last block waits for the pass's end (and its counts)
                    yield self._block(video_id, uri, onepass, done[: self.shots_per_block], samples, cues, final=False)
                    done = done[self.shots_per_block:]
            if done:
                yield self._block(video_id, uri, onepass, done, samples, cues, final=True)

    def _new_shot(self) -> tuple[ThinnedSamples[tuple[int, float, Future]], ThinnedSamples[Future]]:
        """A shot's sampled frames (index, time, prepared crop) and its people-detector candidates, both bounded."""
        return ThinnedSamples(self.max_frames_per_shot), ThinnedSamples(4 * self.people_frames_per_shot)

    def _block(self, video_id, uri, onepass: OnePass, done, samples, cues, final: bool) -> pa.Table:
        video = self._video_fields(video_id, uri, onepass, final)
        rows, crops, people_frames = [], [], []
        for shot, sampled, people in done:
            rows.append({**video, "shot_idx": shot.idx, "start_frame": shot.start_frame, "end_frame": shot.end_frame,
                         "start_s": shot.start_s, "end_s": shot.end_s, "keyframes": [i for i, _, _ in sampled],
                         "keyframe_s": [t for _, t, _ in sampled]})
            crops.append(np.stack([c.result()[0] for _, _, c in sampled]))
            people_frames.append([encode_frame(p.result()[1]) for p in spread(people, self.people_frames_per_shot)])
        table = pa.Table.from_pylist(rows, schema=SHOT_ROW)
        shots = [s for s, _, _ in done]
        return self._with_inputs(
            table, crops, people=people_frames,
            audio=[slice_seconds(samples, s.start_s, s.end_s) if samples is not None else NO_AUDIO for s in shots],
            has_audio=samples is not None,
            subtitles=[text_between(cues, s.start_s, s.end_s) if cues else None for s in shots])

    def _prepare(self, frame, for_people: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One sampled frame -> its CLIP crop and, for the people detector's frames, a small copy."""
        rgb = frame.rgb()
        return self.preprocess.crop([rgb])[0], shrink(rgb, self.people_max_side) if for_people else None

    @staticmethod
    def _video_fields(video_id: str, uri: str, onepass: OnePass | None, final: bool, error: str | None = None) -> dict:
        """The videos-table columns each row carries; frame count and duration are known at the pass's end
        (rows of earlier blocks carry nulls there, and the sink takes the video row from the last block)."""
        known = onepass is not None and final
        return {
            "video_id": video_id, "uri": uri,
            "duration_s": onepass.duration_s if known else None, "fps": onepass.info.fps if known else None,
            "width": onepass.info.width if known else None, "height": onepass.info.height if known else None,
            "n_frames": onepass.n_frames if known else None,
            "status": "error" if error else "ok", "error": error,
            "n_shots": onepass.n_shots if known else None,
        }

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

    def _error_row(self, video_id: str, uri: str, error: str, status: str = "error") -> pa.Table:
        row = {**self._video_fields(video_id, uri, None, False, error), "status": status, "n_shots": 0, "shot_idx": -1}
        table = pa.Table.from_pylist([row], schema=SHOT_ROW)
        h, w = (self.preprocess.size, self.preprocess.size) if isinstance(self.preprocess.size, int) else self.preprocess.size
        no_frames = np.zeros((0, h, w, 3), np.uint8)
        return self._with_inputs(table, [no_frames], people=[[]], audio=[NO_AUDIO], has_audio=False, subtitles=[None])
