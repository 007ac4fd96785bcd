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

import dataclasses
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from movielib.io.uri import S3Options
from movielib.runtime import RunSection, elapsed_eta, run_folder, verbose, write_bytes
from movielib.train.config import DeepSpeedSection, ScalingSection, TrainRunSection
from movielib.train.runlog import RunLog

__all__ = ["DeepSpeedSection", "Epochs", "RunSection", "ScalingSection", "TrainRunSection", "Worker", "launch"]

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
    run: TrainRunSection = dataclasses.field(default_factory=TrainRunSection)  # checkpoints, logging, shuffling
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
        """This worker's device as Ray Train assigned it (its own GPU on a GPU worker, never cuda:0 by default)."""
        import ray.train.torch

        return ray.train.torch.get_device()

    @property
    def bf16(self) -> bool:
        """bf16 weights and activations (precision bf16, or auto on a GPU worker); fp32 islands stay fp32."""
        ds = self.deepspeed
        return ds.precision == "bf16" or (ds.precision == "auto" and self.device.type == "cuda")

    def engine(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
        """The DeepSpeed engine around `model` and a torch `optimizer` (ZeRO stage and precision from the config).
        Under bf16 DeepSpeed casts every parameter to bf16 and keeps fp32 masters in the optimizer; the submodules
        a model names in `fp32_modules` (MoCo's key encoder and queue, the genre model's input statistics) are
        restored in fp32 here, with the values they had before the cast: fp32 islands that no optimizer updates."""
        import deepspeed

        ds = self.deepspeed
        bf16 = self.bf16
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
        islands = fp32_islands(model) if bf16 else {}
        engine, _, _, _ = deepspeed.initialize(model=model.to(self.device), optimizer=optimizer, config=config)
        if bf16:
            keep_fp32_islands(engine.module, islands)
        if stage == 0 and self.world_size == 1:  # no one to reduce with: DeepSpeed would still flatten and copy
            engine.enable_backward_allreduce = False  # every gradient each step
        return engine

    @property
    def zero_stage(self) -> int:
        stage = self.deepspeed.zero_stage
        return (0 if self.world_size == 1 else 2) if stage == "auto" else stage

    def batches(self, shard):
        """The shard's micro-batches in order on this worker's device, every row (evaluation)."""
        return shard.iter_torch_batches(**self.feeding(), batch_size=self.micro_batch)

    def feeding(self) -> dict:
        """How batches reach the device: prefetched, and on a GPU through pinned memory (an asynchronous copy)."""
        return {
            "device": self.device,
            "prefetch_batches": self.run.prefetch_batches,
            "pin_memory": self.device.type == "cuda",
        }

    def resume(self, engine) -> dict:
        """Load the run's last checkpoint into `engine`; returns the state saved with it ({} on a fresh run).
        A checkpoint whose files are gone is an error naming it, never a silent fresh start."""
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return {}
        with checkpoint.as_directory() as folder:
            try:
                path, state = engine.load_checkpoint(folder, tag=CHECKPOINT_TAG)
            except (AssertionError, OSError, RuntimeError):  # DeepSpeed asserts when a tag's files are gone
                path = None
            if path is None:
                found = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file())
                raise RuntimeError(
                    f"cannot resume from {checkpoint.path}: its DeepSpeed files ({CHECKPOINT_TAG}/, latest) are "
                    f"missing or incomplete (found: {', '.join(found[:8]) or 'nothing'}); restore them, or start the "
                    "stage anew in another run folder"
                )
        return state or {}

    def epochs(self, engine, epochs: int, stage: str, items: str) -> Epochs:
        """The loop's epochs, resumed from the last checkpoint (mid-epoch ones included); see Epochs."""
        return Epochs(self, engine, epochs, stage, items)

    def checkpoint(self, engine, metrics: dict, state: dict, log: bool = True) -> None:
        """Save the engine (every rank writes its shards) with `state`, and report `metrics` with it
        (rank 0 also logs them to the run folder's metrics.csv, unless `log` is off)."""
        import ray.train

        if log:
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
        """The trained module's full state dict (only the keys under `prefix`, without it) with `meta`, saved by
        rank 0 as `<run_folder>/<name>`: a plain torch file that loads without DeepSpeed. Trained parameters are
        the optimizer's fp32 master weights (under bf16 the module holds bf16 copies; under ZeRO they are
        gathered from every rank); the rest as the module holds them, in fp32. Every rank calls it."""
        import io

        state = fp32_state_dict(engine, self.zero_stage, prefix, self.rank == 0)
        path = f"{self.run_folder}/{name}"
        if self.rank == 0:
            buf = io.BytesIO()
            torch.save({"state_dict": state, **meta}, buf)
            write_bytes(path, buf.getvalue(), self.s3)
        return path


