"""The multimodal pretraining loop on the shared launcher (one Ray Train worker's view)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from movielib.train.launcher import Worker, all_sum, gather_with_grad, learning_rate
from movielib.train.multimodal.config import LossesSection, MultimodalModelSection, OptimSection
from movielib.train.multimodal.losses import no_gather
from movielib.train.multimodal.model import MultimodalModel, Outputs
from movielib.train.retrieval import in_set_top1

EXPORT = "multimodal.pt"
PARTS = ("intra", "inter", "cross")


@dataclass(frozen=True)
class MultimodalLoop:
    """What the workers need: the sections, the inputs (table, model, version, width), the steps an epoch makes and
    the inputs' statistics (the training movies' mean and std per dimension, train.tables.feature_stats)."""

    model: MultimodalModelSection
    losses: LossesSection
    optim: OptimSection
    inputs: dict[str, dict]
    steps_per_epoch: int
    stats: dict[str, tuple[list[float], list[float]]]

    @property
    def dims(self) -> dict[str, int]:
        return {name: meta["dim"] for name, meta in self.inputs.items()}


class Retrieval:
    """Video -> `other` retrieval by contextual features over candidate sets of a fixed size (chance 1/candidates
    whatever the batch): the valid (video, `other`) shots of the validation pass in order, cut into sets of
    `candidates` (a batch's last few carried into the next; the pass's last few left out), each video shot's own
    `other` feature to be found nearest among its set's."""

    def __init__(self, other: str, candidates: int):
        self.other, self.candidates = other, candidates
        self.hits = self.asked = 0.0
        self._left: tuple[torch.Tensor, torch.Tensor] | None = None

    def add(self, out: Outputs) -> None:
        both = (out.valid["video"] & out.valid[self.other]).reshape(-1)
        v = out.context["video"].reshape(-1, out.context["video"].shape[-1])[both].float()
        o = out.context[self.other].reshape(-1, out.context[self.other].shape[-1])[both].float()
        if self._left is not None:
            v, o = torch.cat([self._left[0], v]), torch.cat([self._left[1], o])
        hits, usable = in_set_top1(v, o, self.candidates)
        self._left = (v[usable:], o[usable:])
        self.hits, self.asked = self.hits + hits, self.asked + usable


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The torch seed of one worker's epoch: masks and dropout differ between workers and epochs, and a resumed
    epoch draws what it drew the first time."""
    return (seed * 1_000_003 + epoch) * 4099 + rank


def multimodal_loop(worker: Worker, c: MultimodalLoop) -> None:
    """AdamW with cosine annealing from optim.lr; losses over the global batch (gathered with gradients)."""
    import ray.train

    torch.manual_seed(c.optim.seed)  # the same initial weights on every worker
    model = MultimodalModel(c.dims, c.model).standardize(c.stats)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.optim.lr, weight_decay=c.optim.weight_decay)
    engine = worker.engine(model, optimizer)
    run = worker.epochs(engine, c.optim.epochs, "multimodal", "sequences")
    total = c.optim.epochs * c.steps_per_epoch
    others = [m for m in ("audio", "language") if m in c.dims]
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    for epoch in run:
        torch.manual_seed(epoch_seed(c.optim.seed, epoch, worker.rank))
        engine.train()
        trained = [0.0, 0.0]  # loss x sequences, sequences (this worker)
        for batch in run.batches(train):
            lr = learning_rate(run.step, c.optim.lr, 0, total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            parts = engine.module.losses(engine(batch), c.losses, gather_with_grad)
            engine.backward(parts["total"])
            engine.step()
            n = len(batch["video"])
            total, terms = parts["total"].item(), {k: parts[k].item() for k in PARTS}
            trained = [trained[0] + total * n, trained[1] + n]
            run.step_done(engine, n, lr=lr, loss=total, **terms)
        engine.eval()
        sums = [0.0, 0.0]  # val loss, sequences
        retrieval = [Retrieval(other, c.optim.val_candidates) for other in others]
        masks = torch.Generator().manual_seed(epoch_seed(c.optim.seed, -1, worker.rank))  # the same every epoch
        with torch.no_grad():
            for batch in run.batches(val, train=False):
                # the loss masked as in training (the intra-modal term needs [MASK]), the same masks every epoch;
                # retrieval on the unmasked sequence, as embedding sees it
                masked = engine(batch, mask=True, generator=masks)
                n = len(batch["video"])
                sums[0] += float(engine.module.losses(masked, c.losses, no_gather)["total"]) * n
                sums[1] += n
                out = engine(batch, mask=False)
                for r in retrieval:
                    r.add(out)
        sums += [x for r in retrieval for x in (r.hits, r.asked)]
        loss_sum, seen, *sums = all_sum(*trained, *sums)
        metrics = {"loss": loss_sum / max(seen, 1), "lr": learning_rate(max(run.step - 1, 0), c.optim.lr, 0, total)}
        if sums[1]:
            metrics["val_loss"] = sums[0] / sums[1]
        for i, other in enumerate(others):
            if sums[3 + 2 * i]:
                metrics[f"val_video_to_{other}_top1"] = sums[2 + 2 * i] / sums[3 + 2 * i]
                metrics[f"val_video_to_{other}_top1_chance"] = 1 / c.optim.val_candidates
        run.end_epoch(engine, metrics)
    worker.export(
        engine,
        EXPORT,
        {
            "dims": c.dims,
            "inputs": c.inputs,
            "model": c.model.model_dump(),
            "losses": c.losses.model_dump(),
            "step": run.step,
        },
    )
