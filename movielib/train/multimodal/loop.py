"""The multimodal pretraining loop on the shared launcher (one Ray Train worker's view)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from movielib.train.launcher import Worker, all_sum, gather_with_grad, learning_rate
from movielib.train.multimodal.config import LossesSection, MultimodalModelSection, OptimSection
from movielib.train.multimodal.losses import no_gather
from movielib.train.multimodal.model import MultimodalModel, Outputs

EXPORT = "multimodal.pt"
PARTS = ("intra", "inter", "cross")


@dataclass(frozen=True)
class MultimodalLoop:
    """What the workers need: the sections, the inputs (table, model, version, width), the steps an epoch makes."""

    model: MultimodalModelSection
    losses: LossesSection
    optim: OptimSection
    inputs: dict[str, dict]
    steps_per_epoch: int

    @property
    def dims(self) -> dict[str, int]:
        return {name: meta["dim"] for name, meta in self.inputs.items()}


def retrieval_hits(out: Outputs, other: str) -> tuple[float, float]:
    """Video -> `other` retrieval within the batch by contextual features: how many valid video shots have their
    own shot's `other` feature nearest (among the batch's valid ones), and how many were asked."""
    both = (out.valid["video"] & out.valid[other]).reshape(-1)
    if not both.any():
        return 0.0, 0.0
    v = F.normalize(out.context["video"].reshape(-1, out.context["video"].shape[-1])[both].float(), dim=-1)
    o = F.normalize(out.context[other].reshape(-1, out.context[other].shape[-1])[both].float(), dim=-1)
    hits = (v @ o.T).argmax(1) == torch.arange(len(v), device=v.device)
    return float(hits.sum()), float(len(v))


def multimodal_loop(worker: Worker, c: MultimodalLoop) -> None:
    """AdamW with cosine annealing from optim.lr; losses over the global batch (gathered with gradients)."""
    import ray.train

    torch.manual_seed(c.optim.seed)
    model = MultimodalModel(c.dims, c.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=c.optim.lr, weight_decay=c.optim.weight_decay)
    engine = worker.engine(model, optimizer)
    run = worker.epochs(engine, c.optim.epochs, "multimodal", "sequences")
    total = c.optim.epochs * c.steps_per_epoch
    others = [m for m in ("audio", "language") if m in c.dims]
    train, val = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    for _ in run:
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
            trained = [trained[0] + float(parts["total"]) * n, trained[1] + n]
            run.step_done(engine, n, lr=lr, loss=float(parts["total"]), **{k: float(parts[k]) for k in PARTS})
        engine.eval()
        sums = [0.0] * (2 + 2 * len(others))  # val loss, sequences, (hits, asked) per other modality
        with torch.no_grad():
            for batch in run.batches(val, train=False):
                out = engine(batch, mask=False)
                n = len(batch["video"])
                sums[0] += float(engine.module.losses(out, c.losses, no_gather)["total"]) * n
                sums[1] += n
                for i, other in enumerate(others):
                    hits, asked = retrieval_hits(out, other)
                    sums[2 + 2 * i] += hits
                    sums[3 + 2 * i] += asked
        loss_sum, seen, *sums = all_sum(*trained, *sums)
        metrics = {"loss": loss_sum / max(seen, 1), "lr": learning_rate(max(run.step - 1, 0), c.optim.lr, 0, total)}
        if sums[1]:
            metrics["val_loss"] = sums[0] / sums[1]
        for i, other in enumerate(others):
            if sums[3 + 2 * i]:
                metrics[f"val_video_to_{other}_top1"] = sums[2 + 2 * i] / sums[3 + 2 * i]
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
