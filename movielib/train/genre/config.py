"""The genre model's sections: defaults are the paper's (mmx_trailer20_genre.txt §3, §4.2, §7)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from movielib.config import PositiveInt, Section


class GenreModelSection(Section):
    """The layout and widths of §7: experts -> `expert_dim` each, collaborative gating, a gated embedding unit ->
    `clip_dim` per clip; `clips` clips a sequence -> `sequence_dim`; `sequences` sequences a trailer -> the
    `bottleneck` embedding; head `bottleneck` -> `head_hidden` -> one logit per genre."""

    fusion: Literal["gated", "concat"] = "gated"  # concat: Table 2's naive concatenation (no gating unit)
    expert_dim: PositiveInt = 768
    gate_hidden: PositiveInt = 768  # width of the gating unit's MLPs g and h
    clip_dim: PositiveInt = 128
    clips: PositiveInt = 9  # clips (shots) per sequence
    sequences: PositiveInt = 40  # sequences per trailer: a trailer holds clips * sequences clips, padded and masked
    sequence_dim: PositiveInt = 256
    bottleneck: PositiveInt = 2048  # the trailer embedding
    head_hidden: PositiveInt = 1024

    @model_validator(mode="after")
    def _widths(self) -> GenreModelSection:
        if self.clip_dim > self.expert_dim:
            raise ValueError(f"clip_dim: at most expert_dim ({self.expert_dim}), got {self.clip_dim}")
        return self
