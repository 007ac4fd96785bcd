"""Shot boundaries, frame-fed: a detector is fed decoded frames in order and names the frames where shots start.

Every detector here follows PySceneDetect's `process_frame` model: `detector.cutter(info)` makes a
per-video ShotCutter, `push(frame)` feeds one decoded frame and returns cuts decided so far,
`finish()` returns the rest. `lag` bounds how late a decision comes: once a frame is `lag` frames
behind the newest one pushed, it can no longer become a cut. That bound is what lets the sampler
(movielib.shots.onepass) work from the same single decode with a short buffer of frames.
Frame numbers are 0-based decoded-frame indices; times are the frames' presentation times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

from scenedetect import AdaptiveDetector, ContentDetector, FrameTimecode
from scenedetect.common import Timecode
from scenedetect.scene_manager import compute_downscale_factor

from movielib.io.decode import DecodedFrame, VideoInfo
from movielib.shots.onepass import detect
from movielib.shots.types import DetectedVideo, Shot, ShotCutter, ShotDetector

__all__ = ["DetectedVideo", "SceneDetectShotDetector", "Shot", "ShotCutter", "ShotDetector", "WholeVideo"]


class WholeVideo:
    """`detect(path)`: a whole file's shots through one decode pass (tools, tests, benchmarks)."""

    def detect(self, path: str, decoder=None) -> DetectedVideo:
        return detect(path, self, decoder)


PYSCENEDETECT = {"content": ContentDetector, "adaptive": AdaptiveDetector}
THRESHOLD_ARG = {"content": "threshold", "adaptive": "adaptive_threshold"}


@dataclass(frozen=True)
class SceneDetectShotDetector(WholeVideo):
    """PySceneDetect's ContentDetector (default: threshold 27, min_scene_len 15) or AdaptiveDetector.

    PySceneDetect's own detector objects, fed what its SceneManager would feed them: full-resolution
    BGR frames (bit-identical to its OpenCV backend's) resized by its auto-downscale factor with
    cv2's bilinear resize, and timecodes from the frames' presentation times.
    """

    kind: str = "content"
    threshold: float | None = None  # None: the detector's own default (content 27, adaptive 3)
    min_scene_len: int = 15
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"pyscenedetect-{self.kind}"

    def make(self):
        params = {"min_scene_len": self.min_scene_len, **self.extra}
        if self.threshold is not None:
            params[THRESHOLD_ARG[self.kind]] = self.threshold
        return PYSCENEDETECT[self.kind](**params)

    def cutter(self, info: VideoInfo) -> SceneDetectCutter:
        return SceneDetectCutter(self.make(), info, self.min_scene_len)


class SceneDetectCutter:
    """Drives one PySceneDetect detector object frame by frame, mapping its timecodes back to frame indices."""

    def __init__(self, detector, info: VideoInfo, min_scene_len: int):
        import cv2

        self._cv2 = cv2
        self.detector = detector
        self.fps = Fraction(info.fps).limit_denominator(1_000_000) if info.fps > 0 else Fraction(25)
        self.downscale = compute_downscale_factor(info.width)
        self.lag = int(detector.event_buffer_length) + min_scene_len + 2
        self.analysis = None  # takes full-resolution BGR, resized the way PySceneDetect's SceneManager does
        self._index_of: dict[int, int] = {}  # timecode pts (microseconds) -> frame index, for recent frames
        self._last: FrameTimecode | None = None

    def _timecode(self, frame: DecodedFrame) -> FrameTimecode:
        return FrameTimecode(
            Timecode(pts=round(frame.pts_s * 1_000_000), time_base=Fraction(1, 1_000_000)), fps=self.fps
        )

    def _indices(self, cuts: list[FrameTimecode]) -> list[int]:
        return [self._index_of[tc.pts] for tc in cuts if tc.pts in self._index_of]

    def push(self, frame: DecodedFrame) -> list[int]:
        img = frame.bgr()
        if self.downscale > 1.0:
            h, w = img.shape[:2]
            img = self._cv2.resize(
                img,
                (max(1, round(w / self.downscale)), max(1, round(h / self.downscale))),
                interpolation=self._cv2.INTER_LINEAR,
            )
        tc = self._timecode(frame)
        self._index_of[tc.pts] = frame.index
        if len(self._index_of) > 4 * self.lag + 64:  # keep the map as short as the decisions are late
            for key in list(self._index_of)[: len(self._index_of) - 2 * self.lag]:
                del self._index_of[key]
        self._last = tc
        return self._indices(self.detector.process_frame(tc, img))

    def finish(self) -> list[int]:
        return self._indices(self.detector.post_process(self._last)) if self._last is not None else []
