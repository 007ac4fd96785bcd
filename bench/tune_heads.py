"""Wall time of an 8-trial head sweep with ASHA vs the same sweep (same seeded trial configs) without early
stopping (FIFO: every trial runs all its epochs), on a planted-signal catalog; and the best held-out mAP of each."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import Row, Size, local_ray, sized
from movielib.config import build_config
from movielib.demo.planted_heads import build as plant
from movielib.heads.config import HeadsConfig
from movielib.heads.sweep import run_heads


def run(size: Size = "full") -> list[Row]:
    epochs, samples, videos = sized(size, (20, 8, 40), (8, 8, 40), (2, 2, 8))
    walls, maps = {}, {}
    with local_ray(), tempfile.TemporaryDirectory() as tmp:
        dest = plant(str(Path(tmp) / "catalog"), videos=videos, shots=40).dest
        for scheduler in ("asha", "fifo"):
            cfg = build_config(
                HeadsConfig,
                {
                    "data": {"catalog": dest},
                    "head": {"name": "mlp2", "epochs": epochs, "min_steps": sized(size, 1000, 1000, 20)},
                    "tune": {
                        "num_samples": samples,
                        "scheduler": scheduler,
                        "grace_period": 1,
                        "reduction_factor": 3,
                    },
                    "run": {"folder": str(Path(tmp) / "runs"), "name": scheduler},
                },
            )
            summary = run_heads(cfg)
            walls[scheduler], maps[scheduler] = summary["wall_s"], summary["best"]["test"]["map"]
    return [
        Row(
            "tune_heads",
            f"{samples}-trial sweep, mlp2, {epochs} epochs max: ASHA vs FIFO wall time",
            walls["asha"],
            walls["fifo"],
            "s",
            note=f"best test mAP {maps['asha']:.3f} (ASHA) vs {maps['fifo']:.3f} (FIFO); lower is better",
        )
    ]