def fp32_islands(module: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The state of each submodule `module.fp32_modules` names, copied before DeepSpeed's bf16 cast."""
    return {
        name: {k: v.detach().clone() for k, v in module.get_submodule(name).state_dict().items()}
        for name in getattr(module, "fp32_modules", ())
    }


def keep_fp32_islands(module: torch.nn.Module, saved: dict[str, dict[str, torch.Tensor]]) -> torch.nn.Module:
    """The submodules `module.fp32_modules` names back in fp32 after DeepSpeed's bf16 cast (which casts every
    parameter and buffer), holding their values from before it (`saved`, fp32_islands): MoCo's key encoder,
    whose momentum update is below bf16's resolution, and its queue; input statistics."""
    for name in getattr(module, "fp32_modules", ()):
        sub = module.get_submodule(name).float()
        if name in saved:
            sub.load_state_dict(saved[name])
    return module


class Epochs:
    """A training loop's epochs and steps on one worker: resume, seeded shuffling, step logs, checkpoints.

        run = worker.epochs(engine, cfg.epochs, "scenes", "scene_pairs")
        for epoch in run:
            for batch in run.batches(shard):
                ... forward, backward, step ...
                run.step_done(engine, len(batch), loss=loss.item(), lr=lr)
            run.end_epoch(engine, {"loss": ..., ...})

    Every epoch reads the shard in a new seeded order (a local shuffle buffer of `run.shuffle_buffer` rows);
    `run.log_every_steps` writes a row of the running means (rank 0's shard) and throughput; a checkpoint is
    written at each epoch's end and every `run.checkpoint_every_steps` steps. A run resumed from a mid-epoch
    checkpoint skips the batches that epoch had already trained on.
    """

    def __init__(self, worker: Worker, engine, epochs: int, stage: str, items: str):
        self.worker, self.epochs, self.stage, self.items = worker, epochs, stage, items
        state = worker.resume(engine)
        self.step = state.get("step", 0)
        self.first = state.get("epoch", 0)
        self.skip = self.step - state.get("epoch_start", self.step)
        self.epoch = self.first
        self.t0 = time.perf_counter()  # this run's epochs: the ETA
        self._window: dict[str, list[float]] = {}
        if state:  # on record in metrics.csv (no step: curves and by_step skip it) and on the console
            worker.log({"kind": "resume", "resumed_step": self.step, "resumed_epoch": self.first})
            self._say(f"resumed from the checkpoint at step {self.step} ({self.first} epochs done)")

    def _say(self, line: str) -> None:
        """One progress line of rank 0, logged, not printed: Ray Train V2 would pass a print on twice."""
        if self.worker.rank == 0:
            log = logging.getLogger("movielib.train")
            log.setLevel(logging.INFO)
            log.info(f"[{self.stage}] {line}")

    def __iter__(self):
        for epoch in range(self.first, self.epochs):
            self.epoch, self.epoch_start = epoch, self.step - (self.skip if epoch == self.first else 0)
            self.speed, self._window = Throughput(), {}
            yield epoch
            self.skip = 0

    def batches(self, shard, train: bool = True):
        """The shard's micro-batches on this worker's device; for training, shuffled in the epoch's seeded order
        and without the batches a mid-epoch checkpoint had covered."""
        if not train:
            yield from self.worker.batches(shard)
            return
        w = self.worker
        it = shard.iter_torch_batches(
            **w.feeding(),
            batch_size=w.micro_batch,
            drop_last=True,
            local_shuffle_buffer_size=w.run.shuffle_buffer,
            local_shuffle_seed=(self.epoch + 1) * 1_000_003 + w.rank,
        )
        for i, batch in enumerate(it):
            if self.epoch == self.first and i < self.skip:
                continue
            yield batch

    def step_done(self, engine, items: int, **metrics: float) -> None:
        """After an optimizer step over `items` examples on this worker: a step row every log_every_steps, a
        checkpoint every checkpoint_every_steps."""
        w = self.worker
        self.step += 1
        self.speed.step(items * w.world_size)
        for k, v in metrics.items():
            self._window.setdefault(k, []).append(float(v))
        if w.run.log_every_steps and self.step % w.run.log_every_steps == 0:
            w.log(
                {
                    "step": self.step,
                    "epoch": self.epoch + 1,
                    "kind": "step",
                    **{k: sum(v) / len(v) for k, v in self._window.items()},
                    f"{self.items}_per_s": self.speed.per_s,
                }
            )
            self._window = {}
        if w.run.checkpoint_every_steps and self.step % w.run.checkpoint_every_steps == 0:
            self.worker.checkpoint(
                engine,
                {"step": self.step, "epoch": self.epoch + 1, "kind": "checkpoint"},
                {"epoch": self.epoch, "step": self.step, "epoch_start": self.epoch_start},
                log=False,
            )

    def end_epoch(self, engine, metrics: dict) -> dict:
        """The epoch's row (kind epoch: global metrics) with its checkpoint, and rank 0's progress line."""
        row = {
            "step": self.step,
            "epoch": self.epoch + 1,
            "kind": "epoch",
            **metrics,
            f"{self.items}_per_s": self.speed.per_s,
        }
        self._say(
            f"epoch {self.epoch + 1}/{self.epochs}  "
            + "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k not in ("kind", "epoch") and "/" not in k  # a per-label family: in the files, not the line
            )
            + "  | "
            + elapsed_eta(time.perf_counter() - self.t0, self.epoch + 1 - self.first, self.epochs - self.first)
        )
        self.worker.checkpoint(engine, row, {"epoch": self.epoch + 1, "step": self.step, "epoch_start": self.step})
        return row


