"""Frame decode + 4 fps sampling (the pipeline's read path) vs a plain single-threaded decode."""

from __future__ import annotations

from pathlib import Path

import cv2

from bench.common import Row, best_of, video
from movielib.pipeline.stages import DecodeAndDetect, tensor_column
from movielib.shots.detect import DetectedVideo, Shot


def _plain_decode(path: str) -> int:
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def _sampled(path: str, n_frames: int, fps: float) -> int:
    """The decode stage's read path: one shot over the whole clip, 4 fps samples, 224 crops."""
    stage = DecodeAndDetect(_OneShot(n_frames, fps), 224, people_max_side=None)
    return sum(len(f) for t in stage.process("v", path) for f in tensor_column(t, "frames"))


class _OneShot:
    """A 'detector' that calls the whole file one shot, so only sampling and decoding are timed."""

    name = "one-shot"

    def __init__(self, n_frames: int, fps: float):
        self.n_frames, self.fps = n_frames, fps

    def detect(self, path: str) -> DetectedVideo:
        return DetectedVideo(self.fps, 0, 0, self.n_frames, self.n_frames / self.fps,
                             [Shot(0, 0, self.n_frames, 0.0, self.n_frames / self.fps)])


def run(folder: Path, quick: bool = False) -> list[Row]:
    path = str(video(folder, f"decode-720p-{1 if quick else 2}.mp4", (1280, 720), 1 if quick else 2))
    t_plain, n = best_of(2, lambda: _plain_decode(path))
    t_ours, _ = best_of(2, lambda: _sampled(path, n, 25.0))
    return [Row("decode + sampling", "720p, 4 fps samples cropped to 224 vs plain 1-thread decode",
                n / t_ours, n / t_plain, "video frames/s")]
