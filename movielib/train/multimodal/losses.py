"""The long-range multimodal pretraining losses (long_range_multimodal_pretraining.txt §3, Eq. 1-7).

Every loss takes a `valid` mask and leaves masked positions out of both sides of the softmax: a shot with no audio,
no subtitle, or past a movie's end contributes nothing (and gets no gradient). Contrastive losses contrast over the
global batch: `gather` (an autograd-carrying all-gather on several workers, `launcher.gather_with_grad`) collects
every worker's tokens first.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def no_gather(x: torch.Tensor) -> torch.Tensor:
    return x


def info_nce(
    query: torch.Tensor, key: torch.Tensor, valid: torch.Tensor, tau: float, gather: Gather = no_gather
) -> torch.Tensor:
    """Eq. 3 one way: each valid (sequence, shot) query against every valid key of the (global) batch, its own
    key the positive; S is cosine similarity. `query`, `key`: (..., d); `valid`: (...) bool. Mean over queries."""
    q = F.normalize(gather(query.reshape(-1, query.shape[-1])).float(), dim=-1)
    k = F.normalize(gather(key.reshape(-1, key.shape[-1])).float(), dim=-1)
    keep = gather(valid.reshape(-1).to(torch.uint8)).bool()
    q, k = q[keep], k[keep]
    if len(q) == 0:
        return query.sum() * 0.0  # nothing to contrast: a zero that keeps the graph
    logits = q @ k.T / tau
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def symmetric_info_nce(
    a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor, tau: float, gather: Gather = no_gather
) -> torch.Tensor:
    """L_{a->b} + L_{b->a} (Eq. 5's pairs, Eq. 6)."""
    return info_nce(a, b, valid, tau, gather) + info_nce(b, a, valid, tau, gather)


def masking_loss(
    predicted: torch.Tensor, target: torch.Tensor, masked: torch.Tensor, tau: float, gather: Gather = no_gather
) -> torch.Tensor:
    """Eq. 1: each masked token's prediction against every masked input token of the batch, its own the positive
    (cross-entropy of the softmax over w_hat . w; here over cosine / tau, the scale the InfoNCE losses use)."""
    return info_nce(predicted, target, masked, tau, gather)


def cue_overlap(
    token_start: torch.Tensor, token_end: torch.Tensor, shot_start: torch.Tensor, shot_end: torch.Tensor
) -> torch.Tensor:
    """(shots, tokens) bool: which language tokens are on screen during which shot (their intervals overlap)."""
    return (token_start[None, :] < shot_end[:, None]) & (token_end[None, :] > shot_start[:, None])


def shot_language(
    tokens: torch.Tensor,
    token_start: torch.Tensor,
    token_end: torch.Tensor,
    shot_start: torch.Tensor,
    shot_end: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4, the one-to-many alignment: each shot's language feature is the mean of the language tokens whose
    interval overlaps the shot's (a cue straddling two shots counts for both). tokens (C, d) with times (C,);
    shots (k,) -> (k, d) and a (k,) mask of the shots that have any token."""
    overlap = cue_overlap(token_start, token_end, shot_start, shot_end)  # (k, C)
    count = overlap.sum(1)
    mean = overlap.to(tokens.dtype) @ tokens / count.clamp(min=1)[:, None].to(tokens.dtype)
    return mean, count > 0
