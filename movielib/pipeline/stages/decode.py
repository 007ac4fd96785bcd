"""DecodeAndDetect: the Ray Data shell over the tagging core's VideoCutter (a CPU task, or NVDEC on a GPU task)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from movielib.io.video import VideoReadError, local_copy
from movielib.pipeline.attempts import TransientError, VideoGuard
from movielib.pipeline.stages.columns import (
    CUE_LIST,
    NO_AUDIO,
    SHOT_ROW,
    StageClock,
    encode_frame,
    with_tensor_column,
)
from movielib.tagging.video import ShotBlock, VideoCutter, VideoFacts


@dataclass
class DecodeAndDetect(VideoCutter):
    """The tagging core's VideoCutter (movielib.tagging.video) as a Ray Data stage: per-shot rows out.

    The stage's own part is what a batch job over a catalog needs: the object is copied to scratch
    (with I/O retries), `guard` bounds the attempts at a video and its time and memory, people-detector
    frames travel PNG-encoded, and a video that fails becomes one row: an error row when the video
    itself is bad (or killed its worker `max_attempts` times), a retryable row when it was not its fault.
    """

    scratch_dir: str | None = None  # where remote objects are copied for decoding (default: system temp)
    guard: VideoGuard | None = None  # attempts, limits, I/O retries (movielib.pipeline.attempts); None: none

    def __call__(self, batch: dict[str, np.ndarray]) -> Iterator[pa.Table]:
        logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one INFO line per video otherwise
        for video_id, uri in zip(batch["video_id"], batch["uri"]):
            yield from self.process(str(video_id), str(uri))

    def process(self, video_id: str, uri: str) -> Iterator[pa.Table]:
        """The video's shot blocks, or one row saying why not: an error row when the video itself is bad
        (or killed its worker `max_attempts` times), a retryable row when the failure was not its fault."""
        clock = StageClock()
        emitted = 0
        guard = self.guard or VideoGuard(None)
        attempt = guard.begin(video_id)
        poison = guard.exhausted(attempt)
        if poison:
            yield clock.stamp(self._error_row(video_id, uri, poison), "decode")
            return
        try:
            with (
                guard.watching(video_id, uri, attempt),
                guard.reading(uri, lambda: local_copy(uri, self.s3, self.scratch_dir)) as path,
            ):
                for block in self.blocks(path, uri):
                    rows = self._rows(video_id, uri, block)
                    emitted += rows.num_rows
                    yield clock.stamp(rows, "decode")
                    clock.restart()  # the time spent downstream while suspended is not ours
        except Exception as exc:  # one bad video must not stop the catalog
            bad_video = isinstance(exc, VideoReadError)
            msg = str(exc) if bad_video or isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
            if emitted:  # its first shots already went downstream: the sink drops them when this row arrives
                msg = f"stopped after {emitted} of its shots: {msg}"
            row = self._error_row(video_id, uri, msg, status="error" if bad_video else "retryable")
            yield clock.stamp(row, "decode")

    def _rows(self, video_id: str, uri: str, block: ShotBlock) -> pa.Table:
        """One block of cut shots as per-shot rows with the inputs of the enabled downstream stages."""
        video = _video_fields(video_id, uri, block.video)
        rows = [
            {
                **video,
                "shot_idx": s.shot.idx,
                "start_frame": s.shot.start_frame,
                "end_frame": s.shot.end_frame,
                "start_s": s.shot.start_s,
                "end_s": s.shot.end_s,
                "keyframes": [i for i, _ in s.frames],
                "keyframe_s": [t for _, t in s.frames],
            }
            for s in block.shots
        ]
        return self._with_inputs(
            pa.Table.from_pylist(rows, schema=SHOT_ROW),
            [s.crops for s in block.shots],
            people=[[encode_frame(p) for p in s.people] for s in block.shots],
            audio=[s.audio if s.audio is not None else NO_AUDIO for s in block.shots],
            has_audio=block.has_audio,
            subtitles=[s.subtitle for s in block.shots],
            cues=[
                [{"cue_idx": i, "start_s": c.start_s, "end_s": c.end_s, "text": c.text} for i, c in s.cues]
                for s in block.shots
            ],
        )

    def _with_inputs(
        self,
        table: pa.Table,
        frames: list[np.ndarray],
        people: list[list[bytes]],
        audio: list[np.ndarray],
        has_audio: bool,
        subtitles: list[str | None],
        cues: list[list[dict]],
    ) -> pa.Table:
        """Append what the enabled downstream stages consume: crops, detector frames, audio, subtitles, cues."""
        table = with_tensor_column(table, "frames", frames)
        if self.people_max_side:
            table = table.append_column("people_frames", pa.array(people, pa.list_(pa.binary())))
        if self.audio:
            table = with_tensor_column(table, "audio", audio)
            table = table.append_column("has_audio", pa.array([has_audio] * table.num_rows))
        if self.subtitles:
            table = table.append_column("subtitle", pa.array(subtitles, pa.string()))
        if self.cues:
            table = table.append_column("cues", pa.array(cues, CUE_LIST))
        return table

    def _error_row(self, video_id: str, uri: str, error: str, status: str = "error") -> pa.Table:
        row = {**_video_fields(video_id, uri, None, error), "status": status, "n_shots": 0, "shot_idx": -1}
        table = pa.Table.from_pylist([row], schema=SHOT_ROW)
        size = self.preprocess.size
        h, w = (size, size) if isinstance(size, int) else size
        no_frames = np.zeros((0, h, w, 3), np.uint8)
        return self._with_inputs(
            table, [no_frames], people=[[]], audio=[NO_AUDIO], has_audio=False, subtitles=[None], cues=[[]]
        )


def _video_fields(video_id: str, uri: str, video: VideoFacts | None, error: str | None = None) -> dict:
    """The videos-table columns each row carries; frame count and duration are known at the pass's end
    (rows of earlier blocks carry nulls there, and the sink takes the video row from the last block)."""
    return {
        "video_id": video_id,
        "uri": uri,
        "duration_s": video.duration_s if video else None,
        "fps": video.fps if video else None,
        "width": video.width if video else None,
        "height": video.height if video else None,
        "n_frames": video.n_frames if video else None,
        "status": "error" if error else "ok",
        "error": error,
        "n_shots": video.n_shots if video else None,
    }
