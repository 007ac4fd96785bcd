"""Momentum contrast (He et al., MoCo; Movies2Scenes §3.2.2 eq. 2) for scene pairs.

The query encoder f embeds one scene of a selected pair, the key encoder g (a momentum copy of
f, never back-propagated) the other; the key must be found among the queue of earlier keys:
L_q = -log exp(q.k0 / T) / sum_i exp(q.ki / T), a (1 + K)-way cross-entropy whose answer is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def info_nce(
    q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float = 0.07
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean InfoNCE loss of L2-normalised queries q (B, d) against their keys k (B, d) and the queue (K, d);
    also the logits (B, 1 + K), whose column 0 is the positive."""
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device)), logits


@torch.no_grad()
def momentum_update(query: nn.Module, key: nn.Module, m: float = 0.999) -> None:
    """theta_k <- m theta_k + (1 - m) theta_q, in the key's precision (fp32: a bf16 key would not move, as
    (1 - m) times a weight difference is below bf16's resolution next to the weight)."""
    for pq, pk in zip(query.parameters(), key.parameters()):
        pk.mul_(m).add_(pq.detach().to(pk.dtype), alpha=1 - m)


def _dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


class KeyQueue(nn.Module):
    """The dictionary of the K most recent keys (a ring buffer); buffers, so it is saved with the model."""

    def __init__(self, dim: int = 128, size: int = 65_536, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=g), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Replace the oldest len(keys) entries (wrapping around the end)."""
        size, n = self.keys.shape[0], keys.shape[0]
        idx = (self.ptr + torch.arange(n, device=keys.device)) % size
        self.keys[idx] = keys.detach().to(self.keys.dtype)
        self.ptr.fill_(int((self.ptr + n) % size))


class MoCo(nn.Module):
    """Query encoder + projection, its momentum copy, and the key queue (dim 128, K 65536, m 0.999, T 0.07).

    Under bf16 only the query side runs in bf16: the key encoder, the queue, the logits and the loss are
    fp32 islands (the launcher keeps `fp32_modules` in fp32), and inputs are cast at each encoder's boundary.
    """

    fp32_modules = ("key", "queue")

    def __init__(
        self,
        encoder: nn.Module,
        encoder_dim: int,
        dim: int = 128,
        queue: int = 65_536,
        momentum: float = 0.999,
        temperature: float = 0.07,
    ):
        super().__init__()
        import copy

        self.query = nn.Sequential(encoder, nn.Linear(encoder_dim, dim))
        self.key = copy.deepcopy(self.query)
        for p in self.key.parameters():
            p.requires_grad_(False)
        self.queue = KeyQueue(dim, queue)
        self.momentum, self.temperature = momentum, temperature

    @torch.no_grad()
    def score(self, scene_q: torch.Tensor, scene_k: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Loss and logits of scene pairs against the queue as it stands, changing nothing (no momentum update,
        no push): held-out pairs scored on the task training sees; and their (normalised) queries and keys."""
        q = F.normalize(self.query(scene_q.to(_dtype(self.query))).float(), dim=1)
        k = F.normalize(self.key(scene_k.to(_dtype(self.key))).float(), dim=1)
        return *info_nce(q, k, self.queue.keys.float(), self.temperature), q, k

    def forward(
        self, scene_q: torch.Tensor, scene_k: torch.Tensor, gather: callable | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and logits for a batch of scene pairs; updates the key encoder and (after) the queue.
        `gather` collects keys from every worker before they enter the queue (None: one worker)."""
        q = F.normalize(self.query(scene_q.to(_dtype(self.query))).float(), dim=1)
        with torch.no_grad():
            momentum_update(self.query, self.key, self.momentum)
            k = F.normalize(self.key(scene_k.to(_dtype(self.key))).float(), dim=1)
        loss, logits = info_nce(q, k, self.queue.keys.clone().detach().float(), self.temperature)
        self.queue.push(gather(k) if gather else k)
        return loss, logits
