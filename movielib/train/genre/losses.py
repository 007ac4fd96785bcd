"""The fine-grained stage's loss (mmx_trailer20_genre.txt §4.4): NT-Xent between two views of each trailer (its two
halves), SimCLR's normalised temperature-scaled cross-entropy over the global batch."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = 0.5, gather: Gather | None = None) -> torch.Tensor:
    """a, b: (N, d) projections of the two halves of N trailers (this worker's). Each of the 2N views has its other
    half as the positive and the other 2N - 2 views of the (gathered) batch as negatives; cosine / tau; mean over
    the 2N views. `gather`: an autograd-carrying all-gather (`launcher.gather_with_grad`) for several workers."""
    if gather is not None:
        a, b = gather(a), gather(b)
    z = F.normalize(torch.cat([a, b]).float(), dim=-1)
    n = len(a)
    logits = z @ z.T / tau
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)
