"""Cost per video as the catalog grows: planning a re-run, and tagging throughput.

Planning: a DEST holding N committed videos (synthetic rows written straight into the Delta
tables, 35 shots a video as in MovieCLIP) and a manifest of the same N URIs; a re-run lists the
manifest, compares it with the videos table and finds nothing to do. Each N runs in its own
process, which reports its planning time and its peak RSS above what the imports took. The
per-video cost at the largest N is compared with the smallest (target: within 1.5x).

Tagging: the whole job over 10 vs many tiny videos; the per-video time is compared, and the
fixed start-up cost (Ray, the scorer actor) is reported apart.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.common import Row, Size, sized, start_ray

SHOTS_PER_VIDEO = 35


def build_dest(folder: Path, n: int) -> tuple[Path, Path]:
    """DEST with n committed videos (videos, shots, claims) and a manifest listing their URIs."""
    import numpy as np
    import pyarrow as pa

    from movielib.io.uri import VideoRef
    from movielib.store.claims import CLAIMS, CLAIMS_TABLE
    from movielib.store.schema import SHOTS, VIDEOS
    from movielib.store.store import CatalogStore

    dest, manifest = folder / f"scale-dest-{n}", folder / f"scale-manifest-{n}.txt"
    if (dest / "_movielib" / "ready").exists():
        return dest, manifest
    shutil.rmtree(dest, ignore_errors=True)
    store = CatalogStore(str(dest))
    step = 100_000  # rows of videos per commit: a compacted catalog's file size
    with open(manifest, "w") as out:
        for start in range(0, n, step):
            uris = [f"{folder}/catalog/movie-{i:07d}.mp4" for i in range(start, min(n, start + step))]
            out.write("\n".join(uris) + "\n")
            ids = [VideoRef(u, -1, 0).video_id for u in uris]  # what the listing computes for these URIs
            k = len(ids)
            store.tables.append(
                "videos",
                pa.table(
                    {
                        "video_id": ids,
                        "uri": uris,
                        "duration_s": np.full(k, 124.0),
                        "fps": np.full(k, 24.0),
                        "width": np.full(k, 1920, np.int32),
                        "height": np.full(k, 1080, np.int32),
                        "n_frames": np.full(k, 2976, np.int64),
                        "status": ["ok"] * k,
                        "error": pa.nulls(k, pa.string()),
                    },
                    schema=VIDEOS,
                ),
            )
            idx = np.tile(np.arange(SHOTS_PER_VIDEO, dtype=np.int32), k)
            start_f = idx.astype(np.int64) * 85
            store.tables.append(
                "shots",
                pa.table(
                    {
                        "video_id": pa.array(np.repeat(np.array(ids, dtype=object), SHOTS_PER_VIDEO), pa.string()),
                        "shot_idx": idx,
                        "start_frame": start_f,
                        "end_frame": start_f + 85,
                        "start_s": start_f / 24.0,
                        "end_s": (start_f + 85) / 24.0,
                        "keyframes": pa.nulls(len(idx), pa.list_(pa.int64())),
                        "keyframe_s": pa.nulls(len(idx), pa.list_(pa.float64())),
                    },
                    schema=SHOTS,
                ),
            )
            now = (
                pa.array([time.time() * 1e6] * k, pa.int64())
                .cast(pa.timestamp("us"))
                .cast(pa.timestamp("us", tz="UTC"))
            )
            store.tables.append(
                CLAIMS_TABLE,
                pa.table(
                    {"video_id": ids, "run_id": ["run-bench"] * k, "claimed_at": now, "expires_at": now}, schema=CLAIMS
                ),
            )
    (dest / "_movielib" / "ready").touch()
    return dest, manifest


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def plan_once(dest: str, manifest: str) -> dict:
    """One re-run's planning, in this process: listing, the videos table's ids, the to-do split.
    Memory is the peak resident size above what the process held before planning (sampled)."""
    import threading

    from movielib.io.uri import iter_source
    from movielib.pipeline.todo import plan_todo
    from movielib.store.store import CatalogStore

    base, peak, done = _rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    todo = plan_todo(CatalogStore(dest), iter_source(manifest), "run-plan", 1000)
    seconds = time.perf_counter() - t0
    done.set()
    return {"seconds": seconds, "rss_mb": max(peak[0], _rss_mb()) - base, "skipped": todo.skipped, "todo": todo.videos}


def _in_process(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.scale", *args],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench.scale {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(folder: Path, size: Size = "full") -> list[Row]:
    sizes = sized(size, (10_000, 100_000, 1_000_000), (10_000, 100_000), (100, 1_000))
    results = {}
    for n in sizes:
        dest, manifest = build_dest(folder, n)
        results[n] = _in_process("plan", str(dest), str(manifest))
        assert results[n]["skipped"] == n and results[n]["todo"] == 0, results[n]
        r = results[n]
        print(
            f"scale: re-run planning over {n} committed videos: {r['seconds']:.2f}s, "
            f"{r['seconds'] / n * 1e6:.1f} us and {r['rss_mb'] * 1024 / n:.2f} KB a video",
            flush=True,
        )
    small, big = sizes[0], sizes[-1]
    per_video = {n: results[n]["seconds"] / n for n in sizes}
    mem = {n: results[n]["rss_mb"] / n for n in sizes}
    rows = [
        Row(
            "scale: planning",
            f"re-run over {big} vs {small} committed videos: time per video",
            1 / per_video[big] / 1e3,
            1 / per_video[small] / 1e3,
            "k videos/s",
            1 / 1.5,
            f"{small}: {results[small]['seconds']:.2f}s, {big}: {results[big]['seconds']:.2f}s",
        ),
        Row(
            "scale: planning",
            f"re-run over {big} vs {small} committed videos: driver memory per video",
            1 / mem[big],
            1 / mem[small],
            "videos/MB",
            1 / 1.5,
            f"peak RSS above imports: {small}: {results[small]['rss_mb']:.0f} MB, "
            f"{big}: {results[big]['rss_mb']:.0f} MB",
        ),
    ]
    rows.append(tagging_throughput(folder, sized(size, 1000, 100, 20)))
    return rows


def tagging_throughput(folder: Path, many: int) -> Row:
    """Whole-job seconds per tiny video, 10 vs `many` videos; the fixed start-up cost apart."""
    from movielib.demo.samples import Segment, generate_clip

    clip = folder / "scale-tiny.mp4"
    if not clip.exists():
        generate_clip(clip, [Segment("testsrc", 0.5), Segment("smptebars", 0.5)], fps=25, size=(64, 48))
    out = {}
    for n in (10, many):
        cat = folder / f"scale-tiny-catalog-{n}"
        if not cat.exists():
            cat.mkdir()
            for i in range(n):
                (cat / f"v{i:05d}.mp4").symlink_to(clip)
        dest = folder / f"scale-tiny-out-{n}"
        shutil.rmtree(dest, ignore_errors=True)
        out[n] = _in_process("tag", str(cat), str(dest))
    fixed = out[10]["startup_s"]
    per = {n: (out[n]["seconds"]) / n for n in out}
    return Row(
        "scale: tagging",
        f"tiny videos, tiny model: time per video, {many} vs 10 videos",
        1 / per[many],
        1 / per[10],
        "videos/s",
        None,
        f"10: {out[10]['seconds']:.1f}s, {many}: {out[many]['seconds']:.1f}s, Ray start-up apart: {fixed:.1f}s",
    )


def tag_once(source: str, dest: str) -> dict:
    import ray

    from movielib.pipeline.config import load_tag_config
    from movielib.pipeline.tagging import plan_tagging, run_tagging

    t0 = time.perf_counter()
    start_ray()
    startup = time.perf_counter() - t0
    cfg = load_tag_config(
        None,
        {
            "model.name": "movielib-tiny-clip",
            "model.random_weights": True,
            "people.enabled": False,
            "features.audio": False,
            "features.text": False,
        },
    )
    plan = plan_tagging(cfg, source, dest)
    t1 = time.perf_counter()
    summary = run_tagging(plan)
    seconds = time.perf_counter() - t1
    ray.shutdown()  # before the process ends without its teardown (below)
    return {"seconds": seconds, "startup_s": startup, "videos": summary.videos_ok}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["plan", "tag"])
    p.add_argument("dest_or_source")
    p.add_argument("manifest_or_dest")
    a = p.parse_args()
    once = plan_once if a.what == "plan" else tag_once
    result = once(a.dest_or_source, a.manifest_or_dest)
    print(json.dumps(result), flush=True)
    # the figures are out: skip the interpreter's teardown, where a native thread pool (Arrow's, Delta's) being
    # torn down under load has aborted the process ("terminate called without an active exception")
    os._exit(0)
