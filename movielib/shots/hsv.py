"""OpenCV's 8-bit BGR -> HSV conversion in torch, bit for bit, so ContentDetector's scores can be
computed on a GPU (or batched on the CPU) and still equal PySceneDetect's.

OpenCV (imgproc color_hsv, RGB2HSV_b) works in 12-bit fixed point with rounded division tables:
    v = max(b, g, r); diff = v - min(b, g, r)
    s = (diff * sdiv[v] + 2048) >> 12,                       sdiv[i] = round(255 * 4096 / i)
    h = g - b if v == r else (b - r + 2 diff if v == g else r - g + 4 diff)
    h = (h * hdiv[diff] + 2048) >> 12, plus 180 when negative,  hdiv[i] = round(180 * 4096 / (6 i))
"""

from __future__ import annotations

import functools

import torch

SHIFT = 12


@functools.lru_cache(maxsize=4)
def _tables(device: str) -> tuple[torch.Tensor, torch.Tensor]:
    i = torch.arange(256, dtype=torch.float64)
    # OpenCV's saturate_cast<int>(double) rounds half to even, as torch.round does
    sdiv = torch.where(i > 0, torch.round((255 << SHIFT) / i.clamp(min=1)), torch.zeros_like(i))
    hdiv = torch.where(i > 0, torch.round((180 << SHIFT) / (6.0 * i.clamp(min=1))), torch.zeros_like(i))
    return sdiv.to(torch.int32).to(device), hdiv.to(torch.int32).to(device)


def bgr_to_hsv(bgr: torch.Tensor) -> torch.Tensor:
    """(..., 3) uint8 BGR -> (..., 3) uint8 HSV (H in 0..179), equal to cv2.COLOR_BGR2HSV."""
    sdiv, hdiv = _tables(str(bgr.device))
    x = bgr.to(torch.int32)
    b, g, r = x[..., 0], x[..., 1], x[..., 2]
    v = torch.maximum(torch.maximum(b, g), r)
    diff = v - torch.minimum(torch.minimum(b, g), r)
    half = 1 << (SHIFT - 1)
    s = (diff * sdiv[v] + half) >> SHIFT
    h = torch.where(v == r, g - b, torch.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv[diff] + half) >> SHIFT
    h = torch.where(h < 0, h + 180, h)
    return torch.stack([h, s, v], dim=-1).to(torch.uint8)


def content_scores(chunk: torch.Tensor, prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """ContentDetector scores of a (k, h, w, 3) uint8 BGR chunk on its device: (scores, last HSV frame).

    Scores are the mean |HSV_t - HSV_{t-1}| over pixels and channels, for each frame that has a
    predecessor (the chunk's first frame is compared with `prev`, the last HSV frame of the
    chunk before, when given).
    """
    hsv = bgr_to_hsv(chunk)
    seq = hsv if prev is None else torch.cat([prev[None], hsv])
    if len(seq) < 2:
        return torch.zeros(0, dtype=torch.float64, device=chunk.device), hsv[-1]
    diff = (seq[1:].to(torch.int16) - seq[:-1].to(torch.int16)).abs()
    return diff.flatten(1).sum(dim=1, dtype=torch.int64).double() / (diff[0].numel()), hsv[-1]
