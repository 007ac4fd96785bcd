"""Shot boundaries with PySceneDetect's ContentDetector, as MovieCLIP §4 and Movies2Scenes use it."""

from __future__ import annotations

from dataclasses import dataclass

from scenedetect import ContentDetector, SceneManager, open_video

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


@dataclass(frozen=True)
class ContentShotDetector:
    """PySceneDetect ContentDetector with its published defaults (threshold 27, min_scene_len 15).

    Uses the OpenCV backend, so frame numbers are decoded-frame indices, the same ones
    `movielib.io.video.read_frames` uses to fetch sampled frames.
    """

    threshold: float = 27.0
    min_scene_len: int = 15

    def detect(self, path: str) -> DetectedVideo:
        try:
            video = open_video(path, backend="opencv")
        except Exception as exc:  # scenedetect raises several types for unreadable input
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {str(exc).strip()}") from exc
        manager = SceneManager()
        manager.add_detector(ContentDetector(threshold=self.threshold, min_scene_len=self.min_scene_len))
        n_frames = manager.detect_scenes(video)
        if n_frames <= 0:
            raise VideoReadError("no frames could be decoded")
        fps = float(video.frame_rate)
        scenes = manager.get_scene_list(start_in_scene=True)
        shots = [
            Shot(idx=i, start_frame=s.frame_num, end_frame=e.frame_num, start_s=s.seconds, end_s=e.seconds)
            for i, (s, e) in enumerate(scenes)
        ]
        width, height = video.frame_size
        return DetectedVideo(fps=fps, width=int(width), height=int(height), n_frames=int(n_frames),
                             duration_s=n_frames / fps if fps > 0 else 0.0, shots=shots)
