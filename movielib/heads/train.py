"""One head trained on a HeadData's splits (read block by block), reporting every epoch; the exported head and how
it predicts.

The loss follows the task: BCE with logits (multi-label; `pos_weight` weighs each label's positives by
its negatives / positives in the training split), cross-entropy (single-label), MSE (regression).
Predictions are probabilities (multi-label: sigmoid; single-label: softmax) or values.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from movielib.heads.data import HeadData, Split
from movielib.heads.models import build_head
from movielib.metrics import evaluate

PRIMARY = {"multilabel": ("val_map", "max"), "single": ("val_top1", "max"), "regression": ("val_mse", "min")}


def _loss(task: str, logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
    if task == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y, pos_weight=pos_weight)
    if task == "single":
        return F.cross_entropy(logits, y)
    return F.mse_loss(logits[:, 0], y)


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray | Split, task: str, batch: int = 4096) -> np.ndarray:
    """Probabilities (multi-label, single-label) or values (regression) for (n, in_dim) features, or a split's
    rows in order."""
    model.eval()
    blocks = (b["x"] for b in x) if isinstance(x, Split) else [x]
    # blocks read from Arrow are read-only views: a writable copy only of those (torch refuses to share them quietly)
    out = [
        model(torch.from_numpy(np.require(b[i : i + batch], requirements="W")))
        for b in blocks
        for i in range(0, len(b), batch)
    ]
    logits = torch.cat(out) if out else torch.zeros(0, 1)
    if task == "multilabel":
        return torch.sigmoid(logits).numpy()
    if task == "single":
        return torch.softmax(logits, dim=1).numpy()
    return logits[:, 0].numpy()


def head_spec(params: dict, data: HeadData) -> dict:
    """What rebuilds the head: its name, sizes and the hyperparameters that shape it."""
    return {
        "name": params["name"],
        "in_dim": data.in_dim,
        "out_dim": data.out_dim,
        "width": params.get("width"),
        "dropout": params.get("dropout"),
    }


def make_head(spec: dict) -> torch.nn.Module:
    return build_head(spec["name"], spec["in_dim"], spec["out_dim"], spec.get("width"), spec.get("dropout"))


def optimizer(model: torch.nn.Module, params: dict) -> torch.optim.Optimizer:
    """AdamW, or SGD with momentum (params["optimizer"])."""
    if params.get("optimizer", "adamw") == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=params["lr"],
            momentum=params.get("momentum", 0.9),
            weight_decay=params["weight_decay"],
        )
    return torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])


def passes_per_epoch(n: int, params: dict) -> int:
    """Passes over `n` training rows per reported epoch, so that the run makes at least params["min_steps"]
    optimizer steps (1 for a set large enough)."""
    batches = max(1, math.ceil(n / params["batch_size"]))
    return max(1, math.ceil(params.get("min_steps", 0) / (batches * params["epochs"])))


def fit(data: HeadData, params: dict, report: Callable[[dict, dict], None], state: dict | None = None) -> None:
    """Train for params["epochs"] reported epochs (each `passes_per_epoch` passes); after each epoch
    `report(metrics, state)` with the val metrics and a state (model, optimizer, epoch, test predictions) that
    `state=` resumes from. With params["patience"], stop once the val metric has not improved for that many."""
    torch.manual_seed(params.get("seed", 0))
    model = make_head(head_spec(params, data))
    opt = optimizer(model, params)
    first = 0
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        first = state["epoch"]
    train, val = data.splits["train"], data.splits["val"]
    pos_weight = None
    if data.task == "multilabel" and params.get("pos_weight"):
        positives = torch.from_numpy(sum(b["y"].sum(0) for b in train))  # streamed: one block at a time
        pos_weight = ((train.rows - positives) / positives.clamp(min=1)).clamp(min=1.0)
    g = torch.Generator().manual_seed(params.get("seed", 0))
    passes = passes_per_epoch(train.rows, params)
    metric, mode = PRIMARY[data.task]
    best, stale = None, 0
    for epoch in range(first, params["epochs"]):
        model.train()
        total = 0.0
        for _ in range(passes):
            for x, y in train.batches(params["batch_size"], g):
                loss = _loss(data.task, model(x), y, pos_weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(x) / passes
        scores = predict(model, val, data.task)
        threshold = params.get("threshold", 0.5)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": total / max(train.rows, 1),
            **{f"val_{k}": v for k, v in evaluate(data.task, val.targets(), scores, threshold).items()},
        }
        report(
            metrics,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "test_predictions": predict(model, data.splits["test"], data.task),
            },
        )
        value = metrics.get(metric)
        if value is not None and np.isfinite(value):
            if best is None or (value > best if mode == "max" else value < best):
                best, stale = value, 0
            else:
                stale += 1
        if params.get("patience") and stale >= params["patience"]:
            break


def save_state(state: dict, path: str) -> None:
    """A trial's epoch state as plain tensors and Python values (what `weights_only=True` loads back)."""
    torch.save({**state, "test_predictions": torch.from_numpy(np.asarray(state["test_predictions"]))}, path)


def load_state(path: str) -> dict:
    """A state `save_state` wrote; loaded with weights_only: a checkpoint file never runs code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {**state, "test_predictions": state["test_predictions"].numpy()}


def _plain(value):
    """numpy scalars (Tune's sampled values) as Python ones, so the export loads with weights_only."""
    return value.item() if isinstance(value, np.generic) else value


def export_bytes(state: dict, params: dict, data: HeadData) -> bytes:
    """The head as Serve loads it: weights, the head's spec, task, label names and the features it expects."""
    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": state["model"],
            "head": head_spec(params, data),
            "task": data.task,
            "label_names": data.label_names,
            "features": data.features,
            "feature_model": data.feature_model,
            "level": data.level,
            "threshold": _plain(params.get("threshold", 0.5)),
            "params": {k: _plain(v) for k, v in params.items()},
        },
        buf,
    )
    return buf.getvalue()


def load_head(blob: bytes) -> tuple[torch.nn.Module, dict]:
    """An exported head (plain torch) and its metadata; loaded with weights_only: a head file never runs code."""
    saved = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = make_head(saved["head"])
    model.load_state_dict(saved["state_dict"])
    return model.eval(), {k: v for k, v in saved.items() if k != "state_dict"}
