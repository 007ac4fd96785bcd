"""The genre model's sections: defaults are the paper's (mmx_trailer20_genre.txt §3, §4.2, §7)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from movielib.config import JobConfig, Positive, PositiveInt, Section, UnitInterval
from movielib.train.config import (
    DeepSpeedSection,
    EmbedRunConfig,
    InputSection,
    ScalingSection,
    TrainRunSection,
    check_global_batch,
)


class GenreModelSection(Section):
    """The layout and widths of §7: experts -> `expert_dim` each, collaborative gating, a gated embedding unit ->
    `clip_dim` per clip; `clips` clips a sequence -> `sequence_dim`; `sequences` sequences a trailer -> the
    `bottleneck` embedding; head `bottleneck` -> `head_hidden` -> one logit per genre."""

    fusion: Literal["gated", "concat"] = "gated"  # concat: Table 2's naive concatenation (no gating units)
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


class ExpertsSection(Section):
    """The experts per clip (shot): a features table each (model, version as every input), or off (`use: false`)."""

    image: InputSection = Field(default_factory=lambda: InputSection(table="features/image"))  # appearance
    # None: features/scene when the scene pretraining ran (`movielib embed scenes`), else features/scores (every
    # label's CLIPSceneScore; tag with features.scores)
    scene: InputSection = Field(default_factory=InputSection)
    audio: InputSection = Field(default_factory=lambda: InputSection(table="features/audio"))
    motion: InputSection = Field(default_factory=lambda: InputSection(table="features/motion"))  # features.motion


class GenreOptimSection(Section):
    lr: Positive = 3e-5  # Adam with AMSGrad (§4.2)
    batch: PositiveInt = 32  # trailers per step, over all workers
    epochs: PositiveInt = 200
    threshold: UnitInterval = 0.3  # a genre is predicted when its probability reaches this (§7)
    val_fraction: UnitInterval = 0.2  # trailers held out: AU-PRC each epoch
    seed: int = 0


class FineGrainedSection(Section):
    """§4.4: NT-Xent between the two halves of each trailer on the coarse model's bottleneck (projection heads m, n
    -> `projection`, dropped after training); 0 epochs skips the stage."""

    epochs: int = Field(default=50, ge=0)
    warmup_epochs: int = Field(default=10, ge=0)  # linear warm-up, then cosine annealing
    lr: Positive = 1e-4
    tau: Positive = 0.5
    projection: PositiveInt = 128
    max_trailers: PositiveInt = 2000  # held-out trailers the figures (halves top-1, silhouette) are computed on


class GenreRunSection(TrainRunSection):
    name: str = "genre"


class TrainGenreConfig(JobConfig):
    """`movielib train genre`: the collaborative-experts genre classifier over a tagged catalog."""

    catalog: str | None = None  # the DEST a tagging run wrote
    genres: str | None = None  # CSV / Parquet: video_id or uri, and genres ("a|b" or a list)
    experts: ExpertsSection = Field(default_factory=ExpertsSection)
    model: GenreModelSection = Field(default_factory=GenreModelSection)
    optim: GenreOptimSection = Field(default_factory=GenreOptimSection)
    finegrained: FineGrainedSection = Field(default_factory=FineGrainedSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    run: GenreRunSection = Field(default_factory=GenreRunSection)

    @model_validator(mode="after")
    def _complete(self) -> TrainGenreConfig:
        for name in ("catalog", "genres"):
            if not getattr(self, name):
                raise ValueError(f"{name}: is required (movielib train genre CATALOG --genres FILE)")
        if not any(s.use for _, s in self.experts):
            raise ValueError("experts: at least one expert must be on")
        check_global_batch("optim.batch", self.optim.batch, self.scaling.workers)
        return self

    def expert_inputs(self) -> dict[str, InputSection]:
        return {name: s for name, s in self.experts if s.use}


class EmbedGenreConfig(EmbedRunConfig):
    """`movielib embed genre RUN CATALOG`: a genre run's trailer embeddings and probabilities into features/trailer."""
