"""The genre model's loops on the shared launcher (one Ray Train worker's view): §4.2's coarse classifier, then
§4.4's fine-grained stage (NT-Xent between the halves of each trailer on the bottleneck)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from movielib.metrics import evaluate, nearest_neighbour_hits, per_label, silhouette_by_label
from movielib.runtime import read_bytes
from movielib.train.genre.config import FineGrainedSection, GenreModelSection, GenreOptimSection
from movielib.train.genre.losses import nt_xent
from movielib.train.genre.model import GenreModel, genre_loss, load_genre, mlp
from movielib.train.launcher import Worker, all_sum, gather_rows, gather_with_grad, learning_rate

EXPORT = "genre.pt"
FINE_EXPORT = "genre-finegrained.pt"


@dataclass(frozen=True)
class GenreLoop:
    """What the workers need: the sections, the experts (table, model, version, width), the genre names and the
    experts' input statistics over the training trailers (mean, std per dimension)."""

    model: GenreModelSection
    optim: GenreOptimSection
    experts: dict[str, dict]
    genres: list[str]
    stats: dict[str, tuple[list[float], list[float]]]

    @property
    def dims(self) -> dict[str, int]:
        return {name: meta["dim"] for name, meta in self.experts.items()}


def genre_figures(y: np.ndarray, p: np.ndarray, genres: list[str], threshold: float) -> dict:
    """Per genre its held-out AP and F1 (`val_ap/<genre>`, `val_f1/<genre>`: a panel of curves each, a TensorBoard
    group each), and the genre that lags (lowest AP). A genre without a held-out trailer has neither figure: it is
    left out, never logged as nan."""
    out: dict = {}
    aps: dict[str, float] = {}
    for genre, f in per_label(y, p, genres, threshold).items():
        if f["positives"]:
            aps[genre] = f["ap"]
            out |= {f"val_ap/{genre}": f["ap"], f"val_f1/{genre}": f["f1"]}
    if aps:
        lagging = min(aps, key=aps.get)
        out |= {"val_ap_lowest": aps[lagging], "val_lagging_genre": lagging}
    return out


def genre_loop(worker: Worker, c: GenreLoop) -> None:
    """Adam with AMSGrad at optim.lr, binary cross-entropy with logits; AU-PRC and P / R / F1 at the threshold on
    the held-out trailers every epoch."""
    import ray.train

    torch.manual_seed(c.optim.seed)
    model = GenreModel(c.dims, len(c.genres), c.model).standardize(c.stats)
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
            value = loss.item()
            trained = [trained[0] + value * n, trained[1] + n]
            run.step_done(engine, n, loss=value)
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
            metrics |= genre_figures(y, p, c.genres, c.optim.threshold)
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


@dataclass(frozen=True)
class FineGrainedLoop:
    """The fine-grained stage: the coarse run's export to start from, its sections, the steps an epoch makes."""

    coarse: str  # <run folder>/genre.pt
    fine: FineGrainedSection
    steps_per_epoch: int


class FineTune(torch.nn.Module):
    """The coarse model with the projection heads m, n on its bottleneck (dropped after training)."""

    fp32_modules = ("genre.norm",)

    def __init__(self, genre: GenreModel, projection: int):
        super().__init__()
        self.genre = genre
        self.projection = mlp([genre.m.bottleneck, genre.m.head_hidden, projection])

    def forward(self, batch: dict[str, torch.Tensor], prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One view (prefix a_ or b_) -> its bottleneck embedding and its projection."""
        view = {k[len(prefix) :]: v for k, v in batch.items() if k.startswith(prefix)}
        embedding = self.genre(view).embedding
        return embedding, self.projection(embedding)


def view_figures(engine, batches, max_trailers: int) -> dict[str, float]:
    """On the held-out trailers (the first `max_trailers` of them, gathered to rank 0 and computed there once): how
    often a trailer's first half has its own second half nearest (cosine), and the silhouette of the trailers'
    embeddings (mean of the halves) grouped by genre set (Fig. 6's measure). Other ranks get {}; a figure that is
    undefined (each held-out trailer a genre set of its own, or one set for all) is left out."""
    a, b, y = [], [], []
    with torch.no_grad():
        for batch in batches:
            a.append(engine(batch, "a_")[0].float().cpu().numpy())
            b.append(engine(batch, "b_")[0].float().cpu().numpy())
            y.append(batch["targets"].cpu().numpy())
    d = engine.module.genre.m.bottleneck
    rows = gather_rows(np.concatenate([np.concatenate(x) for x in (a, b, y)], axis=1) if a else None, rank0_only=True)
    if rows is None or not len(rows):
        return {}
    rows = rows[:max_trailers]
    a, b, y = rows[:, :d], rows[:, d : 2 * d], rows[:, 2 * d :]
    groups = ["|".join(map(str, np.flatnonzero(row))) for row in y]
    out = {"val_halves_top1": nearest_neighbour_hits(a, b), "val_silhouette": silhouette_by_label((a + b) / 2, groups)}
    return {k: v for k, v in out.items() if np.isfinite(v)}


def finegrained_loop(worker: Worker, c: FineGrainedLoop) -> None:
    """NT-Xent (tau) between the two halves' projections over the global batch (gathered with gradients); AdamW-free
    Adam at fine.lr with warm-up then cosine; the figures before the first step and after every epoch."""

    import ray.train

    genre, meta = load_genre(read_bytes(c.coarse, worker.s3))
    genre.train()
    torch.manual_seed(0)
    model = FineTune(genre, c.fine.projection)
    optimizer = torch.optim.Adam(model.parameters(), lr=c.fine.lr)
    engine = worker.engine(model, optimizer)
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    engine.eval()  # the coarse model's figures, before a resumed run loads its checkpoint
    before = {f"{k}_before": v for k, v in view_figures(engine, worker.batches(val), c.fine.max_trailers).items()}
    run = worker.epochs(engine, c.fine.epochs, "finegrained", "trailers")
    total, warmup = c.fine.epochs * c.steps_per_epoch, c.fine.warmup_epochs * c.steps_per_epoch
    for _ in run:
        engine.train()
        trained = [0.0, 0.0]
        for batch in run.batches(train):
            lr = learning_rate(run.step, c.fine.lr, warmup, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = nt_xent(engine(batch, "a_")[1], engine(batch, "b_")[1], c.fine.tau, gather_with_grad)
            engine.backward(loss)
            engine.step()
            n = len(batch["targets"])
            value = loss.item()
            trained = [trained[0] + value * n, trained[1] + n]
            run.step_done(engine, n, loss=value, lr=lr)
        engine.eval()
        loss_sum, seen = all_sum(*trained)
        after = view_figures(engine, run.batches(val, train=False), c.fine.max_trailers)
        run.end_epoch(engine, {"loss": loss_sum / max(seen, 1), **before, **after})
    worker.export(engine, FINE_EXPORT, meta, prefix="genre.")
