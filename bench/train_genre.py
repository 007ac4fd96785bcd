"""The genre model: trainer trailers/s against a plain torch loop on the same model and data, and the motion
feature's cost per shot against the decode pass it rides on.

1. The launcher (Ray Train, one worker, DeepSpeed, Ray Data feeding) runs the coarse genre loop; the plain loop runs
   the same model, loss and optimizer in one process on the same trailers; both train two epochs and time the second
   from the end of its first step (`Throughput`).
2. The motion feature (FlowStats over each shot's sampled frames) against the one decode pass (decode + detect +
   sample + crop) that produced those frames, per shot, on a generated 480p clip.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.common import Row, Size, best_of, local_ray, sized, video
from movielib.train.config import TrainRunSection
from movielib.train.genre.config import GenreModelSection, GenreOptimSection
from movielib.train.genre.loop import GenreLoop, genre_loop
from movielib.train.genre.model import GenreModel, genre_loss
from movielib.train.launcher import DeepSpeedSection, ScalingSection, Throughput, launch

THREADS = 1  # per side: the other core is left to Ray's own processes and Ray Data
DIMS = {"image": 512, "scene": 179, "audio": 128, "motion": 16}  # CLIP ViT-B/32, scores, log-mel stats, flow stats


def trailers(n: int, clips: int, genres: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, dim in DIMS.items():
        out[name] = rng.normal(size=(n, clips, dim)).astype(np.float32)
        out[f"{name}_valid"] = rng.random((n, clips)) > 0.1
    out["targets"] = (rng.random((n, genres)) < 0.2).astype(np.float32)
    return out


def stats(data: dict[str, np.ndarray]) -> dict[str, tuple[list[float], list[float]]]:
    """Each expert's mean and std per dimension over its present clips (what the job computes with Ray Data)."""
    out = {}
    for name, dim in DIMS.items():
        x = data[name].reshape(-1, dim)[data[f"{name}_valid"].reshape(-1)]
        out[name] = (x.mean(0).tolist(), x.std(0).tolist())
    return out


def plain(m: GenreModelSection, data: dict[str, np.ndarray], batch: int, genres: int, device: str = "cpu") -> float:
    """The baseline: the same model, loss and Adam (AMSGrad) in one process, bf16 autocast on a GPU, each batch
    copied from host memory (pinned on a GPU); two epochs, the second timed from the end of its first step."""
    if device == "cpu":
        torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = GenreModel(DIMS, genres, m).standardize(stats(data)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-5, amsgrad=True)
    host = {k: torch.from_numpy(v) for k, v in data.items()}
    host = {k: v.pin_memory() for k, v in host.items()} if device == "cuda" else host
    n = len(data["targets"]) // batch * batch
    for _epoch in range(2):
        speed = Throughput()
        for i in range(0, n, batch):
            step = {k: v[i : i + batch].to(device, non_blocking=True) for k, v in host.items()}
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                loss = genre_loss(model(step).logits, step["targets"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            speed.step(batch)
    return speed.per_s


def trainer(
    m: GenreModelSection, data: dict[str, np.ndarray], batch: int, genres: int, folder: str, gpu: bool = False, **run
) -> dict:
    """The launcher side: one worker (a GPU and bf16 with `gpu`), Ray Data feeding; the run's metrics. `run`:
    TrainRunSection fields (name, prefetch_batches, shuffle_buffer)."""
    import ray.data

    rows = [{k: v[i] for k, v in data.items()} for i in range(len(data["targets"]))]
    train = ray.data.from_items(rows).repartition(8).materialize()
    val = ray.data.from_items(rows[:batch]).materialize()
    train.context.enable_progress_bars = False
    loop = GenreLoop(
        m,
        GenreOptimSection(batch=batch, epochs=2),
        {name: {"table": "-", "model": "-", "version": "", "dim": d} for name, d in DIMS.items()},
        [f"genre-{g}" for g in range(genres)],
        stats(data),
    )
    result = launch(
        genre_loop,
        loop,
        ScalingSection(workers=1, cpus_per_worker=THREADS, gpus_per_worker=1 if gpu else 0),
        DeepSpeedSection(precision="bf16" if gpu else "auto"),
        TrainRunSection(**{"folder": folder, "name": "bench", **run}),
        batch,
        datasets={"train": train, "val": val},
        stage="genre",
    )
    return result.metrics


def motion_cost(folder: Path, size: Size) -> Row:
    """Motion statistics per shot vs the decode pass that sampled the frames, in shots/s."""
    from movielib.models.clip import ClipSpec, FramePreprocess
    from movielib.models.motion import FlowStats
    from movielib.pipeline.stages import DecodeAndDetect, tensor_column
    from movielib.shots.fast import FastContentDetector

    repeats = sized(size, 2, 1, 0)
    path = str(video(folder, f"motion-480p-{repeats}.mp4", (854, 480), repeats))
    stage = DecodeAndDetect(FastContentDetector(), FramePreprocess.for_spec(ClipSpec("ViT-B-32", random_weights=True)))
    t_decode, tables = best_of(2, lambda: list(stage.process("v", path)))
    frames = [f for t in tables for f in tensor_column(t, "frames")]
    enc = FlowStats()
    t_motion, _ = best_of(2, lambda: [enc.embed(f) for f in frames])
    samples = sum(len(f) for f in frames)
    return Row(
        "motion feature",
        f"480p, {len(frames)} shots, {samples} sampled frames: shots/s of the decode pass vs of the motion feature",
        len(frames) / t_decode,
        len(frames) / t_motion,
        "shots/s",
        note=f"motion adds {t_motion / t_decode:.0%} to the decode pass ({1000 * t_motion / len(frames):.1f} ms/shot)",
    )


def run(size: Size = "full", work: Path | None = None) -> list[Row]:
    genres = 20
    small = {"expert_dim": 256, "gate_hidden": 256, "clips": 9, "bottleneck": 512, "head_hidden": 256}
    m = GenreModelSection(sequences=8, **sized(size, {}, small, small | {"expert_dim": 64, "clip_dim": 32, "clips": 3}))
    batch = sized(size, 16, 8, 4)
    data = trailers(8 * batch, m.clips * m.sequences, genres)
    baseline = plain(m, data, batch, genres)
    with local_ray(), tempfile.TemporaryDirectory() as folder:
        ours = float(trainer(m, data, batch, genres, folder)["trailers_per_s"])
    rows = [
        Row(
            "train_genre",
            f"genre model, {m.sequences} sequences x {m.clips} clips, expert {m.expert_dim}, batch {batch}, 1 worker",
            ours,
            baseline,
            "trailers/s",
            target=0.85,
            note="Ray Train + DeepSpeed + Ray Data vs a plain torch loop",
        )
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(motion_cost(work or Path(tmp), size))
    return rows
