"""`movielib pretrain scenes`: Movies2Scenes' three steps over a tagged catalog, as one resumable run.

    <run.folder>/<run.name>/
        config.yaml            the resolved config
        similarity/            step 1: Ray Train checkpoints, metrics.csv, curves.png
        similarity.pt          step 1's model (E_learnable + output layer), plain torch
        scene_pairs.parquet    step 2: the selected scene pairs
        scenes/                step 3: checkpoints, metrics.csv, curves.png
        scene_encoder.pt       step 3's scene encoder (no DeepSpeed needed to load it)
        summary.json

A step whose output exists is done; started again with the same run folder, the job goes on from
the first step that is not, and a step cut off mid-way resumes from its last checkpoint.
"""

from __future__ import annotations

import io
import json
import random
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import actor_pool, exists, init_ray, read_bytes, run_folder, write_bytes, write_run_config
from movielib.store import CatalogStore
from movielib.train.launcher import launch
from movielib.train.movies2scenes.config import PretrainScenesConfig, SimilarityModelSection
from movielib.train.movies2scenes.data import PAIRS, PadPairs, decode_scenes, movie_pairs, scene_frames
from movielib.train.movies2scenes.data import movies as movie_features
from movielib.train.movies2scenes.encoder import tower_config
from movielib.train.movies2scenes.loops import (
    ScenesLoop,
    SimilarityLoop,
    scenes_loop,
    similarity_loop,
    similarity_model,
)
from movielib.train.movies2scenes.pairs import SCENE_PAIRS, select_scene_pairs
from movielib.train.movies2scenes.similar import dissimilar, read_similar
from movielib.train.runlog import CURVES, last_epoch
from movielib.train.tables import catalog_ids, feature_dim, feature_stats, per_epoch, read_genres

if TYPE_CHECKING:
    pass

SIMILARITY, SCENE_PAIRS_FILE, ENCODER = "similarity.pt", "scene_pairs.parquet", "scene_encoder.pt"


def catalog_pairs(cfg: PretrainScenesConfig, store: CatalogStore) -> tuple[pa.Table, pa.Table, int]:
    """Similar pairs (label 1) and drawn dissimilar pairs (label 0, for genres: sharing no genre) of catalog
    movies, named by video_id, each in a random order (which movie is the query is drawn, not alphabetical);
    split by movie: `val_fraction` of the movies are held out, and every pair that names one is a validation
    pair, never trained on. Also how many similar pairs named movies the catalog does not hold."""
    sim = cfg.similarity
    ids = catalog_ids(store)
    named = read_similar(sim.path, sim.source, sim.per_movie, sim.seed, sim.text_model, sim.min_jaccard)
    similar = {tuple(sorted((ids[a], ids[b]))) for a, b in named if a in ids and b in ids and ids[a] != ids[b]}
    if not similar:
        raise ConfigError(
            f"similarity.path: none of the {len(named)} similar pairs in {sim.path!r} names two tagged "
            f"movies of {cfg.catalog!r} (by uri or video_id)"
        )
    movies = sorted({m for p in similar for m in p})
    genres = {ids[m]: g for m, g in read_genres(sim.path).items() if m in ids} if sim.source == "genres" else None
    negatives = dissimilar(similar, movies, sim.negatives * len(similar), sim.seed, genres)
    rng = random.Random(sim.seed)
    rows = [(a, b, 1.0) for a, b in sorted(similar)] + [(a, b, 0.0) for a, b in sorted(negatives)]
    rows = [(b, a, y) if rng.random() < 0.5 else (a, b, y) for a, b, y in rows]  # the query side, drawn
    rng.shuffle(rows)
    held = set(rng.sample(movies, int(round(sim.val_fraction * len(movies)))))
    val = [r for r in rows if r[0] in held or r[1] in held]
    train = [r for r in rows if r[0] not in held and r[1] not in held]
    if not train:
        raise ConfigError(
            f"similarity.val_fraction: holding out {len(held)} of {len(movies)} movies leaves no pair to train on"
        )

    def table(rs: list) -> pa.Table:
        return pa.Table.from_pylist([{"a": a, "b": b, "label": y} for a, b, y in rs], schema=PAIRS)

    return table(train), table(val), len(named) - len(similar)


