"""Held-out retrieval over candidate sets of a fixed size: a figure whose chance (1 / size) does not move with the
batch, the worker count or the validation set, so epochs and runs compare."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def in_set_top1(queries: torch.Tensor, keys: torch.Tensor, size: int) -> tuple[float, int]:
    """Pairs (row i of `queries` with row i of `keys`) cut in order into sets of `size` (the last len % size left
    out): how many queries find their own key nearest (cosine) among their set's keys, and how many were asked."""
    usable = len(queries) // size * size
    if not usable:
        return 0.0, 0
    q = F.normalize(queries[:usable].float(), dim=-1).reshape(-1, size, queries.shape[-1])
    k = F.normalize(keys[:usable].float(), dim=-1).reshape(-1, size, keys.shape[-1])
    hits = (q @ k.transpose(1, 2)).argmax(-1) == torch.arange(size, device=q.device)
    return float(hits.sum()), usable
