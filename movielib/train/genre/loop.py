"""The genre classifier's loop on the shared launcher (one Ray Train worker's view): §4.2's coarse stage."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from movielib.metrics import evaluate
from movielib.train.genre.config import GenreModelSection, GenreOptimSection
from movielib.train.genre.model import GenreModel, genre_loss
from movielib.train.launcher import Worker, all_sum

EXPORT = "genre.pt"


@dataclass(frozen=True)
class GenreLoop:
    """What the workers need: the sections, the experts (table, model, version, width) and the genre names."""

    model: GenreModelSection
    optim: GenreOptimSection
    experts: dict[str, dict]
    genres: list[str]

    @property
    def dims(self) -> dict[str, int]:
        return {name: meta["dim"] for name, meta in self.experts.items()}


def gather_rows(x: np.ndarray) -> np.ndarray:
    """Every worker's rows, concatenated (a validation pass's predictions: AU-PRC needs them all)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, x)
    return np.concatenate(parts)


def genre_loop(worker: Worker, c: GenreLoop) -> None:
    """Adam with AMSGrad at optim.lr, binary cross-entropy with logits; AU-PRC and P / R / F1 at the threshold on
    the held-out trailers every epoch."""
    import ray.train

    torch.manual_seed(c.optim.seed)
    model = GenreModel(c.dims, len(c.genres), c.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.optim.lr, amsgrad=True)
    engine = worker.engine(model, optimizer)
    run = worker.epochs(engine, c.optim.epochs, "genre", "trailers")
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    for _ in run:
        engine.train()
        trained = [0.0, 0.0]
        for batch in run.batches(train):
            loss = genre_loss(engine(batch).logits, batch["targets"])
            engine.backward(loss)
            engine.step()
            n = len(batch["targets"])
            trained = [trained[0] + float(loss) * n, trained[1] + n]
            run.step_done(engine, n, loss=float(loss))
        engine.eval()
        scores, targets = [], []
        with torch.no_grad():
            for batch in run.batches(val, train=False):
                scores.append(torch.sigmoid(engine(batch).logits.float()).cpu().numpy())
                targets.append(batch["targets"].cpu().numpy())
        loss_sum, seen = all_sum(*trained)
        metrics = {"loss": loss_sum / max(seen, 1)}
        y = gather_rows(np.concatenate(targets) if targets else np.zeros((0, len(c.genres)), np.float32))
        p = gather_rows(np.concatenate(scores) if scores else np.zeros((0, len(c.genres)), np.float32))
        if len(y):
            metrics |= {f"val_{k}": v for k, v in evaluate("multilabel", y, p, c.optim.threshold).items()}
        run.end_epoch(engine, metrics)
    worker.export(
        engine,
        EXPORT,
        {
            "dims": c.dims,
            "experts": c.experts,
            "genres": c.genres,
            "model": c.model.model_dump(),
            "threshold": c.optim.threshold,
            "step": run.step,
        },
    )
