"""`movielib pretrain multimodal` config: defaults are the paper's (long_range_multimodal_pretraining.txt §3)."""

from __future__ import annotations

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


class InputsSection(Section):
    video: InputSection = Field(default_factory=lambda: InputSection(table="features/image"))  # or features/scene
    audio: InputSection = Field(default_factory=lambda: InputSection(table="features/audio"))
    # cues (tag with features.cues): each shot's language token is the mean of the embeddings of the cues on screen
    # during it, a cue straddling two shots counting for both (Eq. 4); features/text: the shot's text embedded whole
    language: InputSection = Field(default_factory=InputSection)


class MultimodalModelSection(Section):
    shots: PositiveInt = 30  # k: shots per sequence (Table 2: 10 / 30 / 60)
    width: PositiveInt = 512  # the common width every modality is projected to
    layers: PositiveInt = 3  # each contextual transformer, and the cross-modal encoder and decoder
    heads: PositiveInt = 8
    dropout: UnitInterval = 0.1
    mask_ratio: UnitInterval = 0.2  # share of each modality's tokens replaced by [MASK]
    temperature: Positive = 0.3  # tau of every InfoNCE

    @model_validator(mode="after")
    def _heads_divide(self) -> MultimodalModelSection:
        if self.width % self.heads:
            raise ValueError(f"heads: must divide model.width ({self.width}), got {self.heads}")
        return self


class LossesSection(Section):
    """Which losses train (Table 1's ablation): intra-modal masking (Eq. 2), inter-modal (Eq. 5), cross-modal
    (Eq. 6)."""

    intra: bool = True
    inter: bool = True
    cross: bool = True


class OptimSection(Section):
    lr: Positive = 1e-3  # AdamW, cosine annealing from here to 0 over the run
    weight_decay: float = Field(default=0.01, ge=0)
    batch: PositiveInt = 1024  # sequences per step, over all workers
    epochs: PositiveInt = 10
    val_fraction: UnitInterval = 0.1  # movies held out: retrieval figures each epoch
    val_candidates: int = Field(default=32, ge=2)  # held-out retrieval: each shot among this many (chance 1/this)
    seed: int = 0


class MultimodalRunSection(TrainRunSection):
    name: str = "multimodal"


class PretrainMultimodalConfig(JobConfig):
    """`movielib pretrain multimodal`: contextual and cross-modal transformers over a tagged catalog's features."""

    catalog: str | None = None  # the DEST a tagging run wrote (features/image, features/audio, cues or features/text)
    inputs: InputsSection = Field(default_factory=InputsSection)
    model: MultimodalModelSection = Field(default_factory=MultimodalModelSection)
    losses: LossesSection = Field(default_factory=LossesSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    run: MultimodalRunSection = Field(default_factory=MultimodalRunSection)

    @model_validator(mode="after")
    def _complete(self) -> PretrainMultimodalConfig:
        if not self.catalog:
            raise ValueError("catalog: is required (the tagged DEST to learn from)")
        if not self.inputs.video.use:
            raise ValueError("inputs.video.use: video is the anchor of every loss and cannot be off")
        check_global_batch("optim.batch", self.optim.batch, self.scaling.workers)
        return self

    def modalities(self) -> dict[str, InputSection]:
        return {name: s for name, s in self.inputs if s.use}


class EmbedMultimodalConfig(EmbedRunConfig):
    """`movielib embed multimodal RUN CATALOG`: a multimodal run's per-shot features into features/multimodal."""


class EvalEditingConfig(EmbedRunConfig):
    """`movielib eval editing RUN CATALOG`: SSO and NSS (§4) on base vs pretrained features."""

    per_movie: PositiveInt = 30  # examples drawn per movie and task
    folds: int = Field(3, ge=2)  # folds of the movies: each is tested once by a head fitted on the others
    max_movies: PositiveInt = 500  # the movies read (an evaluation gathers their features on the driver)
    seed: int = 0
