"""The one training launcher: Ray Train's TorchTrainer running a DeepSpeed engine on every worker.

Every method (Movies2Scenes, long-range pretraining, the genre model) writes a per-worker loop
that receives a `Worker`: it builds the DeepSpeed engine from the config (ZeRO stage; bf16 on a
GPU, fp32 on the CPU, where gloo is the backend and a torch optimizer is passed in so DeepSpeed's
Adam is not JIT-compiled), resumes from the run's last checkpoint, and saves checkpoints through
`ray.train.report`. A run lives in `<run.folder>/<run.name>/` (local or s3://); starting the same
run again continues from its last checkpoint (Ray Train V2), and `run.max_failures` worker deaths
are survived by restarting every worker from that checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field

from movielib.config import NonNegative, Positive, PositiveInt, Section

CHECKPOINT_TAG = "state"  # DeepSpeed's own `latest` file names the tag: the tag must not be "latest"


class ScalingSection(Section):
    workers: PositiveInt = 2
    cpus_per_worker: Positive = 1.0
    gpus_per_worker: NonNegative = 0.0  # > 0: NCCL and bf16 on the workers' GPUs


class DeepSpeedSection(Section):
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on a GPU, fp32 on the CPU
    gradient_clipping: NonNegative = 0.0  # 0: none


class RunSection(Section):
    folder: str = "runs"  # local path or s3:// prefix; the run is <folder>/<name>
    name: str = "run"
    max_failures: int = Field(default=2, ge=0)  # worker deaths survived (restart from the last checkpoint)


@dataclass
class Worker:
    """What a training loop needs from the launcher, on one worker."""

    deepspeed: DeepSpeedSection
    micro_batch: int

    @property
    def rank(self) -> int:
        import ray.train

        return ray.train.get_context().get_world_rank()

    @property
    def world_size(self) -> int:
        import ray.train

        return ray.train.get_context().get_world_size()

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")

    def engine(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """The DeepSpeed engine around `model` and a torch `optimizer` (ZeRO stage and precision from the config)."""
        import deepspeed

        ds = self.deepspeed
        bf16 = ds.precision == "bf16" or (ds.precision == "auto" and torch.cuda.is_available())
        config = {"train_micro_batch_size_per_gpu": self.micro_batch, "gradient_accumulation_steps": 1,
                  "zero_optimization": {"stage": ds.zero_stage}, "zero_allow_untested_optimizer": True,
                  "bf16": {"enabled": bf16}, "steps_per_print": 10**9}
        if ds.gradient_clipping:
            config["gradient_clipping"] = ds.gradient_clipping
        engine, _, _, _ = deepspeed.initialize(model=model.to(self.device), optimizer=optimizer, config=config)
        return engine

    def resume(self, engine) -> dict:
        """Load the run's last checkpoint into `engine`; returns the state saved with it ({} on a fresh run)."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return {}
        with checkpoint.as_directory() as folder:
            _, state = engine.load_checkpoint(folder, tag=CHECKPOINT_TAG)
        return state or {}

    def checkpoint(self, engine, metrics: dict, state: dict) -> None:
        """Save the engine (every rank writes its shards) with `state`, and report `metrics` with it."""
        import ray.train

        with tempfile.TemporaryDirectory() as folder:
            engine.save_checkpoint(folder, tag=CHECKPOINT_TAG, client_state=state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def launch(loop: Callable[[Worker, dict], None], loop_config: dict, scaling: ScalingSection,
           deepspeed: DeepSpeedSection, run: RunSection, micro_batch: int, datasets: dict | None = None):
    """Run `loop(worker, loop_config)` on `scaling.workers` Ray Train workers; returns Ray Train's Result.
    A run folder that holds checkpoints of the same run name continues from the last one."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = scaling.gpus_per_worker > 0
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if use_gpu else {})}
    trainer = TorchTrainer(
        _per_worker, train_loop_config={"loop": loop, "config": loop_config, "deepspeed": deepspeed.model_dump(),
                                        "micro_batch": micro_batch},
        scaling_config=ScalingConfig(num_workers=scaling.workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(name=run.name, storage_path=_storage(run.folder),
                             failure_config=FailureConfig(max_failures=run.max_failures)),
        datasets=datasets)
    return trainer.fit()


def _per_worker(config: dict) -> None:
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(tempfile.gettempdir(), "movielib-torch-extensions"))
    worker = Worker(DeepSpeedSection(**config["deepspeed"]), config["micro_batch"])
    config["loop"](worker, config["config"])


def _storage(folder: str) -> str:
    """Ray Train's storage_path: s3:// as it is, a local folder absolute."""
    return folder if "://" in folder else os.path.abspath(os.path.expanduser(folder))
