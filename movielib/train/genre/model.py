"""The collaborative-experts genre model (mmx_trailer20_genre.txt §3, Fig. 2, §7 a-n).

Per clip (shot) each expert's feature, temporally averaged by the tagging job, is standardised per dimension with
the training shots' statistics and projected to `expert_dim`. The
collaborative gating unit (§3.1, after Liu et al.'s collaborative experts) computes per expert e an attention vector
T^e = h(sum_{f != e} g(psi_e, psi_f)) over the experts present for that clip and modulates psi_e <- psi_e * sigmoid(T^e)
(Eq. 1-2). The gated experts, concatenated, pass a gated embedding unit (Miech et al.'s GEM) to an L2-normalised
`clip_dim` vector: one unit over the concatenation, not one per expert as §3.1 words it, since §7 gives one 128-d
vector per clip. `fusion: concat` is Table 2's naive concatenation: the experts concatenated, one linear layer to
the same L2-normalised vector, neither gating unit. `clips` clips make a sequence (concatenated, two-layer MLP j ->
`sequence_dim`), the trailer's `sequences` sequences concatenated pass the bottleneck MLP k (-> `bottleneck`, the
trailer embedding) and the head l gives one logit per genre. A missing expert is masked out of the gating sums and
zeroed; a missing clip (a trailer shorter than the layout) and a sequence with no clip are zeroed, so padding never
reaches a gradient.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from movielib.train.genre.config import GenreModelSection
from movielib.train.standardize import Standardize


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (not after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class CollaborativeGating(nn.Module):
    """Eq. 1-2 over the experts of each clip: (N, E, D) and which are present (N, E) -> the gated experts."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.g = mlp([2 * dim, hidden, dim])  # the pairwise relation g(psi_e, psi_f)
        self.h = mlp([dim, hidden, dim])  # the sum of relations -> the attention vector T^e

    def attention(self, psi: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """T (N, E, D): T^e = h(sum over present f != e of g(psi_e, psi_f))."""
        n, e, d = psi.shape
        pairs = torch.cat([psi[:, :, None, :].expand(n, e, e, d), psi[:, None, :, :].expand(n, e, e, d)], dim=-1)
        others = present[:, None, :] & ~torch.eye(e, dtype=torch.bool, device=psi.device)  # (N, e, f)
        return self.h((self.g(pairs) * others[..., None].to(psi.dtype)).sum(dim=2))

    def forward(self, psi: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        gated = psi * torch.sigmoid(self.attention(psi, present))
        return gated * present[..., None].to(psi.dtype)


class GatedEmbedding(nn.Module):
    """Miech et al.'s gated embedding module: z = W1 x + b1; z * sigmoid(W2 z + b2), L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc, self.gate = nn.Linear(in_dim, out_dim), nn.Linear(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.fc(x)
        return F.normalize(z * torch.sigmoid(self.gate(z)), dim=-1)


class NaiveEmbedding(nn.Module):
    """Table 2's naive concatenation: one linear layer, L2-normalised (the GEM without its context gate)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.fc(x), dim=-1)


@dataclass
class GenreOutputs:
    logits: torch.Tensor  # (B, genres)
    embedding: torch.Tensor  # (B, bottleneck): the trailer embedding
    clips: torch.Tensor  # (B, C, clip_dim), zero where the clip is missing


class GenreModel(nn.Module):
    """Experts per clip -> genre logits and the trailer embedding. `dims`: expert name -> its feature width."""

    fp32_modules = ("norm",)  # the input statistics stay fp32 under bf16 (a log-mel mean of 7 in bf16 is off by 0.03)

    def __init__(self, dims: dict[str, int], genres: int, m: GenreModelSection):
        super().__init__()
        self.m, self.experts = m, list(dims)
        self.norm = nn.ModuleDict({name: Standardize(d) for name, d in dims.items()})
        self.proj = nn.ModuleDict({name: nn.Linear(d, m.expert_dim) for name, d in dims.items()})
        gated = m.fusion == "gated"
        self.gating = CollaborativeGating(m.expert_dim, m.gate_hidden) if gated else None
        self.embed = (GatedEmbedding if gated else NaiveEmbedding)(len(dims) * m.expert_dim, m.clip_dim)
        self.sequence = mlp([m.clips * m.clip_dim, m.sequence_dim, m.sequence_dim])  # j
        self.bottleneck = mlp([m.sequences * m.sequence_dim, m.bottleneck, m.bottleneck])  # k
        self.head = mlp([m.bottleneck, m.head_hidden, genres])  # l

    def standardize(self, stats: dict[str, tuple[list[float], list[float]]]) -> GenreModel:
        """Set each expert's input statistics (mean, std per dimension)."""
        for name, (mean, std) in stats.items():
            self.norm[name].set(mean, std)
        return self

    @property
    def clips(self) -> int:
        return self.m.clips * self.m.sequences

    def encode_clips(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, clip_dim) clip embeddings and the (B, C) clips that have any expert."""
        present = torch.stack([batch[f"{e}_valid"].bool() for e in self.experts], dim=-1)  # (B, C, E)
        dtype = self.proj[self.experts[0]].weight.dtype
        psi = torch.stack([self.proj[e](self.norm[e](batch[e].float()).to(dtype)) for e in self.experts], dim=2)
        psi = psi * present[..., None].to(dtype)
        b, c, e, d = psi.shape
        if self.gating is not None:
            psi = self.gating(psi.reshape(b * c, e, d), present.reshape(b * c, e)).reshape(b, c, e, d)
        has = present.any(dim=-1)
        return self.embed(psi.reshape(b, c, e * d)) * has[..., None].to(dtype), has

    def forward(self, batch: dict[str, torch.Tensor]) -> GenreOutputs:
        clips, has = self.encode_clips(batch)
        b, m = clips.shape[0], self.m
        seq_has = has.reshape(b, m.sequences, m.clips).any(dim=-1)
        sequences = self.sequence(clips.reshape(b, m.sequences, m.clips * m.clip_dim))
        sequences = sequences * seq_has[..., None].to(sequences.dtype)  # a sequence of padding only: zero
        embedding = self.bottleneck(sequences.reshape(b, m.sequences * m.sequence_dim))
        return GenreOutputs(self.head(embedding), embedding, clips)


def genre_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 3: binary cross-entropy with logits over every (trailer, genre), p_g the positives' weight."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pos_weight)


def load_genre(blob: bytes) -> tuple[GenreModel, dict]:
    """An exported genre model (eval mode) and its metadata; loaded with weights_only: the file never runs code."""
    saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = GenreModel(saved["dims"], len(saved["genres"]), GenreModelSection(**saved["model"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), {k: v for k, v in saved.items() if k != "state_dict"}
