"""`movielib demo --heads`: an 8-trial Ray Tune sweep (ASHA) of scene heads, on the embedded default.

Starts an S3 server on 127.0.0.1, writes a tagged catalog with planted signal there (features whose
scene labels are known functions of them, a known clean subset: movielib/demo/planted_heads.py; an
untrained CLIP tags nothing clean, so the tagging demo's catalog has no weak labels to learn), sweeps
M_scene-style heads over it with MovieCLIP's clean-tag recipe, and copies the run folder locally.
"""

from __future__ import annotations

import time

from movielib.demo.planted_heads import build as plant
from movielib.demo.run import BUCKET, copy_to_output
from movielib.demo.s3server import MotoS3Server
from movielib.io.uri import S3Options
from movielib.runtime import init_ray, verbose


def run_heads_demo(out: str, quick: bool = False) -> int:
    from movielib.config import load_config
    from movielib.heads.config import HeadsConfig
    from movielib.heads.sweep import run_heads

    t0 = time.perf_counter()
    with MotoS3Server() as server:
        server.use()
        server.client().create_bucket(Bucket=BUCKET)
        dest, runs = f"s3://{BUCKET}/heads-catalog", f"s3://{BUCKET}/runs"
        planted = plant(dest, videos=40, shots=20)
        print(
            f"S3 server {server.endpoint_url}: a planted catalog in {dest} ({len(planted.genres)} videos, "
            f"{len(planted.clean)} clean shots)",
            flush=True,
        )
        cfg = load_config(
            None,
            {
                "data.catalog": dest,
                "head.name": "mlp2",
                "head.epochs": 12,
                "run.folder": runs,
                "tune.grace_period": 1,
                **({"tune.num_samples": 4, "search.width": [256], "head.min_steps": 300} if quick else {}),
                "s3.endpoint_url": server.endpoint_url,
            },
            schema=HeadsConfig,
        )
        print("tune heads, " + cfg.console(verbose()), flush=True)
        init_ray(cfg.ray_address)
        summary = run_heads(cfg)
        local = copy_to_output(out, S3Options.from_env(server.endpoint_url), {"run": summary["run"]})
        print(summary.render())
        print(
            f"copied the run to {local / 'run'}: trials.csv, best_config.yaml, best/head.pt, sweep.png; "
            f"the trials' curves: tensorboard --logdir {local / 'run' / 'sweep'}"
        )
    print(f"heads demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
