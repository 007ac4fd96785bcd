"""A motion feature per shot from the frames the tagging job already samples (no model weights ship for I3D or
R(2+1)D, the paper's motion experts): dense optical flow (OpenCV's Farneback) and frame differences between
consecutive sampled frames, summarised as statistics.

    [0]      mean flow magnitude (pixels per sampled-frame step, at `side` pixels)
    [1]      std of the flow magnitude
    [2]      95th percentile of the flow magnitude
    [3]      share of pixels moving more than 1 pixel
    [4:6]    mean flow vector (dx, dy): camera pan / tilt
    [6]      mean absolute frame difference (0-1)
    [7]      share of pixels whose difference exceeds 0.1
    [8:16]   flow-direction histogram (8 bins), weighted by magnitude, summing to 1 (0 when nothing moves)

Averaged over the shot's consecutive pairs; None for a shot of one sampled frame (no motion to measure: masked
downstream like a shot without audio).
"""

from __future__ import annotations

import numpy as np

BINS = 8


class FlowStats:
    name = "flow-stats"
    dim = 8 + BINS

    def __init__(self, side: int = 112, max_pairs: int = 16):
        self.side, self.max_pairs = side, max_pairs
        self.version = f"farneback-{side}px-v1"

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
        return cv2.resize(gray, (self.side, self.side), interpolation=cv2.INTER_AREA)

    def pair(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The statistics of one pair of grey frames."""
        import cv2

        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mag, ang = cv2.cartToPolar(flow[..., 0], flow[..., 1])
        diff = np.abs(a.astype(np.float32) - b.astype(np.float32)) / 255.0
        hist = np.bincount((ang.reshape(-1) / (2 * np.pi) * BINS).astype(int) % BINS, mag.reshape(-1), BINS)
        total = hist.sum()
        return np.concatenate(
            [
                [mag.mean(), mag.std(), np.percentile(mag, 95), (mag > 1.0).mean()],
                flow.reshape(-1, 2).mean(0),
                [diff.mean(), (diff > 0.1).mean()],
                hist / total if total > 1e-6 else np.zeros(BINS),
            ]
        )

    def embed(self, frames: np.ndarray) -> np.ndarray | None:
        """(n, H, W, 3) uint8 sampled frames of one shot, in time order -> (dim,) float32, or None when n < 2."""
        if len(frames) < 2:
            return None
        step = max(1, (len(frames) - 1) // self.max_pairs)  # at most max_pairs pairs, spread over the shot
        gray = [self._gray(f) for f in frames[::step]]
        return np.mean([self.pair(a, b) for a, b in zip(gray, gray[1:])], axis=0).astype(np.float32)
