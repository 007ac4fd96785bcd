"""`movielib pretrain multimodal`: long-range multimodal pretraining over a tagged catalog, as one resumable run.

    <run.folder>/<run.name>/
        config.yaml            the resolved config (a resume with other settings is refused)
        multimodal/            Ray Train checkpoints, metrics.csv, TensorBoard events, curves.png
        multimodal.pt          the trained transformers (fp32, plain torch) with the inputs they expect
        summary.json

Started again with the same run folder, the run goes on from its last checkpoint.
"""

from __future__ import annotations

import json

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import init_ray, run_folder, write_bytes, write_run_config
from movielib.store import CatalogStore, video_in
from movielib.train.launcher import launch
from movielib.train.multimodal.config import PretrainMultimodalConfig
from movielib.train.multimodal.data import Sequences, catalog_movies, sequence_count
from movielib.train.multimodal.loop import EXPORT, MultimodalLoop, multimodal_loop
from movielib.train.runlog import CURVES, last_epoch
from movielib.train.tables import feature_stats, per_epoch

STAGE = "multimodal"


class MultimodalSummary(dict):
    """The run's summary.json, rendered for the console."""

    exit_code = 0

    def render(self) -> str:
        s = self["sequences"]
        lines = [
            f"run {self['run']}: {s['train']} sequences of {self['shots']} shots an epoch, {s['val']} more from "
            f"{s['held_out_movies']} held-out movies"
        ]
        m = self.get("metrics") or {}
        shown = [k for k in ("loss", "val_loss", "val_video_to_audio_top1", "val_video_to_language_top1") if k in m]
        if shown:
            chance = next((m[f"{k}_chance"] for k in shown if f"{k}_chance" in m), None)
            lines.append(
                f"step {m.get('step')}: "
                + ", ".join(f"{k} {m[k]:.4g}" for k in shown)
                + (f" (retrieval chance {chance:.3g})" if chance else "")
            )
        lines += [f"{name}: {path}" for name, path in self["outputs"].items()]
        return "\n".join(lines)


def run(cfg: PretrainMultimodalConfig, args=None) -> MultimodalSummary:
    """`movielib pretrain multimodal`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    return run_pretrain_multimodal(cfg)


def run_pretrain_multimodal(cfg: PretrainMultimodalConfig) -> MultimodalSummary:
    s3 = S3Options.from_config(cfg.s3)
    store = CatalogStore(cfg.catalog, s3)
    # every table and model checked before any work
    movies, shots, held, inputs = catalog_movies(store, cfg.modalities(), cfg.optim.val_fraction, cfg.optim.seed)
    folder = run_folder(cfg.run)
    write_run_config(folder, cfg, s3)
    k, workers = cfg.model.shots, cfg.scaling.workers
    train_ids = [v for v in shots if v not in held]
    n_train, n_val = sequence_count(shots, train_ids, k), sequence_count(shots, held, k)
    if n_train < cfg.optim.batch:
        raise ConfigError(
            f"optim.batch: an epoch cuts {n_train} training sequences of {k} shots from {len(train_ids)} movies, "
            f"fewer than one batch ({cfg.optim.batch}); lower optim.batch or model.shots, or add movies"
        )
    for name, meta in inputs.items():
        print(f"{name}: {meta['table']}, model {meta['model']}, version {meta['version'] or '-'}", flush=True)
    print(f"sequences: {n_train} of {k} shots an epoch from {len(train_ids)} movies, {n_val} from {len(held)} held out")
    dims = {name: meta["dim"] for name, meta in inputs.items()}  # the sequences' widths, as the workers' model
    train_movies = movies.filter(expr=video_in(held, inside=False))
    stats = feature_stats(train_movies, dims)  # each input standardised with the training movies' statistics
    result = launch(
        multimodal_loop,
        MultimodalLoop(cfg.model, cfg.losses, cfg.optim, inputs, n_train // cfg.optim.batch, stats),
        cfg.scaling,
        cfg.deepspeed,
        cfg.run,
        cfg.optim.batch // workers,
        stage=STAGE,
        s3=s3,
        datasets={
            "train": per_epoch(train_movies, Sequences(k, dims)),
            "val": per_epoch(movies.filter(expr=video_in(held)), Sequences(k, dims, cfg.optim.seed)),
        },
    )
    metrics = result.metrics or last_epoch(f"{folder}/{STAGE}", s3)  # a run started again after it finished: its log
    summary = MultimodalSummary(
        {
            "run": folder,
            "shots": k,
            "inputs": inputs,
            "losses": cfg.losses.model_dump(),
            "sequences": {"train": n_train, "val": n_val, "movies": len(shots), "held_out_movies": len(held)},
            "held_out": sorted(held),
            "metrics": metrics,
            "outputs": {"model": f"{folder}/{EXPORT}", "curves": f"{folder}/{STAGE}/{CURVES}"},
        }
    )
    write_bytes(f"{folder}/summary.json", json.dumps(summary, indent=2, default=str).encode(), s3)
    return summary
