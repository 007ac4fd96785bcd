"""The per-worker training loops of steps 1 and 3, on the launcher (Ray Train + DeepSpeed).

Each epoch streams the worker's shard of the Ray Dataset the driver built, reports its metrics with
a checkpoint (model, optimizer and, for MoCo, the queue and key encoder: they are buffers and
parameters of the module), and a restarted run continues after the last finished epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from movielib.models.clip import ClipSpec, normalize_frames
from movielib.train.launcher import Worker, all_sum, gather_rows, learning_rate
from movielib.train.movies2scenes.config import ScenesSection, SimilarityModelSection
from movielib.train.movies2scenes.encoder import SceneEncoder
from movielib.train.movies2scenes.moco import MoCo
from movielib.train.movies2scenes.similarity import MovieSimilarity
from movielib.train.retrieval import in_set_top1


def _gather(keys: torch.Tensor) -> torch.Tensor:
    """Every worker's keys, in rank order (the reference MoCo's concat_all_gather)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys
    out = [torch.zeros_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(out, keys.contiguous())
    return torch.cat(out)


@dataclass(frozen=True)
class SimilarityLoop:
    """What step 1's workers need: the model section, the features' width, the seed."""

    model: SimilarityModelSection
    in_dim: int
    seed: int
    stats: tuple[list[float], list[float]] | None = None  # the training shots' feature mean and std per dimension


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
    validate: bool = False  # a "val" dataset of the held-out movies' scene pairs


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
    if c.stats:
        model.encoder.norm.set(*c.stats)
    engine = worker.engine(model, torch.optim.SGD(model.parameters(), lr=m.lr))
    run = worker.epochs(engine, m.epochs, "similarity", "pairs")
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    for _ in run:
        loss_sum, seen = 0.0, 0
        engine.train()
        for batch in run.batches(train):
            logit = engine(batch["x1"], batch["x2"], batch["m1"], batch["m2"])
            loss = F.binary_cross_entropy_with_logits(logit, batch["label"].float())
            engine.backward(loss)
            engine.step()
            hits = float(((logit > 0).float() == batch["label"].float()).float().mean())
            run.step_done(engine, len(logit), loss=loss.item(), lr=m.lr, train_accuracy=hits)
            loss_sum, seen = loss_sum + loss.item() * len(logit), seen + len(logit)
        correct, total = 0, 0
        engine.eval()
        with torch.no_grad():
            for batch in run.batches(val, train=False):
                logit = engine(batch["x1"], batch["x2"], batch["m1"], batch["m2"])
                correct += int(((logit > 0).float() == batch["label"].float()).sum())
                total += len(logit)
        loss_sum, seen, correct, total = all_sum(loss_sum, seen, correct, total)
        run.end_epoch(
            engine,
            {
                "loss": loss_sum / max(seen, 1),
                "lr": m.lr,
                "similarity_accuracy": correct / total if total else float("nan"),
            },
        )
    # plain data beside the weights: it loads with weights_only
    worker.export(engine, "similarity.pt", {"model": m.model_dump(), "in_dim": c.in_dim})


def scene_tower(clip: ClipSpec) -> torch.nn.Module:
    """The CLIP image tower the tagging job used (open_clip; weights from the config's path / URI, or random)."""
    from movielib.models.clip import load_clip

    return load_clip(clip).model.visual


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
    run = worker.epochs(engine, s.epochs, "scenes", "scene_pairs")
    warmup, total = s.warmup_epochs * c.steps_per_epoch, s.epochs * c.steps_per_epoch
    shard = ray.train.get_dataset_shard("train")
    val = ray.train.get_dataset_shard("val") if c.validate else None
    for _ in run:
        sums = [0.0, 0.0, 0.0, 0.0]  # loss, top-1, top-5, pairs
        engine.train()
        for batch in run.batches(shard):
            lr = learning_rate(run.step, s.lr, warmup, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            q = normalize_frames(batch["q"], c.mean, c.std)  # fp32: MoCo casts each side at its encoder
            k = normalize_frames(batch["k"], c.mean, c.std)
            loss, logits = engine(q, k, _gather)
            engine.backward(loss)
            engine.step()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            n = len(q)
            top1_hits, top5_hits = float((top5[:, 0] == 0).sum()), float((top5 == 0).any(1).sum())
            run.step_done(engine, n, loss=loss.item(), lr=lr, moco_top1=top1_hits / n)
            sums = [sums[0] + loss.item() * n, sums[1] + top1_hits, sums[2] + top5_hits, sums[3] + n]
        engine.eval()
        held, pairs = [0.0, 0.0, 0.0], []  # loss, top-1 hits, pairs of the held-out movies against the queue
        for batch in run.batches(val, train=False) if val is not None else ():
            loss, logits, q, k = engine.module.score(
                normalize_frames(batch["q"], c.mean, c.std), normalize_frames(batch["k"], c.mean, c.std)
            )
            n = len(logits)
            held = [held[0] + loss.item() * n, held[1] + float((logits.argmax(1) == 0).sum()), held[2] + n]
            pairs.append(torch.cat([q, k], dim=1).cpu().numpy())
        pairs = gather_rows(np.concatenate(pairs) if pairs else None, rank0_only=True)  # every worker's, on rank 0
        loss_sum, top1, top5_hits, seen, *held = all_sum(*sums, *held)
        metrics = {
            "loss": loss_sum / max(seen, 1),
            "lr": learning_rate(max(run.step - 1, 0), s.lr, warmup, total),
            "moco_top1": top1 / max(seen, 1),
            "moco_top5": top5_hits / max(seen, 1),
        }
        if held[2]:  # the key among the queue's: chance 1 / (1 + queue)
            metrics |= {"val_loss": held[0] / held[2], "val_moco_top1": held[1] / held[2]}
            metrics["val_moco_top1_chance"] = 1 / (1 + s.queue)
        if pairs is not None and len(pairs):  # rank 0: the held-out pairs among each other, by the current encoders
            q, k = torch.from_numpy(pairs).chunk(2, dim=1)
            hits, asked = in_set_top1(q, k, s.val_candidates)
            if asked:
                metrics |= {"val_scene_top1": hits / asked, "val_scene_top1_chance": 1 / s.val_candidates}
        run.end_epoch(engine, metrics)
    worker.export(
        engine,
        "scene_encoder.pt",
        {"tower": c.tower, "mean": list(c.mean), "std": list(c.std), "shots": s.shots, "step": run.step},
        prefix="query.0.",
    )
