"""Multimodal pretraining sequences/s: the launcher (Ray Train, one worker, DeepSpeed, Ray Data feeding) running the
multimodal loop vs a plain single-process torch loop, same model, data, batch and threads; and what k (shots per
sequence, Table 2's 10 / 30 / 60) costs in the plain loop. Both sides train two epochs and time the second from the
end of its first step to the end of its last (`Throughput` in movielib/train/launcher.py)."""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from bench.common import Row, Size, local_ray, sized
from movielib.train.launcher import DeepSpeedSection, RunSection, ScalingSection, Throughput, launch
from movielib.train.multimodal.config import LossesSection, MultimodalModelSection, OptimSection
from movielib.train.multimodal.loop import MultimodalLoop, multimodal_loop
from movielib.train.multimodal.model import MultimodalModel

THREADS = 1  # per side: the other core is left to Ray's own processes and Ray Data
DIMS = {"video": 512, "audio": 128, "language": 384}  # CLIP ViT-B/32, log-mel statistics, all-MiniLM-L6-v2


def _sequences(n: int, k: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, dim in DIMS.items():
        out[name] = rng.normal(size=(n, k, dim)).astype(np.float32)
        out[f"{name}_valid"] = rng.random((n, k)) > 0.1
    return out


def _plain(model_cfg: MultimodalModelSection, data: dict[str, np.ndarray], batch: int) -> float:
    """The same model, losses and optimizer in one process, batches sliced from the arrays; sequences/s."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = MultimodalModel(DIMS, model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    n = len(data["video"]) // batch * batch
    for _epoch in range(2):
        speed = Throughput()
        for i in range(0, n, batch):
            parts = model.losses(
                model({k: torch.from_numpy(v[i : i + batch]) for k, v in data.items()}), LossesSection()
            )
            opt.zero_grad()
            parts["total"].backward()
            opt.step()
            speed.step(batch)
    return speed.per_s


def _trainer(model_cfg: MultimodalModelSection, data: dict[str, np.ndarray], batch: int, folder: str) -> float:
    import ray.data

    rows = [{k: v[i] for k, v in data.items()} for i in range(len(data["video"]))]
    train = ray.data.from_items(rows).repartition(8).materialize()
    val = ray.data.from_items(rows[:batch]).materialize()
    train.context.enable_progress_bars = False
    loop = MultimodalLoop(
        model_cfg,
        LossesSection(),
        OptimSection(batch=batch, epochs=2),
        {name: {"table": "-", "model": "-", "version": "", "dim": d} for name, d in DIMS.items()},
        len(rows) // batch,
        {name: ([0.0] * d, [1.0] * d) for name, d in DIMS.items()},  # the inputs are standard normal: identity
    )
    result = launch(
        multimodal_loop,
        loop,
        ScalingSection(workers=1, cpus_per_worker=THREADS),
        DeepSpeedSection(),
        RunSection(folder=folder, name="bench"),
        batch,
        datasets={"train": train, "val": val},
        stage="multimodal",
    )
    return float(result.metrics["sequences_per_s"])


def run(size: Size = "full") -> list[Row]:
    width, batch = sized(size, (256, 32), (128, 16), (32, 4))
    model_cfg = MultimodalModelSection(shots=30, width=width, layers=3, heads=8, dropout=0.1)
    data = _sequences(8 * batch, 30)
    plain = _plain(model_cfg, data, batch)
    with local_ray(), tempfile.TemporaryDirectory() as folder:
        ours = _trainer(model_cfg, data, batch, folder)
    rows = [
        Row(
            "train_multimodal",
            f"multimodal step, k 30, width {width}, 3 layers, batch {batch}, 1 worker, {THREADS} thread",
            ours,
            plain,
            "sequences/s",
            target=0.85,
            note="Ray Train + DeepSpeed + Ray Data vs a plain torch loop",
        )
    ]
    base = None
    for k in (10, 30, 60):  # Table 2's lengths: shots/s in the plain loop, against k = 10
        m = MultimodalModelSection(shots=k, width=width, layers=3, heads=8, dropout=0.1)
        shots = _plain(m, _sequences(4 * batch, k), batch) * k
        base = base or shots
        rows.append(Row("train_multimodal", f"k = {k}: shots/s vs k = 10", shots, base, "shots/s", note="plain loop"))
    return rows