class Throughput:
    """Items per second of an epoch, timed from the end of its first step to the end of its last (the data
    iterator's start-up and first batch left out, as the benchmarks time both sides); the whole epoch when it
    has one step."""

    def __init__(self):
        self.start = time.perf_counter()
        self.first: float | None = None
        self.last, self.items, self.total = self.start, 0, 0

    def step(self, items: int) -> None:
        self.last = time.perf_counter()
        if self.first is None:
            self.first = self.last
        else:
            self.items += items
        self.total += items

    @property
    def per_s(self) -> float:
        if self.items:
            return self.items / (self.last - self.first)
        return self.total / max(self.last - self.start, 1e-9)


def fp32_state_dict(engine, zero_stage: int, prefix: str = "", keep: bool = True) -> dict[str, torch.Tensor]:
    """The engine's module state under `prefix` in fp32, trained parameters from the optimizer's fp32 masters.
    A collective under ZeRO: every rank calls it; only where `keep` is the dict filled."""
    import contextlib

    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    masters = {}
    # ZeRO 0 under bf16: DeepSpeed's unfused optimizer keeps the fp32 copies in groups beside the bf16 ones
    opt = getattr(engine, "optimizer", None) if zero_stage == 0 else None
    unfused = {
        id(lo): hi
        for los, his in zip(getattr(opt, "fp16_groups", []), getattr(opt, "fp32_groups", []))
        for lo, hi in zip(los, his)
    }
    for key, param in engine.module.named_parameters():
        if key.startswith(prefix) and param.requires_grad:
            full = unfused.get(id(param))
            if full is None:  # ZeRO 1-3 (and the bf16 optimizer): DeepSpeed assembles it; None when no master
                full = safe_get_full_fp32_param(param)
            if full is not None and keep:
                masters[key] = full.detach().float().cpu().clone()
    gathered = (
        deepspeed.zero.GatheredParameters(list(engine.module.parameters()))
        if zero_stage == 3
        else contextlib.nullcontext()
    )
    with gathered:
        if not keep:
            return {}
        return {
            k[len(prefix) :]: masters.get(k, v.detach().float().cpu().clone())
            for k, v in engine.module.state_dict().items()
            if k.startswith(prefix)
        }


