"""The one training launcher: Ray Train's TorchTrainer running a DeepSpeed engine on every worker.

Every method (Movies2Scenes, long-range pretraining, the genre model) writes a per-worker loop
that receives a `Worker`: it builds the DeepSpeed engine from the config (ZeRO stage; bf16 on a
GPU, fp32 on the CPU, where gloo is the backend and a torch optimizer is passed in so DeepSpeed's
Adam is not JIT-compiled), resumes from the run's last checkpoint, and saves checkpoints through
`ray.train.report`. A run lives in `<run.folder>/<run.name>/` (local or s3://), one subfolder per
stage a method trains (Ray Train's checkpoints, metrics.csv, curves.png), with the models the
stages export beside them; starting the same run again continues from its last checkpoint (Ray
Train V2), and `run.max_failures` worker deaths are survived by restarting every worker from it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from movielib.io.uri import S3Options
from movielib.runtime import RunSection, run_folder, write_bytes
from movielib.train.config import DeepSpeedSection, ScalingSection
from movielib.train.runlog import RunLog

__all__ = ["DeepSpeedSection", "RunSection", "ScalingSection", "Worker", "launch"]

C = TypeVar("C")
CHECKPOINT_TAG = "state"  # DeepSpeed's own `latest` file names the tag: the tag must not be "latest"


@dataclass
class Worker:
    """What a training loop needs from the launcher, on one worker."""

    deepspeed: DeepSpeedSection
    micro_batch: int
    run_folder: str  # <run.folder>/<run.name>: what the stages export
    stage: str  # <run_folder>/<stage>: Ray Train's checkpoints, metrics.csv and curves.png
    s3: S3Options | None = None  # the job's S3 options, for exports to an s3:// run folder
    _log: RunLog | None = None

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
        stage = self.zero_stage
        config = {
            "train_micro_batch_size_per_gpu": self.micro_batch,
            "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": stage},
            "zero_allow_untested_optimizer": True,
            "bf16": {"enabled": bf16},
            "steps_per_print": 10**9,
        }
        if ds.gradient_clipping:
            config["gradient_clipping"] = ds.gradient_clipping
        engine, _, _, _ = deepspeed.initialize(model=model.to(self.device), optimizer=optimizer, config=config)
        if stage == 0 and self.world_size == 1:  # no one to reduce with: DeepSpeed would still flatten and copy
            engine.enable_backward_allreduce = False  # every gradient each step
        return engine

    @property
    def zero_stage(self) -> int:
        stage = self.deepspeed.zero_stage
        return (0 if self.world_size == 1 else 2) if stage == "auto" else stage

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
        """Save the engine (every rank writes its shards) with `state`, and report `metrics` with it
        (rank 0 also logs them to the run folder's metrics.csv)."""
        import ray.train

        self.log(metrics)
        with tempfile.TemporaryDirectory() as folder:
            engine.save_checkpoint(folder, tag=CHECKPOINT_TAG, client_state=state)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    def log(self, metrics: dict) -> None:
        """One row of the run's metrics.csv (rank 0 only; the other ranks' calls do nothing)."""
        if self.rank == 0:
            self._log = self._log or RunLog(f"{self.run_folder}/{self.stage}", self.s3)
            self._log.log(metrics)

    def export(self, engine, name: str, meta: dict, prefix: str = "") -> str:
        """The trained module's full state dict (gathered from every rank under ZeRO-3; only the keys under
        `prefix`, without it) with `meta`, saved by rank 0 as `<run_folder>/<name>`: a plain torch file that
        loads without DeepSpeed. Every rank calls it."""
        import contextlib
        import io

        import deepspeed

        gathered = (
            deepspeed.zero.GatheredParameters(list(engine.module.parameters()))
            if self.zero_stage == 3
            else contextlib.nullcontext()
        )
        with gathered:
            if self.rank == 0:
                state = {
                    k[len(prefix) :]: v.detach().float().cpu().clone()
                    for k, v in engine.module.state_dict().items()
                    if k.startswith(prefix)
                }
        path = f"{self.run_folder}/{name}"
        if self.rank == 0:
            buf = io.BytesIO()
            torch.save({"state_dict": state, **meta}, buf)
            write_bytes(path, buf.getvalue(), self.s3)
        return path


def launch(
    loop: Callable[[Worker, C], None],
    loop_config: C,
    scaling: ScalingSection,
    deepspeed: DeepSpeedSection,
    run: RunSection,
    micro_batch: int,
    datasets: dict | None = None,
    stage: str = "train",
    s3: S3Options | None = None,
):
    """Run `loop(worker, loop_config)` on `scaling.workers` Ray Train workers; returns Ray Train's Result.
    `loop_config` reaches the workers as it is (typed sections and dataclasses pickle), never as a dict.
    A run folder that holds checkpoints of the same stage continues from the last one. The stage's
    metrics (metrics.csv, logged by the loop) are drawn as curves.png in its folder at the end."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = scaling.gpus_per_worker > 0
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if use_gpu else {})}
    folder = run_folder(run)
    worker = Worker(deepspeed, micro_batch, folder, stage, s3)
    trainer = TorchTrainer(
        _per_worker,
        train_loop_config={"loop": loop, "config": loop_config, "worker": worker},
        scaling_config=ScalingConfig(num_workers=scaling.workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=stage, storage_path=folder, failure_config=FailureConfig(max_failures=run.max_failures)
        ),
        datasets=datasets,
    )
    result = trainer.fit()
    log = RunLog(f"{folder}/{stage}", s3)
    if log.rows:
        log.curves()
    return result


def _per_worker(config: dict) -> None:
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(tempfile.gettempdir(), "movielib-torch-extensions"))
    config["loop"](config["worker"], config["config"])
