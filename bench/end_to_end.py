"""End-to-end tagging shots/s with 1 vs 2 CPU workers, on decode-bound work (480p, tiny CLIP, people on).

Each case runs in its own process pinned with `taskset` to 1 or 2 cores, so the local Ray and
every worker it starts really have that many cores; the two alternate, round by round. Stages ask
for half a CPU each so a 1-core cluster still runs decode and scoring side by side; the scorer
pool may grow to one actor per core. Throughput counts the run (claim, tag, commit), not the
Ray start; each case also reports its CPU seconds per shot per stage, from the run's own tally.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row, Size, interleaved, sized, start_ray
from movielib.demo.samples import Segment, generate_clip

SIZE = (854, 480)
MODEL = "movielib-tiny-clip"
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
    from movielib.pipeline.config import load_tag_config
    from movielib.pipeline.tagging import plan_tagging, run_tagging

    start_ray(workers)
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
        "stage_cpu_s": dict(summary.stage_cpu_s),
    }


def _case(source: Path, folder: Path, workers: int, model: str) -> dict:
    """One run of the job in a fresh process on `workers` cores; its JSON line, timed inside the job."""
    dest = folder / f"e2e-out-{workers}"
    shutil.rmtree(dest, ignore_errors=True)
    cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:workers])
    cmd = [sys.executable, "-m", "bench.end_to_end", str(source), str(dest), "--workers", str(workers)]
    cmd += ["--model", model]
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
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(folder: Path, size: Size = "full", rounds: int = 3, model: str = MODEL) -> tuple[list[Row], dict]:
    """The 2-vs-1-worker row, and per case its CPU ms per shot per stage (medians over rounds)."""
    source = catalog(folder, *sized(size, (8,), (4,), (2, SIZE, 1.0)))
    runs: dict[int, list[dict]] = {1: [], 2: []}

    def case(workers: int) -> None:
        runs[workers].append(_case(source, folder, workers, model))

    # a round is two whole jobs (about a minute here): at most 3
    timed = interleaved({"1 worker": lambda: case(1), "2 workers": lambda: case(2)}, min(rounds, 3), warmup=False)
    # the job's own clock (the run, not Ray's start): ratios paired by round
    seconds = {w: [r["seconds"] for r in runs[w]] for w in (1, 2)}
    shots = runs[2][-1]["shots"]
    cpu = {
        f"{w} worker{'s' if w > 1 else ''}": {
            stage: round(1000 * statistics.median(r["stage_cpu_s"].get(stage, 0.0) for r in runs[w]) / shots, 1)
            for stage in runs[w][-1]["stage_cpu_s"]
        }
        for w in (1, 2)
    }
    row = Row(
        "end-to-end tagging",
        f"{shots} shots of 480p, {model}, people on: 2 vs 1 CPU workers",
        shots / statistics.median(seconds[2]),
        shots / statistics.median(seconds[1]),
        "shots/s",
        1.7,
        f"run 1 worker {statistics.median(seconds[1]):.1f}s, 2 workers {statistics.median(seconds[2]):.1f}s (median)",
        ratios=[one / two for one, two in zip(seconds[1], seconds[2])],
        load=timed.load,
    )
    return [row], {"cpu_ms_per_shot": cpu}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("source")
    p.add_argument("dest")
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--model", default=MODEL)
    a = p.parse_args()
    print(json.dumps(job(a.source, a.dest, a.workers, a.model)))
