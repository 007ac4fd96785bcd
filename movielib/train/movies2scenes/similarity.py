"""Movie-level similarity learning (Movies2Scenes §3.1, supp. §1a).

Each movie is a (shots, 512) matrix of frozen CLIP features, one keyframe per shot, padded or cut
to 1024 shots. E_learnable maps shots to a learned space; the shot adjacency A = E(x1) E(x2)^T is
average-pooled into scene adjacency B (16-shot scenes, stride 8), max-pooled (16x16 scenes, stride
8) into V, and one linear layer turns V into the logit of "these movies are similar".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from movielib.train.movies2scenes.config import pooled_size
from movielib.train.standardize import Standardize

MOVIE_SHOTS = 1024  # movies are padded or cut to this many shots for this step


class ShotEncoder(nn.Module):
    """E_learnable: FC 512 -> dropout 0.5 -> FC 512 (applied to every shot feature), on the features standardised
    with the training shots' statistics (`norm`, fp32; see train.standardize: unscaled CLIP features differ too
    little between shots for SGD to find the similarity in a demo's budget)."""

    def __init__(self, in_dim: int = 512, hidden: int = 512, out_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.norm = Standardize(in_dim)
        self.fc1, self.drop, self.fc2 = nn.Linear(in_dim, hidden), nn.Dropout(dropout), nn.Linear(hidden, out_dim)

    def _in(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised in fp32, then in the layers' dtype (bf16 under bf16)."""
        return self.norm(x.float()).to(self.fc1.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.fc1(self._in(x))))

    def selection_space(self, x: torch.Tensor) -> torch.Tensor:
        """Where scene pairs are chosen (supp. §1b): E_learnable before its last fully-connected layer."""
        return self.fc1(self._in(x))


class MovieSimilarity(nn.Module):
    """logit(similar) for a batch of movie pairs, each (B, shots, in_dim) with a mask of real shots.

    Padded shots (mask False) are zeroed in A, so they add nothing to a scene's mean.
    """

    fp32_modules = ("encoder.norm",)  # the input statistics stay fp32 under bf16

    def __init__(
        self,
        in_dim: int = 512,
        dim: int = 512,
        shots: int = MOVIE_SHOTS,
        avg: tuple[int, int] = (16, 8),
        max_: tuple[int, int] = (16, 8),
        dropout: float = 0.5,
    ):
        super().__init__()
        self.encoder = ShotEncoder(in_dim, dim, dim, dropout)
        self.shots, self.avg, self.max = shots, avg, max_
        side = pooled_size(pooled_size(shots, *avg), *max_)
        self.output = nn.Linear(side * side, 1)

    def adjacency(
        self, x1: torch.Tensor, x2: torch.Tensor, m1: torch.Tensor | None = None, m2: torch.Tensor | None = None
    ) -> torch.Tensor:
        """A: (B, S1, S2) inner products of the shots in the learned space (zero where a shot is padding)."""
        a = self.encoder(x1) @ self.encoder(x2).transpose(1, 2)
        if m1 is not None:
            a = a * m1[:, :, None]
        if m2 is not None:
            a = a * m2[:, None, :]
        return a

    def pooled(self, a: torch.Tensor) -> torch.Tensor:
        """V: flatten(maxpool(avgpool(A))), (B, side * side)."""
        b = F.avg_pool2d(a[:, None], kernel_size=self.avg[0], stride=self.avg[1])
        return F.max_pool2d(b, kernel_size=self.max[0], stride=self.max[1]).flatten(1)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, m1: torch.Tensor | None = None, m2: torch.Tensor | None = None
    ) -> torch.Tensor:
        # the encoder standardises in fp32 and casts to its dtype (bf16 under bf16); the logit in fp32
        return self.output(self.pooled(self.adjacency(x1, x2, m1, m2)))[:, 0].float()


def pad_or_cut(features: torch.Tensor, shots: int = MOVIE_SHOTS) -> tuple[torch.Tensor, torch.Tensor]:
    """A movie's (S, D) shot features as exactly `shots` rows (zeros after its end) and the mask of real rows."""
    out = features.new_zeros(shots, features.shape[1])
    n = min(shots, features.shape[0])
    out[:n] = features[:n]
    mask = torch.zeros(shots, dtype=torch.bool)
    mask[:n] = True
    return out, mask