def warn_no_cpu_left(scaling: ScalingSection) -> str | None:
    """A warning (logged, and returned) when the workers would take every CPU the cluster has now: Ray Data's
    feeding then has none, and on a cluster that cannot grow the run waits for its first batch forever."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0) if ray.is_initialized() else 0.0
    taken = scaling.workers * scaling.cpus_per_worker
    if not total or taken < total:
        return None
    message = (
        f"scaling: {scaling.workers} workers x {scaling.cpus_per_worker} CPUs take all {total:g} CPUs of the cluster, "
        "leaving none to feed them data: unless the cluster autoscales, lower scaling.cpus_per_worker or "
        "scaling.workers"
    )
    logging.getLogger("movielib.train").warning(message)
    return message


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
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = scaling.gpus_per_worker > 0
    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if use_gpu else {})}
    if datasets:
        warn_no_cpu_left(scaling)
    folder = run_folder(run)
    train_run = run if isinstance(run, TrainRunSection) else TrainRunSection(**run.model_dump())
    worker = Worker(deepspeed, micro_batch, folder, stage, s3, train_run)
    storage: dict = {"storage_path": folder}
    if folder.startswith("s3://"):  # the job's own S3 options (endpoint, credentials), not only the environment's
        storage = {
            "storage_path": folder.removeprefix("s3://"),
            "storage_filesystem": (s3 or S3Options.from_env()).filesystem(),
        }
    # read by the controller Ray Train starts (its environment is propagated from here)
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = f"{train_run.controller_poll_s:g}"
    trainer = TorchTrainer(
        _per_worker,
        train_loop_config={"loop": loop, "config": loop_config, "worker": worker},
        scaling_config=ScalingConfig(num_workers=scaling.workers, use_gpu=use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=RunConfig(
            name=stage,
            failure_config=FailureConfig(max_failures=run.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train_run.num_to_keep),
            # Train's own INFO lines (worker group sizes, process groups, checkpoint paths) stay in its log files
            logging_config=LoggingConfig("INFO" if verbose() else "WARNING"),
            **storage,
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
    if torch.cuda.is_available():  # Ray Train's GPU for this worker is the current one before any model is built
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())
    else:  # said, not guessed: DeepSpeed warns on every worker when it has to fall back to the CPU itself
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        # torch's extension builder (DeepSpeed imports it) notes on a CPU worker that it found no CUDA runtime
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    _quiet_worker()
    config["loop"](config["worker"], config["config"])


def _quiet_worker() -> None:
    """A training worker's console (Ray Train sets it up: its root logger prints INFO) carries the loop's progress
    lines (movielib.train) and warnings; what it would print besides, that nobody running a job can act on, stays
    off it unless --verbose."""
    if not verbose():
        # Ray Train's INFO ("Reporting training result ...") passes its console handler whatever LoggingConfig
        # says (its log files in the session folder keep it), and so does INFO that libraries log on the root
        # logger itself (open_clip's tokenizer lookup). The handler is the one the loop's lines go through.
        for handler in {*logging.getLogger().handlers, *logging.getLogger("ray.train").handlers}:
            if handler.name == "console":
                handler.addFilter(_worker_console)
        # ... except the line a report, which Train logs on a logger named by its file's path (outside "ray.train")
        from ray.train.v2._internal.execution import context

        context.logger.setLevel(logging.WARNING)
    # movielib allows torch optimizers under ZeRO on purpose (zero_allow_untested_optimizer): no caution each run
    logging.getLogger("DeepSpeed").addFilter(lambda record: "untested optimizer" not in record.getMessage())
    # a gather below the loops (DeepSpeed, torch.distributed) calls a collective torch 2.14 deprecates
    warnings.filterwarnings("ignore", "`torch.distributed.all_gather_into_tensor` is deprecated", FutureWarning)
    # Ray Data hands read-only arrays (Arrow's buffers) to torch.as_tensor; the loops never write into a batch
    warnings.filterwarnings("ignore", "The given NumPy array is not writable", UserWarning)


def _worker_console(record: logging.LogRecord) -> bool:
    """What a training worker's console passes when not --verbose: warnings, and INFO of everything but Ray Train
    and the root logger (so the loop's own progress lines)."""
    if record.levelno >= logging.WARNING:
        return True
    return record.name != "root" and record.name != "ray.train" and not record.name.startswith("ray.train.")


def all_sum(*values: float) -> list[float]:
    """Sums over the workers (gloo / NCCL all-reduce); the values themselves on one worker."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.to(comm_device())
        dist.all_reduce(t)
    return t.cpu().tolist()


def gather_rows(x: np.ndarray | None, rank0_only: bool = False) -> np.ndarray | None:
    """Every worker's rows, concatenated (a validation pass's predictions: AU-PRC needs them all): on every worker,
    or with `rank0_only` on rank 0 alone (None on the others: figures computed once). A worker with no rows may
    send None."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts: list | None = [None] * dist.get_world_size()
    if rank0_only:
        parts = parts if dist.get_rank() == 0 else None
        dist.gather_object(x, parts, dst=0)
        if parts is None:
            return None
    else:
        dist.all_gather_object(parts, x)
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Every worker's `x` concatenated along dim 0, gradients flowing back to each worker's own part
    (torch.distributed.nn's all_gather; MoCo's no-grad gather would cut the negatives' gradients): what every
    contrastive loss over the global batch gathers with."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():  # its deprecation in favour of a private API, on every call
        warnings.filterwarnings("ignore", message=".*all_gather is deprecated", category=FutureWarning)
        return torch.cat(all_gather(x.contiguous()), dim=0)


def comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
