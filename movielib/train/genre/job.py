"""`movielib train genre`: the collaborative-experts genre classifier over a tagged catalog, as one resumable run.

    <run.folder>/<run.name>/
        config.yaml            the resolved config (a resume with other settings is refused)
        genre/                 Ray Train checkpoints, metrics.csv, TensorBoard events, curves.png
        genre.pt               the trained model (fp32, plain torch) with its experts, genres and threshold
        genre-head.pt          its classifier in the heads' format (`movielib serve` loads it like any head)
        summary.json

Started again with the same run folder, the run goes on from its last checkpoint.
"""

from __future__ import annotations

import io
import json
import math

import torch

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import init_ray, read_bytes, run_folder, write_bytes, write_run_config
from movielib.store import CatalogStore, video_in
from movielib.train.genre.config import TrainGenreConfig
from movielib.train.genre.data import Trailers, catalog_trailers, held_out_trailers, labelled
from movielib.train.genre.loop import (
    EXPORT,
    FINE_EXPORT,
    FineGrainedLoop,
    GenreLoop,
    finegrained_loop,
    genre_loop,
)
from movielib.train.launcher import launch
from movielib.train.runlog import CURVES, last_epoch
from movielib.train.tables import feature_stats, per_epoch

STAGE = "genre"
FINE_STAGE = "finegrained"
HEAD = "genre-head.pt"  # the classifier, as Serve loads heads
SHOWN = ("loss", "val_top1", "val_auprc_micro", "val_auprc_macro", "val_auprc_weighted", "val_f1_weighted")


class GenreSummary(dict):
    """The run's summary.json, rendered for the console."""

    exit_code = 0

    def render(self) -> str:
        t = self["trailers"]
        lines = [
            f"run {self['run']}: {t['train']} trailers to train on, {t['val']} held out, {len(self['genres'])} genres "
            f"({', '.join(self['genres'][:8])}{', ...' if len(self['genres']) > 8 else ''})"
        ]
        m = self.get("metrics") or {}
        shown = [k for k in SHOWN if k in m]
        if shown:
            lines.append(f"step {m.get('step')}: " + ", ".join(f"{k} {m[k]:.4g}" for k in shown))
        if any(k.startswith("val_ap/") for k in m):
            lines.append(per_genre_line(m, self["genres"]))
        f = m.get("finegrained") or {}
        if "val_halves_top1" in f or "val_halves_top1_before" in f:
            lines.append(
                f"fine-grained: halves nearest neighbours {_figure(f, 'val_halves_top1_before')} -> "
                f"{_figure(f, 'val_halves_top1')}, silhouette by genre {_figure(f, 'val_silhouette_before')} -> "
                f"{_figure(f, 'val_silhouette')} (held-out trailers"
                + ("; silhouette undefined: every held-out trailer a genre set of its own, or one set for all)"
                   if "val_silhouette" not in f else ")")
            )  # fmt: skip
        lines += [f"{name}: {path}" for name, path in self["outputs"].items()]
        return "\n".join(lines)


def _figure(m: dict, key: str) -> str:
    """A figure as printed: 3 decimals, or `undefined` where the run could not compute it (never nan)."""
    v = m.get(key)
    return f"{v:.3f}" if isinstance(v, (int, float)) and math.isfinite(v) else "undefined"


def per_genre_line(m: dict, genres: list[str]) -> str:
    """Held-out AP / F1 per genre, lowest AP first (the genre that lags leads), and the genres without a held-out
    trailer, whose figures are undefined."""
    scored = sorted((g for g in genres if f"val_ap/{g}" in m), key=lambda g: m[f"val_ap/{g}"])
    shown = ", ".join(f"{g} {m[f'val_ap/{g}']:.2f}/{m[f'val_f1/{g}']:.2f}" for g in scored[:12])
    more = f", {len(scored) - 12} more" if len(scored) > 12 else ""
    missing = [g for g in genres if f"val_ap/{g}" not in m]
    none = f"; undefined (no held-out trailer): {', '.join(missing)}" if missing else ""
    return f"per genre, held-out AP/F1, lowest first: {shown}{more}{none}"


