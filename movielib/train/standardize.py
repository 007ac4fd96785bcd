"""Input standardisation shared by the pretraining methods' models (an fp32 island under bf16)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Standardize(nn.Module):
    """(x - mean) / std per dimension with the training shots' statistics (train.tables.feature_stats), set once
    before training and saved with the model, so embedding and serving scale their inputs the same. Frozen
    features come in any scale and offset (an L2-normalised CLIP embedding varies by ~0.04 a dimension around a
    shared mean): unscaled, the first layers see almost the same input for every shot and learn nothing."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set(self, mean: Sequence[float], std: Sequence[float]) -> Standardize:
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
            self.std.copy_(torch.as_tensor(std, dtype=self.std.dtype))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std
