"""The per-worker training loops of steps 1 and 3, on the launcher (Ray Train + DeepSpeed).

Each epoch streams the worker's shard of the Ray Dataset the driver built, reports its metrics with
a checkpoint (model, optimizer and, for MoCo, the queue and key encoder: they are buffers and
parameters of the module), and a restarted run continues after the last finished epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from movielib.models.clip import ClipSpec
from movielib.train.launcher import Worker
from movielib.train.movies2scenes.config import ScenesSection, SimilarityModelSection
from movielib.train.movies2scenes.encoder import SceneEncoder
from movielib.train.movies2scenes.moco import MoCo
from movielib.train.movies2scenes.similarity import MovieSimilarity


def _all_sum(*values: float) -> list[float]:
    """Sums over the workers (gloo / NCCL all-reduce); the values themselves on one worker."""
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        t = t.to(_comm_device())
        dist.all_reduce(t)
    return t.cpu().tolist()


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _gather(keys: torch.Tensor) -> torch.Tensor:
    """Every worker's keys, in rank order (the reference MoCo's concat_all_gather)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys
    out = [torch.zeros_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(out, keys.contiguous())
    return torch.cat(out)


def _progress(worker: Worker, stage: str, metrics: dict) -> None:
    """Rank 0's per-epoch line. Logged, not printed: Ray Train V2 turns a worker's print into a log record
    and also passes it on to the redirected stdout, so every printed line reached the driver twice."""
    if worker.rank == 0:
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        log = logging.getLogger("movielib.train")
        log.setLevel(logging.INFO)
        log.info(f"[{stage}] {shown}")


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


@dataclass(frozen=True)
class SimilarityLoop:
    """What step 1's workers need: the model section, the features' width, the seed."""

    model: SimilarityModelSection
    in_dim: int
    seed: int


@dataclass(frozen=True)
class ScenesLoop:
    """What step 3's workers need: the scenes section, the CLIP tower (spec and shape), its normalisation."""

    scenes: ScenesSection
    seed: int
    clip: ClipSpec
    tower: dict  # encoder.tower_config: saved with the export, so it loads without open_clip's config
    mean: tuple[float, ...]
    std: tuple[float, ...]
    steps_per_epoch: int


def similarity_model(m: SimilarityModelSection, in_dim: int) -> MovieSimilarity:
    return MovieSimilarity(
        in_dim, m.dim, m.shots, (m.avg_kernel, m.avg_stride), (m.max_kernel, m.max_stride), m.dropout
    )


def similarity_loop(worker: Worker, c: SimilarityLoop) -> None:
    """Step 1: BCE of MovieSimilarity's logit against similar (1) / dissimilar (0) movie pairs; SGD."""
    import ray.train

    m = c.model
    torch.manual_seed(c.seed)
    model = similarity_model(m, c.in_dim)
    engine = worker.engine(model, torch.optim.SGD(model.parameters(), lr=m.lr))
    state = worker.resume(engine)
    step = state.get("step", 0)
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    for epoch in range(state.get("epoch", 0), m.epochs):
        speed, loss_sum, seen = Throughput(), 0.0, 0
        engine.train()
        for batch in train.iter_torch_batches(batch_size=worker.micro_batch, drop_last=True, device=worker.device):
            logit = engine(batch["x1"], batch["x2"], batch["m1"], batch["m2"])
            loss = F.binary_cross_entropy_with_logits(logit, batch["label"].to(logit.dtype))
            engine.backward(loss)
            engine.step()
            step += 1
            loss_sum, seen = loss_sum + loss.item() * len(logit), seen + len(logit)
            speed.step(len(logit) * worker.world_size)
        correct, total = 0, 0
        engine.eval()
        with torch.no_grad():
            for batch in val.iter_torch_batches(batch_size=worker.micro_batch, device=worker.device):
                logit = engine(batch["x1"], batch["x2"], batch["m1"], batch["m2"])
                correct += int(((logit > 0).float() == batch["label"].to(logit.dtype)).sum())
                total += len(logit)
        loss_sum, seen, correct, total = _all_sum(loss_sum, seen, correct, total)
        metrics = {
            "step": step,
            "epoch": epoch + 1,
            "loss": loss_sum / max(seen, 1),
            "lr": m.lr,
            "similarity_accuracy": correct / total if total else float("nan"),
            "pairs_per_s": speed.per_s,
        }
        _progress(worker, "similarity", metrics)
        worker.checkpoint(engine, metrics, {"epoch": epoch + 1, "step": step})
    worker.export(
        engine, "similarity.pt", {"model": m.model_dump(), "in_dim": c.in_dim}
    )  # plain data: loads with weights_only


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def scene_tower(clip: ClipSpec) -> torch.nn.Module:
    """The CLIP image tower the tagging job used (open_clip; weights from the config's path / URI, or random)."""
    from movielib.models.clip import load_clip

    return load_clip(clip).model.visual


def to_model_input(
    frames: torch.Tensor, mean: list[float] | tuple[float, ...], std: list[float] | tuple[float, ...]
) -> torch.Tensor:
    """(B, n, H, W, 3) uint8 scenes -> (B, n, 3, H, W) normalised as CLIP's preprocessing."""
    x = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, 1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 1, 3, 1, 1)
    return (x - m) / s


