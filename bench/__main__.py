"""`python -m bench` (or `movielib bench`): run every benchmark, print one table, write JSON + PNG.

python -m bench [--quick | --micro] [--out bench-results] [--only NAME,...]
  NAME: detect, decode, scoring, e2e, cost, scale, train, train-multimodal, train-genre, train-scale, tune, serve
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import (  # noqa: E402
    decode,
    end_to_end,
    scale,
    scoring,
    serve_tagger,
    shot_detection,
    stage_cost,
    train_genre,
    train_multimodal,
    train_scale,
    train_scenes,
    tune_heads,
)
from bench.common import Row, local_ray  # noqa: E402

ALL = (
    "detect",
    "decode",
    "scoring",
    "e2e",
    "cost",
    "scale",
    "train",
    "train-multimodal",
    "train-genre",
    "train-scale",
    "tune",
    "serve",
)


def table(rows: list[Row]) -> str:
    """One line a row: medians, the ratio's median and range over rounds, the verdict, then the notes."""
    lines = [
        f"{'benchmark':20} {'case':70} {'ours':>9} {'baseline':>9} {'ratio':>6} {'range':>11} {'target':>12}  note"
    ]
    for r in rows:
        lo, hi = r.spread
        spread = f"{lo:.2f}-{hi:.2f}" if r.ratios else ""
        target = "" if r.target is None else f">={r.target:g} {r.verdict}"
        note = "; ".join(x for x in (r.unit, r.note, r.load) if x)
        lines.append(
            f"{r.benchmark:20} {r.case:70} {r.ours:9.1f} {r.baseline:9.1f} {r.ratio:6.2f} {spread:>11} {target:>12}  "
            f"{note}"
        )
    if any(r.verdict == "noise" for r in rows):
        lines.append("noise: the ratio's range over rounds straddles the target (spread > gap); re-run when quieter")
    return "\n".join(lines)


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.5))
    labels = [f"{r.benchmark}: {r.case}"[:80] for r in rows]
    ratios = [r.ratio for r in rows]
    colour = {None: "tab:gray", "ok": "tab:green", "MISS": "tab:red", "noise": "tab:orange"}
    errors = [[r.ratio - r.spread[0] for r in rows], [r.spread[1] - r.ratio for r in rows]]
    ax.barh(labels, ratios, color=[colour[r.verdict] for r in rows], xerr=errors, capsize=3)
    for i, r in enumerate(rows):
        if r.target is not None:
            ax.plot([r.target, r.target], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(r.ratio, i, f" {r.ratio:.2f}x", va="center", fontsize=8)
    ax.axvline(1.0, color="gray", linestyle=":")
    ax.invert_yaxis()
    ax.set_xlabel("ours / baseline: median and range over rounds (black tick: target; orange: spread > gap)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_case(case: str, work: Path, size: str, args: argparse.Namespace, extra: dict) -> list[Row]:
    """One benchmark's rows (what it records besides, into `extra`)."""
    if case == "detect":
        detect_rows, extra["cuts"] = shot_detection.run(work, size, args.rounds)
        return detect_rows
    if case == "decode":
        return decode.run(work, size)
    if case == "scoring":
        with local_ray():
            return scoring.run(size, args.model or ("movielib-tiny-clip" if size == "micro" else "ViT-B-32-quickgelu"))
    if case == "e2e":
        e2e_rows, extra["e2e"] = end_to_end.run(work, size, args.rounds)
        return e2e_rows
    if case == "cost":
        cost_rows, extra["cpu_cost"] = stage_cost.run(work, size)
        return cost_rows
    runs = {
        "scale": lambda: scale.run(work, size),
        "train": lambda: train_scenes.run(size),
        "train-multimodal": lambda: train_multimodal.run(size),
        "train-genre": lambda: train_genre.run(size, work),
        "train-scale": lambda: train_scale.run(size),
        "tune": lambda: tune_heads.run(size),
        "serve": lambda: serve_tagger.run(size),
    }
    return runs[case]()


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sizes = p.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="smaller workloads (minutes -> about one a case)")
    sizes.add_argument(
        "--micro", action="store_true", help="the smallest workloads that make every row (seconds; the suite's size)"
    )
    p.add_argument("--out", default="bench-results", help="folder for bench.json, bench.png and the workload")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {', '.join(ALL)}")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the timed rows (median and range)")
    p.add_argument(
        "--model", default=None, help="open_clip architecture for scoring (ViT-B-32-quickgelu; --micro: the tiny one)"
    )
    args = p.parse_args()
    out = Path(args.out).resolve()
    work = out / "workload"
    work.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(","))
    if only - set(ALL):
        p.error(f"--only: unknown benchmark(s) {', '.join(sorted(only - set(ALL)))}; choose from {', '.join(ALL)}")
    size = "micro" if args.micro else "quick" if args.quick else "full"
    rows: list[Row] = []
    extra: dict = {}
    cases: dict[str, dict] = {}  # each case's rows (indexes into rows) and seconds, in bench.json
    t0, load = time.perf_counter(), os.getloadavg()
    for case in (c for c in ALL if c in only):
        started, first = time.perf_counter(), len(rows)
        rows += run_case(case, work, size, args, extra)
        cases[case] = {"rows": list(range(first, len(rows))), "seconds": time.perf_counter() - started}
    print(f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} when the bench started")
    print(table(rows))
    for case, stages in extra.get("e2e", {}).get("cpu_ms_per_shot", {}).items():
        print(f"end-to-end CPU per shot, {case}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in stages.items()))
    if "cpu_cost" in extra:
        print(stage_cost.render(extra["cpu_cost"]))
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load,
        },
        "size": size,
        "seconds": time.perf_counter() - t0,
        "rows": [r.to_dict() for r in rows],
        "cases": cases,
        **extra,
    }
    (out / "bench.json").write_text(json.dumps(report, indent=2))
    chart(rows, out / "bench.png")
    print(f"wrote {out / 'bench.json'} and {out / 'bench.png'} ({report['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
