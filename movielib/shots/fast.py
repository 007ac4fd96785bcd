"""ContentDetector's math, fast: ffmpeg decodes straight to the analysis size, numpy/OpenCV score
many frames per call, so no per-frame Python image work is left.

PySceneDetect's ContentDetector (0.7) on its default settings:
  1. each frame is resized to 256 px wide (auto downscale: width / 256 when width >= 256, bilinear);
  2. converted BGR -> HSV (8-bit, OpenCV);
  3. score_t = mean over H, S, V of the mean |pixel_t - pixel_{t-1}| (weights 1, 1, 1, edges 0);
  4. a cut at t when score_t >= threshold (27), passed through its FlashFilter in MERGE mode with
     min_scene_len (15 frames).
Here step 1 runs inside ffmpeg's decoder (scale filter, multi-threaded), step 2 runs once per
chunk of frames stacked into one image, step 3 is one numpy reduction per chunk, and step 4 is
PySceneDetect's state machine over the per-frame booleans. Frame numbers are decoded-frame
indices; times come from each frame's presentation timestamp, so VFR files keep real times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from movielib.io.frames import FrameStream
from movielib.shots.detect import DetectedVideo

ANALYSIS_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """PySceneDetect's auto-downscale target for a frame size."""
    if width < ANALYSIS_WIDTH:
        return width, height
    factor = width / float(ANALYSIS_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


def flash_filter_merge(above: np.ndarray, min_len: int) -> list[int]:
    """PySceneDetect's FlashFilter (MERGE mode) over per-frame threshold flags; returns cut frames.

    Only a state machine step per frame on a boolean; frames are numbered from 0.
    """
    if min_len <= 0:
        return [int(i) for i in np.flatnonzero(above)]
    cuts: list[int] = []
    last_above, merge_enabled, merge_triggered, merge_start = 0, False, False, 0
    for t, is_above in enumerate(above.tolist()):
        met = t - last_above >= min_len
        if is_above:
            last_above = t
        if merge_triggered:
            if met and not is_above and last_above - merge_start >= min_len:
                merge_triggered = False
                cuts.append(last_above)
            continue
        if not is_above:
            continue
        if met:
            merge_enabled = True
            cuts.append(t)
        elif merge_enabled:
            merge_triggered, merge_start = True, t
    return cuts


@dataclass(frozen=True)
class FastContentDetector:
    """Same cuts as PySceneDetect's ContentDetector, less work per frame.

    `chunk` frames are scored per numpy call; `threads` is ffmpeg's decoder thread count
    (0: ffmpeg chooses).
    """

    threshold: float = 27.0
    min_scene_len: int = 15
    chunk: int = 32
    threads: int = 0
    scorer: str = "auto"  # numpy (OpenCV + numpy on the CPU) | torch (on the GPU when there is one) | auto

    name = "fast-content"

    def frames(self, path: str) -> FrameStream:
        """Analysis-size BGR frames; nearest-neighbour scaling keeps scores within 0.3 of OpenCV's resize."""
        return FrameStream(path, analysis_size, "bgr24", "neighbor", self.chunk, self.threads)

    def frame_scores(self, path: str) -> tuple[np.ndarray, FrameStream]:
        """Per-frame scores (frame 0 scores 0) and the decoded stream's facts."""
        frames = self.frames(path)
        use_torch = self.scorer == "torch" or (self.scorer == "auto" and _cuda())
        scores = self._torch_scores(frames) if use_torch else self._numpy_scores(frames)
        return scores[: frames.n], frames

    @staticmethod
    def _torch_scores(frames: FrameStream) -> np.ndarray:
        """The same scores with movielib.shots.hsv (OpenCV's HSV, bit for bit) on the GPU if present."""
        import torch

        from movielib.shots.hsv import content_scores

        device = "cuda" if torch.cuda.is_available() else "cpu"
        scores, prev = [np.zeros(1, np.float64)], None
        for chunk in frames:
            part, prev = content_scores(torch.from_numpy(chunk).to(device, non_blocking=True), prev)
            scores.append(part.cpu().numpy())
        return np.concatenate(scores)

    @staticmethod
    def _numpy_scores(frames: FrameStream) -> np.ndarray:
        scores: list[np.ndarray] = [np.zeros(1, np.float64)]
        prev: np.ndarray | None = None
        for chunk in frames:
            k, h, w, _ = chunk.shape
            hsv = cv2.cvtColor(chunk.reshape(k * h, w, 3), cv2.COLOR_BGR2HSV).reshape(k, h * w * 3)
            seq = hsv if prev is None else np.concatenate([prev[None], hsv])
            if len(seq) > 1:
                # weights (1, 1, 1): the mean of the three channel means is the mean over all bytes
                diff = cv2.absdiff(seq[1:], seq[:-1])
                scores.append(diff.sum(axis=1, dtype=np.int64) / (3.0 * h * w))
            prev = hsv[-1]
        return np.concatenate(scores)

    def detect(self, path: str) -> DetectedVideo:
        scores, frames = self.frame_scores(path)
        cuts = flash_filter_merge(scores >= self.threshold, self.min_scene_len)
        return DetectedVideo.from_starts(cuts, frames.n, frames.pts, frames.fps, frames.width, frames.height)