def head_file(genre: bytes, feature_model: str) -> bytes:
    """The coarse model's classifier l in the heads' export format (a `genre` head over features/trailer's
    `feature_model` rows): `movielib serve` loads it like any head."""
    saved = torch.load(io.BytesIO(genre), map_location="cpu", weights_only=True)
    m = saved["model"]
    buf = io.BytesIO()
    torch.save(
        {
            "state_dict": {k.removeprefix("head."): v for k, v in saved["state_dict"].items() if k.startswith("head.")},
            "head": {
                "name": "genre",
                "in_dim": m["bottleneck"],
                "out_dim": len(saved["genres"]),
                "width": m["head_hidden"],
                "dropout": 0.0,
            },  # fmt: skip
            "task": "multilabel",
            "label_names": list(saved["genres"]),
            "features": "features/trailer",
            "feature_model": feature_model,
            "level": "movie",
            "threshold": saved["threshold"],
            "params": {"name": "genre", "threshold": saved["threshold"]},
        },
        buf,
    )
    return buf.getvalue()


def run(cfg: TrainGenreConfig, args=None) -> GenreSummary:
    """`movielib train genre`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    s3 = S3Options.from_config(cfg.s3)
    genres, names = labelled(CatalogStore(cfg.catalog, s3), cfg.genres, s3)  # a bad genres file: before Ray
    init_ray(cfg.ray_address)
    return run_train_genre(cfg, genres, names)


def run_train_genre(
    cfg: TrainGenreConfig, genres: dict[str, list[str]] | None = None, names: list[str] | None = None
) -> GenreSummary:
    s3 = S3Options.from_config(cfg.s3)
    store = CatalogStore(cfg.catalog, s3)
    if genres is None or names is None:
        genres, names = labelled(store, cfg.genres, s3)
    movies, experts = catalog_trailers(store, cfg.expert_inputs(), genres)  # every table checked before training
    held = held_out_trailers(genres, cfg.optim.val_fraction, cfg.optim.seed)
    n_train = len(genres) - len(held)
    if n_train < cfg.optim.batch:
        raise ConfigError(
            f"optim.batch: {n_train} labelled trailers to train on, fewer than one batch ({cfg.optim.batch}); "
            f"lower optim.batch or optim.val_fraction, or label more trailers"
        )
    folder = run_folder(cfg.run)
    write_run_config(folder, cfg, s3)
    for name, meta in experts.items():
        print(f"{name}: {meta['table']}, model {meta['model']}, version {meta['version'] or '-'}", flush=True)
    dims = {name: meta["dim"] for name, meta in experts.items()}
    clips = cfg.model.clips * cfg.model.sequences
    train_rows = movies.filter(expr=video_in(held, inside=False))
    val_rows = movies.filter(expr=video_in(held))

    def datasets(halves: bool) -> dict:
        return {
            "train": per_epoch(train_rows, Trailers(clips, dims, genres, names, halves=halves)),
            "val": per_epoch(val_rows, Trailers(clips, dims, genres, names, cfg.optim.seed, halves=halves)),
        }

    micro = cfg.optim.batch // cfg.scaling.workers
    common = dict(scaling=cfg.scaling, deepspeed=cfg.deepspeed, run=cfg.run, micro_batch=micro, s3=s3)
    loop = GenreLoop(cfg.model, cfg.optim, experts, names, feature_stats(train_rows, dims))
    result = launch(genre_loop, loop, stage=STAGE, datasets=datasets(False), **common)
    metrics = result.metrics or last_epoch(f"{folder}/{STAGE}", s3)  # a run started again after it finished: its log
    feature_model = "genre-coarse-embedding" if cfg.finegrained.epochs else "genre-embedding"
    write_bytes(f"{folder}/{HEAD}", head_file(read_bytes(f"{folder}/{EXPORT}", s3), feature_model), s3)
    outputs = {"model": f"{folder}/{EXPORT}", "head": f"{folder}/{HEAD}", "curves": f"{folder}/{STAGE}/{CURVES}"}
    if cfg.finegrained.epochs:
        fine_loop = FineGrainedLoop(f"{folder}/{EXPORT}", cfg.finegrained, n_train // cfg.optim.batch)
        fine = launch(finegrained_loop, fine_loop, stage=FINE_STAGE, datasets=datasets(True), **common)
        metrics["finegrained"] = fine.metrics or last_epoch(f"{folder}/{FINE_STAGE}", s3)
        outputs |= {"finegrained": f"{folder}/{FINE_EXPORT}", "finegrained curves": f"{folder}/{FINE_STAGE}/{CURVES}"}
    summary = GenreSummary(
        {
            "run": folder,
            "genres": names,
            "experts": experts,
            "trailers": {"train": n_train, "val": len(held)},
            "held_out": sorted(held),
            "metrics": metrics,
            "outputs": outputs,
        }
    )
    write_bytes(f"{folder}/summary.json", json.dumps(summary, indent=2, default=str).encode(), s3)
    return summary
