"""Scene-contrastive training samples/s: the launcher (Ray Train, one worker, DeepSpeed, Ray Data feeding) running
Movies2Scenes' MoCo loop vs a plain single-process torch loop, same model, data, batch and threads. Both train
two epochs; the second is timed from the end of its first step to the end of its last (start-up, the first
epoch and the data iterator's start are left out of both: `Throughput` in movielib/train/launcher.py)."""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from bench.common import Row, Size, local_ray, sized
from movielib.models.clip import ClipSpec, FramePreprocess, normalize_frames
from movielib.train.launcher import DeepSpeedSection, RunSection, ScalingSection, Throughput, launch
from movielib.train.movies2scenes.config import ScenesSection
from movielib.train.movies2scenes.encoder import SceneEncoder, tower_config
from movielib.train.movies2scenes.loops import ScenesLoop, scene_tower, scenes_loop
from movielib.train.movies2scenes.moco import MoCo

THREADS = 1  # per side: the other core is left to Ray's own processes and Ray Data, as the README advises


def _scenes(n: int, shots: int, side: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.integers(0, 256, (n, shots, side, side, 3), dtype=np.uint8) for k in ("q", "k")}


def _plain(config: ScenesLoop, data: dict[str, np.ndarray], batch: int) -> float:
    """The same model and optimizer in one process, batches sliced from the arrays; pairs/s of the 2nd epoch."""
    torch.set_num_threads(THREADS)
    s = config.scenes
    tower = scene_tower(config.clip)
    torch.manual_seed(config.seed)
    moco = MoCo(SceneEncoder(tower), int(tower.output_dim), s.dim, s.queue, s.momentum, s.temperature)
    opt = torch.optim.Adam([p for p in moco.parameters() if p.requires_grad], lr=s.lr, weight_decay=s.weight_decay)
    n = len(data["q"]) // batch * batch
    for _epoch in range(2):
        speed = Throughput()
        for i in range(0, n, batch):
            q = normalize_frames(torch.from_numpy(data["q"][i : i + batch]), config.mean, config.std)
            k = normalize_frames(torch.from_numpy(data["k"][i : i + batch]), config.mean, config.std)
            loss, _ = moco(q, k)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            speed.step(batch)
    return speed.per_s


def _trainer(config: ScenesLoop, data: dict[str, np.ndarray], batch: int, folder: str) -> float:
    import ray.data

    ds = ray.data.from_items([{"q": q, "k": k} for q, k in zip(data["q"], data["k"])]).repartition(8).materialize()
    ds.context.enable_progress_bars = False
    result = launch(
        scenes_loop,
        config,
        ScalingSection(workers=1, cpus_per_worker=THREADS),
        DeepSpeedSection(),
        RunSection(folder=folder, name="bench"),
        batch,
        datasets={"train": ds},
        stage="scenes",
    )
    return float(result.metrics["scene_pairs_per_s"])


def _case(model: str, shots: int, batch: int, n: int) -> Row:
    spec = ClipSpec(model, random_weights=True)
    pre = FramePreprocess.for_spec(spec)
    side = pre.size if isinstance(pre.size, int) else pre.size[0]
    config = ScenesLoop(
        ScenesSection(shots=shots, queue=1024, batch=batch, epochs=2, warmup_epochs=0, lr=1e-4),
        0,
        spec,
        tower_config(spec.validate().model_cfg),
        tuple(pre.mean),
        tuple(pre.std),
        n // batch,
    )
    data = _scenes(n, shots, side)
    plain = _plain(config, data, batch)
    with local_ray(), tempfile.TemporaryDirectory() as folder:
        ours = _trainer(config, data, batch, folder)
    return Row(
        "train_scenes",
        f"MoCo step, {model}, {shots} shots x {side}px, batch {batch}, 1 worker, {THREADS} threads",
        ours,
        plain,
        "scene pairs/s",
        target=0.85,
        note="Ray Train + DeepSpeed (ZeRO auto: 0 on one worker) + Ray Data vs a plain torch loop",
    )


def run(size: Size = "full") -> list[Row]:
    """The tiny tower (a step is ~16 ms: the fixed per-step costs show) and, unless quick, the real ViT-B/32
    (random init: the same compute as trained weights) at 3 shots (a 9-shot step takes ~15 s here)."""
    rows = [_case("movielib-tiny-clip", 3, 16, sized(size, 1024, 1024, 64))]
    if size == "full":
        rows.append(_case("ViT-B-32-quickgelu", 3, 8, 32))
    return rows
