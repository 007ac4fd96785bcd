"""The model of long_range_multimodal_pretraining.txt §3 (Fig. 2) over frozen per-shot base features.

Per modality (video, audio, language): a projection to the common width, a learned [MASK] token that replaces
`mask_ratio` of the valid tokens while training, learned shot positions, and a contextual transformer. A
cross-modal transformer (encoder: audio or language as the source; decoder: video as the target) decodes the
audio-conditioned and the language-conditioned video features. Missing inputs (no audio track, no subtitle, past a
movie's end) are key-padding: nothing attends to them and no loss reads them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch
import torch.nn as nn

from movielib.train.multimodal.config import LossesSection, MultimodalModelSection
from movielib.train.multimodal.losses import Gather, masking_loss, no_gather, symmetric_info_nce
from movielib.train.standardize import Standardize

MODALITIES = ("video", "audio", "language")


def _padding(valid: torch.Tensor) -> torch.Tensor:
    """Key-padding mask of `valid` (B, k); a sequence with no valid token attends to all (its outputs unused),
    since a fully padded row would turn attention into NaN."""
    pad = ~valid
    pad[~valid.any(dim=1)] = False
    return pad


def mask_tokens(
    valid: torch.Tensor, ratio: float, group: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The (B, k) positions [MASK] replaces: `ratio` of the valid tokens, drawn per group of tokens that share an
    input (`group`: each position's group, the index of its first position; language shots that share a subtitle
    cue carry the same cue in their tokens, and one left visible would give the masked one away), so a group is
    masked whole or not at all. A `generator` (CPU) draws a fixed mask (validation)."""
    if generator is not None:
        draw = torch.rand(valid.shape, generator=generator).to(valid.device)
    else:
        draw = torch.rand(valid.shape, device=valid.device)
    if group is not None:
        draw = draw.gather(1, group.long())
    return (draw < ratio) & valid


def encoder(m: MultimodalModelSection) -> nn.TransformerEncoder:
    """A pre-norm transformer encoder of `m.layers` layers at the common width."""
    layer = nn.TransformerEncoderLayer(m.width, m.heads, 4 * m.width, m.dropout, batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, m.layers, enable_nested_tensor=False)


class Branch(nn.Module):
    """One modality: base features -> width, [MASK], positions, the contextual transformer."""

    def __init__(self, in_dim: int, m: MultimodalModelSection):
        super().__init__()
        self.proj = nn.Linear(in_dim, m.width)
        self.mask_token = nn.Parameter(torch.randn(m.width) * 0.02)
        self.pos = nn.Parameter(torch.randn(m.shots, m.width) * 0.02)
        self.encoder = encoder(m)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, masked: torch.Tensor | None = None):
        """(B, k, in_dim) -> the input tokens w (B, k, width) and the contextual features (B, k, width)."""
        tokens = self.proj(x.to(self.proj.weight.dtype))  # x standardised (MultimodalModel.norm)
        inputs = tokens if masked is None else torch.where(masked[..., None], self.mask_token.to(tokens.dtype), tokens)
        k = x.shape[1]
        return tokens, self.encoder(inputs + self.pos[:k], src_key_padding_mask=_padding(valid))


@dataclass
class Outputs:
    tokens: dict[str, torch.Tensor]  # modality -> projected inputs (B, k, width)
    context: dict[str, torch.Tensor]  # modality -> contextual features
    masked: dict[str, torch.Tensor]  # modality -> the positions [MASK] replaced (B, k) bool
    valid: dict[str, torch.Tensor]  # modality -> (B, k) bool
    cross: dict[str, torch.Tensor]  # "audio" / "language" -> that-conditioned video features