def shot_stats(
    store: CatalogStore, pairs: pa.Table, table: str, model: str, version: str | None, dim: int
) -> tuple[list[float], list[float]]:
    """The mean and standard deviation per dimension of the shot features of the movies `pairs` trains on: what
    step 1's E_learnable standardises its input with (a pass over those movies' features, on the cluster)."""
    names = set(pairs["a"].to_pylist()) | set(pairs["b"].to_pylist())

    def as_input(batch: pa.Table) -> pa.Table:
        keep = batch.filter(pc.is_in(batch["video_id"], value_set=pa.array(sorted(names), pa.string())))
        flat = keep["features"]
        has = [[True] * (n // dim) for n in pc.list_value_length(flat).to_pylist()]
        return pa.table({"x_emb": flat, "x_has": pa.array(has, pa.list_(pa.bool_()))})

    rows = movie_features(store, table, model, version or None).map_batches(as_input, batch_format="pyarrow")
    return tuple(feature_stats(rows, {"x": dim})["x"])


class SelectScenes:
    """Step 2 on a batch of similar movie pairs (all shots): scene pairs in E_learnable's selection space."""

    def __init__(self, similarity: str, window: int, keep: float, s3: S3Options | None = None):
        saved = torch.load(io.BytesIO(read_bytes(similarity, s3)), map_location="cpu", weights_only=True)
        model = similarity_model(SimilarityModelSection(**saved["model"]), saved["in_dim"])
        model.load_state_dict(saved["state_dict"])
        self.encoder, self.in_dim, self.window, self.keep = model.encoder.eval(), saved["in_dim"], window, keep

    @torch.no_grad()
    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for r in batch.to_pylist():
            ea, eb = (
                self.encoder.selection_space(
                    torch.tensor(np.asarray(r[f"{s}_features"], np.float32).reshape(-1, self.in_dim))
                )
                for s in ("a", "b")
            )
            sa, sb = r["a_shot_idx"], r["b_shot_idx"]
            for p in select_scene_pairs(ea @ eb.T, self.window, self.keep):
                rows.append(
                    {
                        "movie_a": r["a"],
                        "a_first": sa[p.first],
                        "a_last": sa[p.first + self.window - 1],
                        "movie_b": r["b"],
                        "b_first": sb[p.second],
                        "b_last": sb[p.second + self.window - 1],
                        "score": p.score,
                    }
                )
        return pa.Table.from_pylist(rows, schema=SCENE_PAIRS)


def check_catalog(cfg: PretrainScenesConfig, store: CatalogStore) -> tuple[str, str]:
    """The tables the three steps read, before any work; the features' model and version (default: newest)."""
    names = set(store.table_names())
    if "videos" not in names:
        raise ConfigError(f"catalog: {cfg.catalog!r} holds no tagged catalog (no videos table)")
    for table in (cfg.features.table, "keyframes"):
        if table not in names:
            raise ConfigError(
                f"catalog: {cfg.catalog!r} has no {table} table; tag it with "
                "--set features.keyframes=true (keyframes and features/keyframe)"
            )
    model = store.feature_model(cfg.features.table, cfg.features.model, "features.model")
    return model, store.feature_version(cfg.features.table, model, cfg.features.version, "features.version")


def held_out_movies(train: pa.Table, val: pa.Table) -> set[str]:
    """The movies step 1 held out: named by validation movie pairs and by no training pair."""
    trained = set(train["a"].to_pylist()) | set(train["b"].to_pylist())
    return (set(val["a"].to_pylist()) | set(val["b"].to_pylist())) - trained


def split_scene_pairs(pairs: pa.Table, held: set[str]) -> tuple[pa.Table, pa.Table]:
    """Step 2's scene pairs -> those step 3 trains on (both movies trained on in step 1) and those it scores each
    epoch (a held-out movie on either side: never trained on)."""
    ids = pa.array(sorted(held), pa.string())
    named = pc.or_(pc.is_in(pairs["movie_a"], ids), pc.is_in(pairs["movie_b"], ids))
    return pairs.filter(pc.invert(named)), pairs.filter(named)


class ScenesSummary(dict):
    """The run's summary.json, rendered for the console."""

    exit_code = 0

    def render(self) -> str:
        lines = [
            f"run {self['run']}: {self['pairs']['train']} movie pairs trained on, {self['pairs']['val']} "
            f"held out; {self['scene_pairs']} scene pairs selected"
        ]
        for stage, keys in (
            ("similarity", ("loss", "similarity_accuracy")),
            ("scenes", ("loss", "moco_top1", "moco_top5", "val_moco_top1", "val_scene_top1", "val_scene_top1_chance")),
        ):
            metrics = self.get(stage) or {}
            if metrics:
                lines.append(
                    f"{stage}: step {metrics.get('step')}, "
                    + ", ".join(f"{k} {metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), float))
                )
        lines += [f"{name}: {path}" for name, path in self["outputs"].items() if isinstance(path, str)]
        lines += [f"curves: {path}" for path in self["outputs"]["curves"]]
        return "\n".join(lines)


def run(cfg: PretrainScenesConfig, args=None) -> ScenesSummary:
    """`movielib pretrain scenes`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    return run_pretrain_scenes(cfg)


def run_pretrain_scenes(cfg: PretrainScenesConfig) -> ScenesSummary:
    """The three steps, each skipped when its output is in the run folder already; returns the summary."""

    s3 = S3Options.from_config(cfg.s3)
    store = CatalogStore(cfg.catalog, s3)
    model, version = check_catalog(cfg, store)
    folder = run_folder(cfg.run)
    write_run_config(folder, cfg, s3)  # a changed setting is refused before any step runs
    train, val, unmatched = catalog_pairs(cfg, store)
    table = cfg.features.table
    in_dim = feature_dim(store, table, model, version or None, "features.table")
    summary = ScenesSummary(
        {
            "run": folder,
            "pairs": {"train": train.num_rows, "val": val.num_rows, "similar_not_in_catalog": unmatched},
            "features": {"table": table, "model": model, "version": version},
        }
    )
    print(f"features: {table}, model {model}, version {version or '-'}", flush=True)
    print(
        f"movie pairs: {train.num_rows} to train on, {val.num_rows} held out ({unmatched} similar pairs name movies "
        f"not in the catalog)",
        flush=True,
    )

    m = cfg.similarity_model
    workers = cfg.scaling.workers
    if not exists(f"{folder}/{SIMILARITY}", s3):
        print("step 1/3: movie similarity", flush=True)
        result = launch(
            similarity_loop,
            SimilarityLoop(m, in_dim, cfg.similarity.seed, shot_stats(store, train, table, model, version, in_dim)),
            cfg.scaling,
            cfg.deepspeed,
            cfg.run,
            m.batch // workers,
            stage="similarity",
            s3=s3,
            datasets={
                name: per_epoch(
                    movie_pairs(store, pairs, table, model, version or None, m.shots), PadPairs(m.shots, in_dim)
                )
                for name, pairs in (("train", train), ("val", val))
            },
        )
        summary["similarity"] = result.metrics

    if not exists(f"{folder}/{SCENE_PAIRS_FILE}", s3):
        print("step 2/3: scene pairs of similar movies", flush=True)
        both = pa.concat_tables([train, val])
        similar = both.filter(pc.equal(both["label"], 1.0))
        selected = movie_pairs(store, similar, table, model, version or None).map_batches(
            SelectScenes,
            fn_constructor_kwargs={
                "similarity": f"{folder}/{SIMILARITY}",
                "window": cfg.scenes.shots,
                "keep": cfg.selection.keep,
                "s3": s3,
            },
            batch_size=8,
            batch_format="pyarrow",
            **actor_pool(),  # on GPUs when the cluster has them
        )
        pairs = pa.concat_tables(
            [*selected.iter_batches(batch_format="pyarrow", batch_size=None), SCENE_PAIRS.empty_table()]
        ).cast(SCENE_PAIRS)
        buf = io.BytesIO()
        pq.write_table(pairs, buf)
        write_bytes(f"{folder}/{SCENE_PAIRS_FILE}", buf.getvalue(), s3)
    pairs = pq.read_table(io.BytesIO(read_bytes(f"{folder}/{SCENE_PAIRS_FILE}", s3)))
    summary["scene_pairs"] = pairs.num_rows
    held = held_out_movies(train, val)
    summary["held_out"] = sorted(held)
    pairs, val_pairs = split_scene_pairs(pairs, held)
    print(
        f"scene pairs: {pairs.num_rows} to train on, {val_pairs.num_rows} of held-out movies to score "
        f"(in {folder}/{SCENE_PAIRS_FILE})",
        flush=True,
    )

    s = cfg.scenes
    if not exists(f"{folder}/{ENCODER}", s3):
        if pairs.num_rows < s.batch:
            raise ConfigError(
                f"scenes.batch: step 2 selected {pairs.num_rows} scene pairs of training movies, fewer than one "
                f"batch ({s.batch}); lower scenes.batch or similarity.val_fraction, or add movies"
            )
        print("step 3/3: scene encoder (MoCo)", flush=True)
        from movielib.models.clip import ClipSpec, FramePreprocess

        spec = ClipSpec(cfg.model.name, cfg.model.weights, cfg.model.random_weights, s3)
        source = spec.validate()
        pre = FramePreprocess.for_spec(spec)
        loop = ScenesLoop(
            s,
            cfg.similarity.seed,
            spec,
            tower_config(source.model_cfg),
            tuple(pre.mean),
            tuple(pre.std),
            pairs.num_rows // s.batch,
            validate=val_pairs.num_rows > 0,
        )  # the spec built here is the workers' too
        result = launch(
            scenes_loop,
            loop,
            cfg.scaling,
            cfg.deepspeed,
            cfg.run,
            s.batch // workers,
            stage="scenes",
            s3=s3,
            datasets={
                "train": per_epoch(scene_frames(store, pairs), decode_scenes),
                **({"val": per_epoch(scene_frames(store, val_pairs), decode_scenes)} if val_pairs.num_rows else {}),
            },
        )
        summary["scenes"] = result.metrics
    for stage in ("similarity", "scenes"):  # a step done by an earlier run: its final metrics from its log
        if stage not in summary:
            summary[stage] = last_epoch(f"{folder}/{stage}", s3)
    summary["outputs"] = {
        "similarity_model": f"{folder}/{SIMILARITY}",
        "scene_pairs": f"{folder}/{SCENE_PAIRS_FILE}",
        "scene_encoder": f"{folder}/{ENCODER}",
        "curves": [f"{folder}/{st}/{CURVES}" for st in ("similarity", "scenes")],
    }
    write_bytes(f"{folder}/summary.json", json.dumps(summary, indent=2, default=str).encode(), s3)
    return summary
