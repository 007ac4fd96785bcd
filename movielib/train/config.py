"""The launcher's config sections (every training job embeds them): pydantic only, so the CLI loads without torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from movielib.config import JobConfig, NonNegative, Positive, PositiveInt, Section
from movielib.runtime import RunSection

__all__ = ["DeepSpeedSection", "EmbedRunConfig", "ScalingSection", "TrainRunSection", "check_global_batch"]


def check_global_batch(field: str, batch: int, workers: int) -> None:
    """The global batch is exact: each worker takes batch / workers, so the workers must divide it."""
    if batch % workers:
        raise ValueError(f"{field}: must be a multiple of scaling.workers ({workers}), got {batch}")


class ScalingSection(Section):
    workers: PositiveInt = 2
    cpus_per_worker: Positive = 1.0
    gpus_per_worker: NonNegative = 0.0  # 0, or whole GPUs per worker: NCCL and bf16 on the workers' GPUs

    @model_validator(mode="after")
    def _whole_gpus(self) -> ScalingSection:
        if self.gpus_per_worker and self.gpus_per_worker != int(self.gpus_per_worker):
            raise ValueError(
                f"gpus_per_worker: must be 0 or a whole number of GPUs (NCCL cannot share one GPU between ranks), "
                f"got {self.gpus_per_worker}"
            )
        return self


class DeepSpeedSection(Section):
    # auto: 0 on one worker (nothing to partition across; ZeRO-2 on a CPU worker costs ~70% more per step for
    # no memory saved), 2 with several
    zero_stage: Literal["auto", 0, 1, 2, 3] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    gradient_clipping: NonNegative = 0.0  # 0: none


class TrainRunSection(RunSection):
    """Where a training run lives, and how it checkpoints, logs and orders its data."""

    checkpoint_every_steps: int = Field(default=0, ge=0)  # also every N steps, not only at each epoch's end (0: off)
    num_to_keep: PositiveInt = 2  # checkpoints kept per stage, the newest (Ray Train deletes older ones)
    log_every_steps: int = Field(default=10, ge=0)  # a metrics.csv / TensorBoard row every N steps (0: epochs only)
    # rows each worker shuffles its shard over, in a new seeded order every epoch (Ray Data's local shuffle): a
    # batch mixes many movie pairs even where the joined rows arrive grouped by movie
    shuffle_buffer: PositiveInt = 1024
    # batches Ray Data collates and moves to the device ahead of the step (iter_torch_batches' prefetch_batches):
    # a GPU step is short, so collation must overlap it (H200 multimodal runs: 1 -> 4 gave 1.32x once, 0.93x
    # the next time; Ray's default kept)
    prefetch_batches: PositiveInt = 1
    # how often Ray Train's controller polls the workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, Ray's default 2 s): a
    # worker's report (every epoch's checkpoint) waits for the next poll, so at 2 s every epoch of a small run
    # lasted 2 s whatever its steps (a 20-epoch genre run of 3 steps an epoch: 97 s -> 61 s at 0.25)
    controller_poll_s: Positive = 0.25


class InputSection(Section):
    """One modality's frozen base features: a features table, its model and version (None: the only model / the
    newest version), or off (`use: false`, Table 1's ablation)."""

    table: str | None = None  # None: the method's default (multimodal language: cues when the catalog has them)
    model: str | None = None
    version: str | None = None
    use: bool = True


class EmbedRunConfig(JobConfig):
    """`movielib embed <method> RUN CATALOG`: a trained run's features into the catalog's features tables."""

    run: str | None = None  # the run folder (<run.folder>/<run.name>) holding the exported model
    catalog: str | None = None  # the DEST whose shots are embedded

    @model_validator(mode="after")
    def _complete(self) -> EmbedRunConfig:
        for name in ("run", "catalog"):
            if not getattr(self, name):
                raise ValueError(f"{name}: is required (movielib embed ... RUN CATALOG)")
        return self
