"""Shot boundary detection and per-shot frame sampling, from one decode pass."""

from __future__ import annotations

from movielib.shots.detect import SceneDetectShotDetector, ShotDetector

DETECTORS = ("fast", "content", "adaptive", "transnetv2")


def make_detector(kind: str = "fast", threshold: float | None = None, min_scene_len: int = 15) -> ShotDetector:
    """A detector by config name; `threshold` None keeps the detector's own default.

    fast: ContentDetector's math on decoder-scaled analysis-size frames (the default);
    content / adaptive: PySceneDetect itself (the reference); transnetv2: the learned detector.
    """
    if kind == "fast":
        from movielib.shots.fast import FastContentDetector

        return FastContentDetector(27.0 if threshold is None else threshold, min_scene_len)
    if kind == "transnetv2":
        from movielib.shots.transnet import TransNetV2ShotDetector

        return TransNetV2ShotDetector(0.5 if threshold is None else threshold)
    if kind in ("content", "adaptive"):
        return SceneDetectShotDetector(kind, threshold, min_scene_len)
    raise ValueError(f"unknown shot detector {kind!r} (one of {', '.join(DETECTORS)})")
