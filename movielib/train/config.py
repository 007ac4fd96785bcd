"""The launcher's config sections (every training job embeds them): pydantic only, so the CLI loads without torch."""

from __future__ import annotations

from typing import Literal

from movielib.config import NonNegative, Positive, PositiveInt, Section

__all__ = ["DeepSpeedSection", "ScalingSection"]


class ScalingSection(Section):
    workers: PositiveInt = 2
    cpus_per_worker: Positive = 1.0
    gpus_per_worker: NonNegative = 0.0  # > 0: NCCL and bf16 on the workers' GPUs


class DeepSpeedSection(Section):
    # auto: 0 on one worker (nothing to partition across; ZeRO-2 on a CPU worker costs ~70% more per step for
    # no memory saved), 2 with several
    zero_stage: Literal["auto", 0, 1, 2, 3] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    gradient_clipping: NonNegative = 0.0  # 0: none
