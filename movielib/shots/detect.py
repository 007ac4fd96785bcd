"""Shot boundaries with PySceneDetect's detectors, as MovieCLIP §4 and Movies2Scenes use them.

A detector turns a local video file into a DetectedVideo: its decoded-frame facts and shots
that tile it ([start, end), 0-based). The frame numbers are decoded-frame indices, the same
ones `movielib.io.video.read_frames` fetches sampled frames by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Protocol

from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

from movielib.io.video import VideoReadError


@dataclass(frozen=True)
class Shot:
    """One shot: frames [start_frame, end_frame), 0-based, end exclusive."""

    idx: int
    start_frame: int
    end_frame: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class DetectedVideo:
    """What decoding a whole video tells us, plus its shots."""

    fps: float
    width: int
    height: int
    n_frames: int
    duration_s: float
    shots: list[Shot]

    @classmethod
    def from_starts(cls, starts: list[int], n_frames: int, pts: Sequence[float], fps: float,
                    width: int, height: int) -> "DetectedVideo":
        """Shots tiling [0, n_frames) from the frames where shots start (0 added when missing).

        `pts` holds each frame's time from the first frame; the video ends one nominal frame
        after its last frame.
        """
        end = float(pts[-1]) + (1.0 / fps if fps > 0 else 0.0)
        bounds = sorted({0, *(s for s in starts if 0 < s < n_frames)}) + [n_frames]
        times = [float(pts[b]) if b < n_frames else end for b in bounds]
        shots = [Shot(i, a, b, ta, tb) for i, (a, b, ta, tb) in enumerate(zip(bounds, bounds[1:], times, times[1:]))]
        return cls(fps=fps, width=width, height=height, n_frames=n_frames, duration_s=end, shots=shots)


class ShotDetector(Protocol):
    name: str

    def detect(self, path: str) -> DetectedVideo: ...


PYSCENEDETECT = {"content": ContentDetector, "adaptive": AdaptiveDetector}
THRESHOLD_ARG = {"content": "threshold", "adaptive": "adaptive_threshold"}


@dataclass(frozen=True)
class SceneDetectShotDetector:
    """PySceneDetect's ContentDetector (default: threshold 27, min_scene_len 15) or AdaptiveDetector.

    Runs on PySceneDetect's OpenCV backend with its defaults (auto downscale). Shot times are
    the backend's own timecodes, so variable-frame-rate files keep their real times.
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

    def detect(self, path: str) -> DetectedVideo:
        try:
            video = open_video(path, backend="opencv")
        except Exception as exc:  # scenedetect raises several types for unreadable input
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {str(exc).strip()}") from exc
        manager = SceneManager()
        manager.add_detector(self.make())
        n_frames = manager.detect_scenes(video)
        if n_frames <= 0:
            raise VideoReadError("no frames could be decoded")
        fps = float(video.frame_rate)
        scenes = manager.get_scene_list(start_in_scene=True)
        shots = [Shot(idx=i, start_frame=s.frame_num, end_frame=e.frame_num, start_s=s.seconds, end_s=e.seconds)
                 for i, (s, e) in enumerate(scenes)]
        width, height = video.frame_size
        return DetectedVideo(fps=fps, width=int(width), height=int(height), n_frames=int(n_frames),
                             duration_s=n_frames / fps if fps > 0 else 0.0, shots=shots)

