"""`movielib tune heads` / `movielib train head` config, validated before any trial starts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from movielib.config import JobConfig, Positive, PositiveInt, Section, UnitInterval
from movielib.runtime import RunSection


class DataSection(Section):
    """What the head reads and predicts."""

    catalog: str | None = None  # the tagged DEST
    features: str = "features/image"  # any features table: features/image, features/scene, ...
    model: str | None = None  # the features' model when the table holds several (e.g. movies2scenes-scene)
    version: str | None = None  # the model's model_version (None: the newest; an embed re-run adds one)
    # clean_tags: MovieCLIP's weak labels, the tags table's clean shots (top-1 >= 0.4); else a CSV / Parquet file
    # keyed by video_id (movie-level: shot features are averaged over the video) or video_id + shot_idx, with a
    # `label` column: "a|b" or a list (multi-label), a class name (single-label) or a number (regression)
    labels: str = "clean_tags"
    multi: bool = True  # clean_tags: labels_multi (top-1 plus labels 2..k with score > 0.1) vs the top-1 alone
    task: Literal["auto", "multilabel", "single", "regression"] = "auto"  # auto: from the labels
    val_fraction: UnitInterval = 0.15  # of the videos: shots of one video never straddle two splits
    test_fraction: UnitInterval = 0.15
    seed: int = 0

    @model_validator(mode="after")
    def _fractions(self) -> DataSection:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(
                f"test_fraction: data.val_fraction + data.test_fraction must be < 1, got "
                f"{self.val_fraction} + {self.test_fraction}"
            )
        return self


class HeadSection(Section):
    """One head's training (what `train head` runs, and each trial's defaults)."""

    name: Literal["scene", "trailer", "mlp2", "linear"] = "scene"
    width: PositiveInt | None = None  # None: the head's own (scene 4096, trailer 512, mlp2 512)
    dropout: UnitInterval | None = None  # None: the head's own (scene / trailer 0.2)
    # adamw; or sgd with momentum (MovieCLIP's and Movies2Scenes' recipes for their heads)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    momentum: UnitInterval = 0.9  # sgd
    lr: Positive = 1e-3
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 20  # reported epochs (ASHA's time unit)
    # at least this many optimizer steps in all: on a small set an epoch is a few steps, so each reported epoch
    # then makes several passes over the training split (a large set's epochs are unchanged)
    min_steps: int = Field(default=1000, ge=0)
    patience: int | None = Field(default=None, ge=1)  # stop when the val metric has not improved for N epochs
    pos_weight: bool = False  # multi-label: BCE positives weighted by negatives / positives of each label
    threshold: UnitInterval = 0.5  # multi-label precision / recall / F1


class SearchSection(Section):
    """The sweep's search space: each field a range (log-uniform for lr and weight_decay) or a list to choose from."""

    lr: list[Positive] = Field(default_factory=lambda: [1e-4, 1e-2])  # [low, high]
    weight_decay: list[Positive] = Field(default_factory=lambda: [1e-6, 1e-2])
    dropout: list[UnitInterval] = Field(default_factory=lambda: [0.0, 0.2, 0.5])
    width: list[PositiveInt] = Field(default_factory=lambda: [256, 1024, 4096])
    batch_size: list[PositiveInt] = Field(default_factory=lambda: [64, 128, 256])

    @model_validator(mode="after")
    def _ranges(self) -> SearchSection:
        for name in ("lr", "weight_decay"):
            bounds = getattr(self, name)
            if len(bounds) != 2 or bounds[0] >= bounds[1]:
                raise ValueError(f"{name}: must be [low, high] with low < high, got {bounds}")
        for name in ("dropout", "width", "batch_size"):
            if not getattr(self, name):
                raise ValueError(f"{name}: must list at least one value")
        return self


class TuneSection(Section):
    num_samples: PositiveInt = 8  # trials
    metric: str | None = None  # None: val_map (multi-label), val_top1 (single), val_mse (regression)
    mode: Literal["auto", "max", "min"] = "auto"  # auto: min for mse, max otherwise
    scheduler: Literal["asha", "fifo"] = "asha"  # fifo: every trial runs all its epochs
    grace_period: PositiveInt = 2  # ASHA: epochs before a trial may be stopped
    reduction_factor: float = Field(default=3.0, gt=1)
    max_concurrent_trials: PositiveInt | None = None  # None: as many as the cluster's resources allow
    cpus_per_trial: Positive = 1.0
    gpus_per_trial: float = Field(default=0.0, ge=0)  # fractional GPUs share one device between trials


class HeadsRunSection(RunSection):
    name: str = "heads"


class HeadsConfig(JobConfig):
    """A head over a features table, trained once (`train head`) or swept with Ray Tune (`tune heads`)."""

    data: DataSection = Field(default_factory=DataSection)
    head: HeadSection = Field(default_factory=HeadSection)
    search: SearchSection = Field(default_factory=SearchSection)
    tune: TuneSection = Field(default_factory=TuneSection)
    run: HeadsRunSection = Field(default_factory=HeadsRunSection)

    @model_validator(mode="after")
    def _complete(self) -> HeadsConfig:
        if not self.data.catalog:
            raise ValueError("data.catalog: is required (the tagged DEST whose features the head reads)")
        if self.tune.grace_period > self.head.epochs:
            raise ValueError(
                f"tune.grace_period: must be <= head.epochs ({self.head.epochs}), got {self.tune.grace_period}"
            )
        return self
