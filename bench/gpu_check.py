"""The GPU check (bench/gpu_check.sh): what only a GPU machine can show, in a few minutes, printed figure by figure.

    bash bench/gpu_check.sh            # on a GPU node: bf16 training steps, scoring, NVDEC decode
    python -m bench.gpu_check --cpu    # the same code paths on the CPU (bf16 forced), to check the script itself

1. One bf16 training run of each Movies2Scenes stage and of the multimodal model through the launcher (Ray Train +
   DeepSpeed, one worker on the GPU, ViT-B-32 random init for the scene step): steps/s, finite losses, fp32 exports.
2. CLIP scoring images/s of the tagger (SceneTagger) on the GPU at fp32, amp_bf16 and bf16, and top-1 agreement.
3. NVDEC decoding (decode.decoder: nvdec) of a generated 1080p clip vs PyAV on the CPU: frames/s, same frame count.
Never needed by the tests.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _line(name: str, value: str) -> None:
    print(f"{name:42} {value}", flush=True)


def training(folder: Path, gpu: bool, arch: str) -> None:
    import numpy as np
    import ray.data
    import torch

    from movielib.models.clip import ClipSpec, FramePreprocess
    from movielib.train.config import DeepSpeedSection, ScalingSection, TrainRunSection
    from movielib.train.launcher import launch
    from movielib.train.movies2scenes.config import ScenesSection, SimilarityModelSection
    from movielib.train.movies2scenes.encoder import tower_config
    from movielib.train.movies2scenes.loops import ScenesLoop, SimilarityLoop, scenes_loop, similarity_loop
    from movielib.train.runlog import RunLog

    scaling = ScalingSection(workers=1, cpus_per_worker=1, gpus_per_worker=1 if gpu else 0)
    ds, run = DeepSpeedSection(precision="bf16"), TrainRunSection(folder=str(folder), name="gpu-check")
    rng = np.random.default_rng(0)
    pairs = [
        {
            "x1": rng.normal(size=(1024, 512)).astype(np.float32),
            "x2": rng.normal(size=(1024, 512)).astype(np.float32),
            "m1": np.ones(1024, bool),
            "m2": np.ones(1024, bool),
            "label": float(i % 2),
        }
        for i in range(64)
    ]
    m = SimilarityModelSection(batch=16, epochs=2)
    t0 = time.perf_counter()
    launch(
        similarity_loop,
        SimilarityLoop(m, 512, 0),
        scaling,
        ds,
        run,
        16,
        stage="similarity",
        datasets={"train": ray.data.from_items(pairs), "val": ray.data.from_items(pairs[:16])},
    )
    rows = [r for r in RunLog(str(folder / "gpu-check" / "similarity")).rows if r.get("kind") == "epoch"]
    _line(
        "similarity step, bf16 (1024 shots, 512-d)",
        f"{rows[-1]['pairs_per_s']:.1f} pairs/s, loss "
        f"{rows[-1]['loss']:.4f}, {time.perf_counter() - t0:.0f}s with start-up",
    )
    spec = ClipSpec(arch, random_weights=True)
    pre = FramePreprocess.for_spec(spec)
    size = pre.size if isinstance(pre.size, int) else pre.size[0]
    scenes = [
        {
            "q": rng.integers(0, 255, (9, size, size, 3), dtype=np.uint8),
            "k": rng.integers(0, 255, (9, size, size, 3), dtype=np.uint8),
        }
        for _ in range(64)
    ]
    s = ScenesSection(batch=16, epochs=1, queue=1024, warmup_epochs=0)
    loop = ScenesLoop(s, 0, spec, tower_config(spec.validate().model_cfg), tuple(pre.mean), tuple(pre.std), 4)
    t0 = time.perf_counter()
    launch(scenes_loop, loop, scaling, ds, run, 16, stage="scenes", datasets={"train": ray.data.from_items(scenes)})
    rows = [r for r in RunLog(str(folder / "gpu-check" / "scenes")).rows if r.get("kind") == "epoch"]
    _line(
        f"MoCo scene step, bf16 ({arch}, 9 shots)",
        f"{rows[-1]['scene_pairs_per_s']:.1f} scene pairs/s, loss "
        f"{rows[-1]['loss']:.4f}, {time.perf_counter() - t0:.0f}s with start-up",
    )
    for name in ("similarity.pt", "scene_encoder.pt"):
        state = torch.load(folder / "gpu-check" / name, weights_only=True)["state_dict"]
        ok = all(v.dtype == torch.float32 for v in state.values())
        _line(f"export {name}", "fp32 masters" if ok else "NOT fp32")


def multimodal(folder: Path, gpu: bool, k: int = 30) -> None:
    """One bf16 run of the multimodal loop through the launcher: sequences/s, finite losses, fp32 export."""
    import numpy as np
    import ray.data
    import torch

    from movielib.train.config import DeepSpeedSection, ScalingSection, TrainRunSection
    from movielib.train.launcher import launch
    from movielib.train.multimodal.config import LossesSection, MultimodalModelSection, OptimSection
    from movielib.train.multimodal.loop import EXPORT, MultimodalLoop, multimodal_loop
    from movielib.train.runlog import RunLog

    dims = {"video": 512, "audio": 128, "language": 384}
    width, batch, n = (512, 256, 4096) if gpu else (64, 8, 32)
    rng = np.random.default_rng(0)
    rows = [
        {
            **{m: rng.normal(size=(k, d)).astype(np.float32) for m, d in dims.items()},
            **{f"{m}_valid": rng.random(k) > 0.1 for m in dims},
        }
        for _ in range(n)
    ]
    loop = MultimodalLoop(
        MultimodalModelSection(shots=k, width=width, layers=3, heads=8),
        LossesSection(),
        OptimSection(batch=batch, epochs=2),
        {m: {"table": "-", "model": "-", "version": "", "dim": d} for m, d in dims.items()},
        n // batch,
    )
    device = "cuda" if gpu else "cpu"
    plain = {
        resident: _plain_multimodal(loop, rows, batch, device, resident) for resident in (True, False)
    }  # first: the GPU warms up here, not in the launcher's figure
    speeds = {}
    for prefetch, buffer in ((1, 1024), (4, 1024), (4, batch)):  # the last: local shuffle over one batch only
        t0 = time.perf_counter()
        name = f"gpu-check-{prefetch}-{buffer}"
        launch(
            multimodal_loop,
            loop,
            ScalingSection(workers=1, cpus_per_worker=1, gpus_per_worker=1 if gpu else 0),
            DeepSpeedSection(precision="bf16"),
            TrainRunSection(folder=str(folder), name=name, prefetch_batches=prefetch, shuffle_buffer=buffer),
            batch,
            datasets={"train": ray.data.from_items(rows), "val": ray.data.from_items(rows[:batch])},
            stage="multimodal",
        )
        last = [r for r in RunLog(str(folder / name / "multimodal")).rows if r.get("kind") == "epoch"][-1]
        speeds[prefetch, buffer] = last["sequences_per_s"]
        _line(
            f"multimodal launcher, bf16, prefetch {prefetch}, shuffle buffer {buffer} (k {k}, width {width}, "
            f"batch {batch})",
            f"{last['sequences_per_s']:.1f} sequences/s, loss {last['loss']:.4f}, "
            f"{time.perf_counter() - t0:.0f}s with start-up",
        )
        state = torch.load(folder / name / EXPORT, weights_only=True)["state_dict"]
        _line(
            f"  export {EXPORT}",
            "fp32 masters" if all(v.dtype == torch.float32 for v in state.values()) else "NOT fp32",
        )
    best = speeds[1, 1024]  # the defaults
    for resident, label in ((False, "batches copied from host memory"), (True, "all data resident on the device")):
        _line(
            f"multimodal plain torch loop, {label}",
            f"{plain[resident]:.1f} sequences/s; launcher (defaults) / plain {best / plain[resident]:.2f}x",
        )


def _plain_multimodal(loop, rows: list[dict], batch: int, device: str, resident: bool) -> float:
    """The baseline: the same model, losses and AdamW in one process, bf16 autocast, the data either resident on
    the device or sliced from host memory and copied per batch (what a DataLoader loop does, pinned); two epochs,
    the second timed from the end of its first step (as the launcher's Throughput)."""
    import torch

    from movielib.train.launcher import Throughput
    from movielib.train.multimodal.model import MultimodalModel

    torch.manual_seed(0)
    model = MultimodalModel(loop.dims, loop.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    data = {key: torch.as_tensor(np.stack([r[key] for r in rows])) for key in rows[0]}
    data = {k: v.to(device) if resident else v.pin_memory() if device == "cuda" else v for k, v in data.items()}
    n = len(rows) // batch * batch
    for _epoch in range(2):
        speed = Throughput()
        for i in range(0, n, batch):
            step = {k: v[i : i + batch].to(device, non_blocking=True) for k, v in data.items()}
            with torch.autocast(device, dtype=torch.bfloat16):
                parts = model.losses(model(step), loop.losses)
            opt.zero_grad()
            parts["total"].backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
            speed.step(batch)
    return speed.per_s


def genre(folder: Path, gpu: bool) -> None:
    """One bf16 run of the genre loop through the launcher at the paper's widths (9 clips x 40 sequences, experts
    768, bottleneck 2048): trailers/s against the plain loop, a finite loss, the fp32 export with its input
    statistics exact."""
    import torch

    from bench.train_genre import DIMS, plain, stats, trailers, trainer
    from movielib.train.genre.config import GenreModelSection
    from movielib.train.genre.loop import EXPORT

    m = GenreModelSection() if gpu else GenreModelSection(expert_dim=64, gate_hidden=64, clip_dim=32, sequences=4)
    batch, n, genres = (32, 256, 20) if gpu else (8, 32, 20)
    data = trailers(n, m.clips * m.sequences, genres)
    baseline = plain(m, data, batch, genres, "cuda" if gpu else "cpu")  # first: the GPU warms up here
    for prefetch, buffer in ((1, 1024), (4, batch)):  # the defaults; the local shuffle over one batch only
        t0, run = time.perf_counter(), f"genre-{prefetch}-{buffer}"
        metrics = trainer(m, data, batch, genres, str(folder), gpu, name=run, prefetch_batches=prefetch,
                          shuffle_buffer=buffer)  # fmt: skip
        _line(
            f"genre launcher, bf16, prefetch {prefetch}, shuffle buffer {buffer} ({m.sequences} sequences x "
            f"{m.clips} clips, expert {m.expert_dim}, batch {batch})",
            f"{metrics['trailers_per_s']:.1f} trailers/s, loss {metrics['loss']:.4f}, "
            f"{time.perf_counter() - t0:.0f}s with start-up; / plain {metrics['trailers_per_s'] / baseline:.2f}x",
        )
    _line("genre plain torch loop, bf16 autocast, batches copied from host memory", f"{baseline:.1f} trailers/s")
    state = torch.load(folder / run / EXPORT, weights_only=True)["state_dict"]
    expected = stats(data)
    exact = all(torch.equal(state[f"norm.{e}.mean"], torch.tensor(expected[e][0], dtype=torch.float32)) for e in DIMS)
    fp32 = all(v.dtype == torch.float32 for v in state.values())
    shown = f"{'fp32 masters' if fp32 else 'NOT fp32'}, input statistics {'exact' if exact else 'ROUNDED'}"
    _line(f"  export {EXPORT}", shown)


def decoding(folder: Path, gpu: bool, clip: str | None) -> None:
    from movielib.io.decode import make_decoder

    if clip is None:
        from bench.common import video

        clip = str(video(folder, "gpu-check-1080p.mp4", (1920, 1080), 1))

    def decode(kind: str) -> None:
        t0, n = time.perf_counter(), 0
        with make_decoder(kind).open_stream(clip) as stream:
            for _ in stream:
                n += 1
        _line(f"decode 1080p, {kind}", f"{n / (time.perf_counter() - t0):.0f} frames/s ({n} frames)")

    for kind in ["pyav", "nvdec"] if gpu else ["pyav"]:
        section(f"decode {kind}", decode, kind)


def scoring(gpu: bool, n: int = 4096) -> None:
    """The tagger's image path (SceneTagger: uint8 crops -> CLIP image tower -> 179-label CLIPSceneScore) per
    precision: images/s, against fp32 and against the bound of the same tower on inputs already on the device
    (what the copy and the scoring cost), and how often the top label agrees with fp32's."""
    import contextlib

    import numpy as np
    import torch

    from movielib.models.clip import DEFAULT_ARCH, ClipSpec
    from movielib.tagging.tagger import SceneTagger
    from movielib.taxonomy.labels import LabelSet

    device, chunk = ("cuda", 512) if gpu else ("cpu", 32)
    n = n if gpu else 64
    spec, labels = ClipSpec(DEFAULT_ARCH, random_weights=True), LabelSet.movieclip()
    crops = np.random.default_rng(0).integers(0, 255, (n, 224, 224, 3), dtype=np.uint8)

    def timed(fn) -> tuple[float, object]:
        fn()  # warm-up: cuDNN / cuBLAS plans
        if gpu:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if gpu:
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0), out

    def measure(precision: str) -> tuple[float, float, np.ndarray]:
        tagger = SceneTagger(spec, labels, precision=precision, frames_per_forward=chunk, device=device)
        rate, (scores, _) = timed(lambda: tagger.scores(crops, [8] * (n // 8)))
        x = tagger.preprocess.to_model_input(crops[:chunk], device).to(tagger.clip.input_dtype)
        amp = tagger.clip.autocast
        with torch.inference_mode(), torch.autocast(device, amp) if amp else contextlib.nullcontext():
            bound, _ = timed(lambda: [tagger.clip.model.encode_image(x) for _ in range(n // chunk)])
        return rate, bound, scores.argmax(1)

    base_rate, base_top = None, None
    for precision in ("fp32", "amp_bf16", "bf16"):
        rate, bound, top = measure(precision)
        if base_rate is None:
            base_rate, base_top = rate, top
        _line(
            f"scoring {DEFAULT_ARCH} {precision}",
            f"{rate:.0f} images/s ({rate / base_rate:.2f}x fp32, {rate / bound:.2f}x the tower alone at "
            f"{bound:.0f}), top-1 = fp32's on {(top == base_top).mean():.0%}",
        )


def section(name: str, fn, *args) -> bool:
    """One part of the check; a part that fails prints why and the others still run."""
    try:
        fn(*args)
        return True
    except Exception as e:  # noqa: BLE001 - the check reports every part
        _line(f"{name} FAILED", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return False


PARTS = ("training", "multimodal", "genre", "scoring", "decoding")


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__)
    p.add_argument("--cpu", action="store_true", help="run the same paths on the CPU (bf16 forced), no GPU needed")
    p.add_argument("--arch", default="ViT-B-32", help="open_clip architecture of the scene step (random init)")
    p.add_argument("--video", help="a clip to decode (default: a generated 1080p one; needs ffmpeg)")
    p.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts (default: all)")
    args = p.parse_args()
    import ray
    import torch

    gpu = torch.cuda.is_available() and not args.cpu
    if not gpu and not args.cpu:
        print("no CUDA device here: run on a GPU node, or pass --cpu to check the script's paths", file=sys.stderr)
        return 2
    _line("device", f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}" if gpu else "cpu (--cpu)")
    ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=2 * 1024**3)
    with tempfile.TemporaryDirectory() as tmp:
        parts = {
            "training": (training, Path(tmp), gpu, args.arch),
            "multimodal": (multimodal, Path(tmp), gpu),
            "genre": (genre, Path(tmp), gpu),
            "scoring": (scoring, gpu),
            "decoding": (decoding, Path(tmp), gpu, args.video),
        }
        ok = [section(name, *parts[name]) for name in args.only or PARTS]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