class MultimodalModel(nn.Module):
    """Contextual transformers per modality plus the cross-modal transformer; `losses` gives Eq. 2, 5, 6, 7.
    Each modality's base features are standardised per dimension first (`standardize`, the training shots'
    statistics, an fp32 island under bf16): the tagging job's features come in very different scales (CLIP
    embeddings vary by ~0.05 a dimension, log-mel statistics sit around -5), and unscaled the audio input cannot
    be used."""

    fp32_modules = ("norm",)

    def __init__(self, dims: dict[str, int], m: MultimodalModelSection):
        super().__init__()
        self.m = m
        self.modalities = [name for name in MODALITIES if name in dims]
        self.norm = nn.ModuleDict({name: Standardize(dims[name]) for name in self.modalities})
        self.branches = nn.ModuleDict({name: Branch(dims[name], m) for name in self.modalities})
        if len(self.modalities) > 1:
            self.cross = nn.Transformer(
                m.width,
                m.heads,
                num_encoder_layers=m.layers,
                num_decoder_layers=m.layers,
                dim_feedforward=4 * m.width,
                dropout=m.dropout,
                custom_encoder=encoder(m),
                batch_first=True,
                norm_first=True,
            )

    def standardize(self, stats: dict[str, tuple[list[float], list[float]]]) -> MultimodalModel:
        """Set each modality's input statistics (mean, std per dimension: train.tables.feature_stats)."""
        for name, (mean, std) in stats.items():
            if name in self.norm:
                self.norm[name].set(mean, std)
        return self

    def forward(
        self, batch: dict[str, torch.Tensor], mask: bool = True, generator: torch.Generator | None = None
    ) -> Outputs:
        """`batch`: per modality its (B, k, d) features, `<modality>_valid` (B, k) and optionally
        `<modality>_group` (B, k: tokens that share an input, masked together). With `mask`, `mask_ratio` of each
        modality's valid tokens are replaced by [MASK] (training; validation with a seeded `generator`)."""
        out = Outputs({}, {}, {}, {}, {})
        for name in self.modalities:
            valid = batch[f"{name}_valid"].bool()
            group = batch.get(f"{name}_group")
            masked = mask_tokens(valid, self.m.mask_ratio, group, generator) if mask else None
            x = self.norm[name](batch[name].float())
            out.tokens[name], out.context[name] = self.branches[name](x, valid, masked)
            out.valid[name] = valid
            out.masked[name] = masked if masked is not None else torch.zeros_like(valid)
        if "video" in out.context:
            video, video_pad = out.context["video"], _padding(out.valid["video"])
            for source in ("audio", "language"):
                if source in out.context:
                    pad = _padding(out.valid[source])
                    out.cross[source] = self.cross(
                        out.context[source],
                        video,
                        src_key_padding_mask=pad,
                        tgt_key_padding_mask=video_pad,
                        memory_key_padding_mask=pad,
                    )
        return out

    def losses(self, out: Outputs, losses: LossesSection, gather: Gather = no_gather) -> dict[str, torch.Tensor]:
        """Eq. 2 (intra), 5 (inter), 6 (cross) and their sum (Eq. 7), each switched by `losses`."""
        tau = self.m.temperature
        zero = next(iter(out.context.values())).sum() * 0.0
        parts = {"intra": zero, "inter": zero, "cross": zero}
        if losses.intra:
            for name in out.context:
                parts["intra"] = parts["intra"] + masking_loss(
                    out.context[name], out.tokens[name], out.masked[name], tau, gather
                )
        if losses.inter and "video" in out.context:
            for other in ("audio", "language"):
                if other in out.context:
                    both = out.valid["video"] & out.valid[other]
                    parts["inter"] = parts["inter"] + symmetric_info_nce(
                        out.context["video"], out.context[other], both, tau, gather
                    )
        if losses.cross and len(out.cross) == 2:
            has = {s: out.valid[s].any(dim=1, keepdim=True) for s in out.cross}  # a source with any token
            valid = out.valid["video"] & has["audio"] & has["language"]
            parts["cross"] = symmetric_info_nce(out.cross["audio"], out.cross["language"], valid, tau, gather)
        parts["total"] = parts["intra"] + parts["inter"] + parts["cross"]
        return parts


def load_multimodal(blob: bytes) -> tuple[MultimodalModel, dict]:
    """The exported model (eval mode) and its metadata; loaded with weights_only: the file never runs code."""
    saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = MultimodalModel(saved["dims"], MultimodalModelSection(**saved["model"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval(), {k: v for k, v in saved.items() if k != "state_dict"}
