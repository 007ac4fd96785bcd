"""`movielib pretrain scenes` config: every value defaults to the paper's (Movies2Scenes supp. §1)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from movielib.config import JobConfig, ModelConfig, Positive, PositiveInt, Section, UnitInterval
from movielib.train.config import (
    DeepSpeedSection,
    EmbedRunConfig,
    ScalingSection,
    TrainRunSection,
    check_global_batch,
)


def pooled_size(shots: int, kernel: int, stride: int) -> int:
    """Side of a (kernel, stride) pooling's output over `shots` (no padding, floor)."""
    return (shots - kernel) // stride + 1


class SimilaritySection(Section):
    """Which movies are similar (README, "Movie similarity files")."""

    source: Literal["genres", "synopsis", "pairs"] = "genres"
    path: str | None = None  # CSV or Parquet; required
    per_movie: PositiveInt = 3  # similar movies per movie (genres, synopsis), about three as in §4.1
    # genres: movies are similar when their genre sets overlap this much (Jaccard; 1.0: the same set)
    min_jaccard: UnitInterval = 1.0
    negatives: PositiveInt = 1  # dissimilar pairs drawn per similar pair (for genres: sharing no genre)
    # movies held out of step 1: the pairs that name one are scored each epoch (similarity accuracy), never trained on
    val_fraction: UnitInterval = 0.1
    text_model: str | None = None  # synopsis: sentence-transformers folder; default the packaged all-MiniLM-L6-v2
    seed: int = 0


class FeaturesSection(Section):
    table: Literal["features/keyframe", "features/image"] = "features/keyframe"  # E_fixed: one keyframe per shot
    model: str | None = None  # the features' model when the table holds several
    version: str | None = None  # the model's model_version (None: the newest)


class SimilarityModelSection(Section):
    """Step 1 (§3.1, supp. §1a)."""

    shots: PositiveInt = 1024  # movies padded or cut to this many shots
    dim: PositiveInt = 512  # E_learnable's width
    dropout: UnitInterval = 0.5
    avg_kernel: PositiveInt = 16  # B = avgpool(A, 16, stride 8)
    avg_stride: PositiveInt = 8
    max_kernel: PositiveInt = 16  # V = maxpool(B, 16, stride 8)
    max_stride: PositiveInt = 8
    lr: Positive = 0.1  # SGD
    batch: PositiveInt = 256  # movie pairs per step, over all workers
    epochs: PositiveInt = 20

    @model_validator(mode="after")
    def _pools_fit(self) -> SimilarityModelSection:
        after_avg = pooled_size(self.shots, self.avg_kernel, self.avg_stride)
        if after_avg < 1:
            raise ValueError(f"avg_kernel: must be <= similarity_model.shots ({self.shots}), got {self.avg_kernel}")
        if pooled_size(after_avg, self.max_kernel, self.max_stride) < 1:
            raise ValueError(
                f"max_kernel: must be <= the scene adjacency's side ({after_avg} for {self.shots} shots), "
                f"got {self.max_kernel}"
            )
        return self


class SelectionSection(Section):
    """Step 2 (supp. §1b): scene pairs of similar movies."""

    keep: UnitInterval = 0.5  # top share of the 9x9 window means walked for non-overlapping pairs


class ScenesSection(Section):
    """Step 3 (§3.2, supp. §1c): the MoCo scene encoder. A scene is `shots` consecutive shots (also step 2's window)."""

    shots: PositiveInt = 9
    frames_per_shot: Literal[1] = 1  # the keyframes table holds one frame per shot, as MovieNet and the paper
    dim: PositiveInt = 128
    queue: PositiveInt = 65_536
    momentum: UnitInterval = 0.999
    temperature: Positive = 0.07
    lr: Positive = 5e-6  # Adam
    weight_decay: float = Field(default=1e-8, ge=0)
    warmup_epochs: int = Field(default=5, ge=0)  # linear warm-up, then cosine decay
    batch: PositiveInt = 128  # scene pairs per step, over all workers
    epochs: PositiveInt = 20
    # held-out pairs: each query's own key found among this many held-out pairs' keys (chance 1/this), beside the
    # queue's figures (whose keys an older key encoder made)
    val_candidates: int = Field(default=32, ge=2)


class ScenesRunSection(TrainRunSection):
    name: str = "scenes"


class PretrainScenesConfig(JobConfig):
    """`movielib pretrain scenes`: Movies2Scenes' three steps over a tagged catalog, as one resumable run."""

    catalog: str | None = None  # the DEST a tagging run wrote (with features.keyframes on)
    similarity: SimilaritySection = Field(default_factory=SimilaritySection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    similarity_model: SimilarityModelSection = Field(default_factory=SimilarityModelSection)
    selection: SelectionSection = Field(default_factory=SelectionSection)
    scenes: ScenesSection = Field(default_factory=ScenesSection)
    model: ModelConfig = Field(default_factory=ModelConfig)  # the CLIP tower the scene encoder starts from
    scaling: ScalingSection = Field(default_factory=ScalingSection)
    deepspeed: DeepSpeedSection = Field(default_factory=DeepSpeedSection)
    run: ScenesRunSection = Field(default_factory=ScenesRunSection)

    @model_validator(mode="after")
    def _complete(self) -> PretrainScenesConfig:
        if not self.catalog:
            raise ValueError("catalog: is required (the tagged DEST to learn from)")
        if not self.similarity.path:
            raise ValueError("similarity.path: is required (a genres, synopsis or pairs file)")
        for section in ("similarity_model", "scenes"):
            check_global_batch(f"{section}.batch", getattr(self, section).batch, self.scaling.workers)
        if self.deepspeed.zero_stage == 3:  # the momentum encoder reads the query encoder's whole parameters
            raise ValueError(
                "deepspeed.zero_stage: must be 0, 1 or 2 (MoCo's momentum update reads whole parameters), got 3"
            )
        return self


class EmbedScenesConfig(EmbedRunConfig):
    """`movielib embed scenes RUN CATALOG`: a trained scene encoder's embeddings into the catalog's features/scene."""