def scenes_loop(worker: Worker, c: ScenesLoop) -> None:
    """Step 3: MoCo over scene pairs (query: movie a's scene, key: movie b's), Adam with warm-up."""
    import ray.train

    s = c.scenes
    tower = scene_tower(c.clip)
    torch.manual_seed(c.seed)
    moco = MoCo(SceneEncoder(tower), int(tower.output_dim), s.dim, s.queue, s.momentum, s.temperature)
    optimizer = torch.optim.Adam(
        [p for p in moco.parameters() if p.requires_grad], lr=s.lr, weight_decay=s.weight_decay
    )
    engine = worker.engine(moco, optimizer)
    state = worker.resume(engine)
    step, per_epoch = state.get("step", 0), c.steps_per_epoch
    warmup, total = s.warmup_epochs * per_epoch, s.epochs * per_epoch
    shard = ray.train.get_dataset_shard("train")
    dtype = next(p for p in engine.module.parameters()).dtype
    for epoch in range(state.get("epoch", 0), s.epochs):
        speed, sums = Throughput(), [0.0, 0.0, 0.0, 0.0]  # loss, top-1, top-5, pairs
        engine.train()
        for batch in shard.iter_torch_batches(batch_size=worker.micro_batch, drop_last=True, device=worker.device):
            lr = learning_rate(step, s.lr, warmup, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            q = to_model_input(batch["q"], c.mean, c.std).to(dtype)
            k = to_model_input(batch["k"], c.mean, c.std).to(dtype)
            loss, logits = engine(q, k, _gather)
            engine.backward(loss)
            engine.step()
            step += 1
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            n = len(q)
            sums = [
                sums[0] + loss.item() * n,
                sums[1] + float((top5[:, 0] == 0).sum()),
                sums[2] + float((top5 == 0).any(1).sum()),
                sums[3] + n,
            ]
            speed.step(n * worker.world_size)
        loss_sum, top1, top5_hits, seen = _all_sum(*sums)
        metrics = {
            "step": step,
            "epoch": epoch + 1,
            "loss": loss_sum / max(seen, 1),
            "lr": learning_rate(max(step - 1, 0), s.lr, warmup, total),
            "moco_top1": top1 / max(seen, 1),
            "moco_top5": top5_hits / max(seen, 1),
            "scene_pairs_per_s": speed.per_s,
        }
        _progress(worker, "scenes", metrics)
        worker.checkpoint(engine, metrics, {"epoch": epoch + 1, "step": step})
    worker.export(
        engine,
        "scene_encoder.pt",
        {"tower": c.tower, "mean": list(c.mean), "std": list(c.std), "shots": s.shots, "step": step},
        prefix="query.0.",
    )
