"""End-to-end tagging shots/s with 1 vs 2 CPU workers.

Each case runs in its own process pinned with `taskset` to 1 or 2 cores, so the local Ray and
every worker it starts really have that many cores. Stages ask for half a CPU each so a
1-core cluster still runs decode and scoring side by side; the scorer pool may grow to one
actor per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row
from movielib.demo.samples import Segment, generate_clip

SIZE = (854, 480)
SOURCES = ["testsrc", "smptebars", "mandelbrot", "rgbtestsrc", "testsrc2", "color:darkgreen"]


def catalog(folder: Path, n_videos: int, size: tuple[int, int] = SIZE, shot_s: float = 3.0) -> Path:
    """`n_videos` clips of 6 shots of `shot_s` seconds each at `size` (decode-bound: 480p by default)."""
    out = folder / f"e2e-catalog-{n_videos}-{size[1]}p-{shot_s:g}s"
    if not out.exists():
        tmp = out.with_suffix(".part")
        shutil.rmtree(tmp, ignore_errors=True)
        for v in range(n_videos):
            segs = [Segment(SOURCES[(v + k) % len(SOURCES)], shot_s) for k in range(6)]
            generate_clip(tmp / f"clip{v:02d}.mp4", segs, size=size)
        tmp.rename(out)
    return out


def job(source: str, dest: str, workers: int, model: str) -> dict:
    import ray

    from movielib.pipeline.config import load_tag_config
    from movielib.pipeline.tagging import plan_tagging, run_tagging

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    cfg = load_tag_config(
        None,
        {
            "model.name": model,
            "model.random_weights": True,
            "decode.num_cpus": 0.5,
            "scoring.num_cpus": 0.5,
            "scoring.max_actors": workers,
            "scoring.batch_size": 4,
        },
    )
    plan = plan_tagging(cfg, source, dest)
    t0 = time.perf_counter()
    summary = run_tagging(plan)
    return {
        "shots": summary.shots,
        "seconds": time.perf_counter() - t0,
        "stage_s": dict(summary.stage_s),
        "timings_s": summary.timings_s,
    }


def run(folder: Path, quick: bool = False, model: str = "ViT-B-32-quickgelu") -> list[Row]:
    source = catalog(folder, 4 if quick else 8)
    result = {}
    for workers in (1, 2):
        dest = folder / f"e2e-out-{workers}"
        shutil.rmtree(dest, ignore_errors=True)
        cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:workers])
        cmd = [
            sys.executable,
            "-m",
            "bench.end_to_end",
            str(source),
            str(dest),
            "--workers",
            str(workers),
            "--model",
            model,
        ]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", cores, *cmd]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"end-to-end run with {workers} workers failed:\n{proc.stderr[-3000:]}")
        result[workers] = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = (result[w]["shots"] / result[w]["seconds"] for w in (1, 2))
    return [
        Row(
            "end-to-end tagging",
            f"{result[2]['shots']} shots, {model}, all stages: 2 vs 1 CPU workers",
            two,
            one,
            "shots/s",
            1.7,
            f"1 worker {result[1]['seconds']:.1f}s, 2 workers {result[2]['seconds']:.1f}s",
        )
    ]


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--model", default="ViT-B-32-quickgelu")
    a = p.parse_args()
    print(json.dumps(job(a.source, a.dest, a.workers, a.model)))
