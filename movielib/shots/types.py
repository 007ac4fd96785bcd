"""What a shot detector is and what it finds: shots, a whole video's facts, the frame-fed detector protocols.

Every detector here follows PySceneDetect's `process_frame` model: `detector.cutter(info)` makes a
per-video ShotCutter, `push(frame)` feeds one decoded frame and returns cuts decided so far,
`finish()` returns the rest. `lag` bounds how late a decision comes: once a frame is `lag` frames
behind the newest one pushed, it can no longer become a cut. That bound is what lets the sampler
(movielib.shots.onepass) work from the same single decode with a short buffer of frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from movielib.io.decode import DecodedFrame, VideoInfo


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
    def from_starts(
        cls, starts: list[int], n_frames: int, pts: Sequence[float], fps: float, width: int, height: int
    ) -> DetectedVideo:
        """Shots tiling [0, n_frames) from the frames where shots start (0 added when missing).

        `pts` holds each frame's time from the first frame; the video ends one nominal frame
        after its last frame.
        """
        end = float(pts[-1]) + (1.0 / fps if fps > 0 else 0.0)
        bounds = sorted({0, *(s for s in starts if 0 < s < n_frames)}) + [n_frames]
        times = [float(pts[b]) if b < n_frames else end for b in bounds]
        shots = [Shot(i, a, b, ta, tb) for i, (a, b, ta, tb) in enumerate(zip(bounds, bounds[1:], times, times[1:]))]
        return cls(fps=fps, width=width, height=height, n_frames=n_frames, duration_s=end, shots=shots)


class ShotCutter(Protocol):
    """One video's detection state."""

    lag: int  # a frame this many frames behind the newest pushed one can no longer become a cut
    analysis: tuple | None  # (width, height, format, interpolation) of the copy it takes of each frame, if any

    def push(self, frame: DecodedFrame) -> list[int]:
        """Feed the next frame; returns the indices of shot starts decided by now."""

    def finish(self) -> list[int]:
        """After the last frame: the remaining shot starts."""


class ShotDetector(Protocol):
    name: str

    def cutter(self, info: VideoInfo) -> ShotCutter: ...

    def detect(self, path: str, decoder=None) -> DetectedVideo: ...
