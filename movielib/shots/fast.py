"""ContentDetector's math, fast: the decoder scales each frame straight to the analysis size, numpy/OpenCV
score many frames per call, so no per-frame Python image work is left.

PySceneDetect's ContentDetector (0.7) on its default settings:
  1. each frame is resized to 256 px wide (auto downscale: width / 256 when width >= 256, bilinear);
  2. converted BGR -> HSV (8-bit, OpenCV);
  3. score_t = mean over H, S, V of the mean |pixel_t - pixel_{t-1}| (weights 1, 1, 1, edges 0);
  4. a cut at t when score_t >= threshold (27), passed through its FlashFilter in MERGE mode with
     min_scene_len (15 frames).
Here step 1 runs inside the decoder (libswscale, from the decoder's YUV), steps 2 and 3 are one
OpenCV call each per frame (cvtColor, and an L1 norm against the previous frame), or one torch
call per chunk of frames on a GPU, and step 4 is PySceneDetect's state machine over the per-frame
booleans. Frame numbers are decoded-frame indices; times come from each frame's presentation
timestamp, so VFR files keep real times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from movielib.devices import torch_device
from movielib.io.decode import DecodedFrame, VideoInfo
from movielib.shots.detect import WholeVideo

ANALYSIS_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """PySceneDetect's auto-downscale target for a frame size."""
    if width < ANALYSIS_WIDTH:
        return width, height
    factor = width / float(ANALYSIS_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


class FlashFilterMerge:
    """PySceneDetect's FlashFilter in MERGE mode, one frame at a time: step(t, above) -> cuts decided at t.

    A cut is reported at its own frame, or `min_len` frames later when a flash is being merged.
    """

    def __init__(self, min_len: int):
        self.min_len = min_len
        self.last_above, self.merge_enabled, self.merge_triggered, self.merge_start = 0, False, False, 0

    def step(self, t: int, is_above: bool) -> list[int]:
        if self.min_len <= 0:
            return [t] if is_above else []
        met = t - self.last_above >= self.min_len
        if is_above:
            self.last_above = t
        if self.merge_triggered:
            if met and not is_above and self.last_above - self.merge_start >= self.min_len:
                self.merge_triggered = False
                return [self.last_above]
            return []
        if not is_above:
            return []
        if met:
            self.merge_enabled = True
            return [t]
        if self.merge_enabled:
            self.merge_triggered, self.merge_start = True, t
        return []


def flash_filter_merge(above: np.ndarray, min_len: int) -> list[int]:
    """The filter over a whole sequence of per-frame threshold flags (frames numbered from 0)."""
    f = FlashFilterMerge(min_len)
    return [c for t, a in enumerate(np.asarray(above).tolist()) for c in f.step(t, bool(a))]


@dataclass(frozen=True)
class FastContentDetector(WholeVideo):
    """Same cuts as PySceneDetect's ContentDetector, less work per frame.

    Frames are scaled to the analysis size inside the decoder (nearest neighbour, like
    PySceneDetect's frames to within 0.75 of a score point) and scored one by one with OpenCV,
    or `chunk` at a time with torch on a GPU the task reserved.
    """

    threshold: float = 27.0
    min_scene_len: int = 15
    chunk: int = 32  # frames per torch call
    scorer: str = "auto"  # numpy (OpenCV on the CPU) | torch | auto (torch when this task has a GPU)

    name = "fast-content"

    def frame_scores(self, path: str) -> np.ndarray:
        """Per-frame ContentDetector scores of a whole file (frame 0 scores 0)."""
        from movielib.io.decode import PyAVDecoder

        with PyAVDecoder().open_stream(path) as stream:
            cutter = self.cutter(stream.info)
            for frame in stream:
                cutter.push(frame)
            cutter.finish()
        return np.array(cutter.scores)

    def cutter(self, info: VideoInfo) -> FastContentCutter:
        size = analysis_size(info.width, info.height)
        device = torch_device()
        if self.scorer == "torch" or (self.scorer == "auto" and device == "cuda"):
            return TorchContentCutter(self, size, device)
        return FastContentCutter(self, size)


class FastContentCutter:
    """ContentDetector scores frame by frame on the CPU, then PySceneDetect's flash filter (MERGE).

    One OpenCV HSV conversion and one L1 norm against the previous frame's HSV per frame: both
    SIMD, on a 256-px image, and each a single call (no stacking or int64 reduction in numpy), so
    the detector costs a small fraction of the decode that feeds it.
    """

    def __init__(self, det: FastContentDetector, size: tuple[int, int]):
        self.det, self.size = det, size
        self.analysis = (*size, "bgr24", "POINT")  # the frames it asks the decoder for
        # a cut is decided at its own frame, or min_scene_len frames after it (MERGE mode)
        self.lag = det.min_scene_len + 2
        self._prev: np.ndarray | None = None  # the previous frame's HSV
        self._filter = FlashFilterMerge(det.min_scene_len)
        self.scores: list[float] = []  # per frame (frame 0 scores 0), kept for inspection and tests

    def push(self, frame: DecodedFrame) -> list[int]:
        hsv = cv2.cvtColor(frame.analysis(*self.analysis), cv2.COLOR_BGR2HSV)
        # weights (1, 1, 1): the mean of the three channel means is the mean over all bytes
        score = 0.0 if self._prev is None else cv2.norm(hsv, self._prev, cv2.NORM_L1) / hsv.size
        self._prev = hsv
        self.scores.append(score)
        return self._filter.step(frame.index, score >= self.det.threshold)

    def finish(self) -> list[int]:
        return []


class TorchContentCutter(FastContentCutter):
    """The same scores, `chunk` frames per call on the task's GPU (movielib.shots.hsv: OpenCV's HSV, bit for bit)."""

    def __init__(self, det: FastContentDetector, size: tuple[int, int], device: str):
        super().__init__(det, size)
        self.device = device
        # a cut is decided when its chunk is scored, or min_scene_len frames after it (MERGE mode)
        self.lag += det.chunk
        self._frames: list[np.ndarray] = []
        self._first = 0  # index of the chunk's first frame
        # self._prev: the last HSV frame of the previous chunk, on the device

    def push(self, frame: DecodedFrame) -> list[int]:
        if not self._frames:
            self._first = frame.index
        self._frames.append(frame.analysis(*self.analysis))
        return self._score_chunk() if len(self._frames) >= self.det.chunk else []

    def finish(self) -> list[int]:
        return self._score_chunk() if self._frames else []

    def _score_chunk(self) -> list[int]:
        import torch

        from movielib.shots.hsv import content_scores

        chunk = torch.from_numpy(np.stack(self._frames)).to(self.device, non_blocking=True)
        self._frames = []
        part, self._prev = content_scores(chunk, self._prev)
        scores = part.cpu().numpy()
        if self._first == 0:
            scores = np.concatenate([np.zeros(1), scores])
        self.scores.extend(scores.tolist())
        above = scores >= self.det.threshold
        return [c for i, a in enumerate(above.tolist()) for c in self._filter.step(self._first + i, a)]
