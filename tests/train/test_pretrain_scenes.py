"""`movielib pretrain scenes` end to end on a planted-structure catalog (real local Ray, 2 CPU workers, gloo,
DeepSpeed ZeRO-2, a random-init tiny CLIP tower), then `movielib embed scenes`.

The planted catalog (tests/train/planted.py): genres own scene clusters, movies of a genre are similar,
keyframes are the cluster's grating under colour casts that dominate what an untrained tower sees.
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY, movielib_cli
from planted import build, precision_at_k

from movielib.config import build_config, load_config
from movielib.errors import ConfigError
from movielib.models.clip import ClipSpec, load_clip, normalize_frames
from movielib.store.store import CatalogStore
from movielib.train.movies2scenes.config import PretrainScenesConfig
from movielib.train.movies2scenes.data import decode_jpegs
from movielib.train.movies2scenes.embed import SCENE_MODEL, SHOT_MODEL, embed_scenes, scene_windows
from movielib.train.movies2scenes.encoder import SceneEncoder
from movielib.train.movies2scenes.job import ENCODER, SCENE_PAIRS_FILE, SIMILARITY, run_pretrain_scenes
from movielib.train.runlog import RunLog

pytestmark = pytest.mark.slow

SMALL = {  # the paper's steps at test size: 64-shot movies, 3-shot scenes, a small queue, fast learning rates
    "similarity": {"val_fraction": 0.2},
    "similarity_model": {
        "shots": 64,
        "avg_kernel": 8,
        "avg_stride": 4,
        "max_kernel": 8,
        "max_stride": 4,
        "dim": 64,
        "batch": 16,
        "epochs": 12,
    },
    "scenes": {
        "shots": 3,
        "dim": 32,
        "queue": 256,
        "momentum": 0.99,
        "lr": 1e-3,
        "warmup_epochs": 1,
        "batch": 32,
        "epochs": 3,
    },
    "model": {"name": TINY, "random_weights": True},
    "scaling": {"workers": 2, "cpus_per_worker": 0.5},
}


def _config(planted, folder, name="planted", **extra) -> PretrainScenesConfig:
    data = {
        **SMALL,
        "catalog": planted.dest,
        "similarity": {**SMALL["similarity"], "path": planted.genres_file},
        "run": {"folder": str(folder), "name": name},
        **extra,
    }
    return build_config(PretrainScenesConfig, data)


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("m2s")
    planted = build(str(root / "catalog"), root)
    cfg = _config(planted, root / "runs")
    summary = run_pretrain_scenes(cfg)
    return planted, cfg, summary, root / "runs" / "planted"


def test_the_run_folder_holds_config_checkpoints_metrics_curves_and_exports(trained):
    planted, cfg, summary, run = trained
    assert (
        load_config(str(run / "config.yaml"), None, schema=PretrainScenesConfig) == cfg
    )  # the resolved config, reloadable
    for stage, columns, steps in (
        ("similarity", {"loss", "lr", "similarity_accuracy"}, 12),
        ("scenes", {"loss", "lr", "moco_top1", "moco_top5"}, 3),
    ):
        log = RunLog(str(run / stage))
        epochs = [r for r in log.by_step() if r["kind"] == "epoch"]  # besides a row every log_every_steps steps
        assert columns <= set(epochs[0]) and [r["epoch"] for r in epochs] == list(range(1, steps + 1))
        assert (run / stage / "tensorboard").is_dir()  # TensorBoard's event files beside metrics.csv
        assert (run / stage / "curves.png").stat().st_size > 5000
        assert any(p.name.startswith("checkpoint_") for p in (run / stage).iterdir())
    for name in (SIMILARITY, SCENE_PAIRS_FILE, ENCODER, "summary.json"):
        assert (run / name).stat().st_size > 0
    assert summary["outputs"]["scene_encoder"].endswith(ENCODER)
    # the exported encoder is a plain torch file: it loads where DeepSpeed is never imported
    code = (
        "import sys; from movielib.train.movies2scenes.encoder import load_scene_encoder; "
        f"enc, meta = load_scene_encoder(open({str(run / ENCODER)!r}, 'rb').read()); "
        "assert 'deepspeed' not in sys.modules and meta['shots'] == 3, meta"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_step1_separates_similar_from_dissimilar_held_out_pairs(trained):
    _, _, summary, run = trained
    epochs = [r for r in RunLog(str(run / "similarity")).by_step() if r["kind"] == "epoch"]
    first, last = epochs[0], epochs[-1]
    print("held-out pair accuracy", first["similarity_accuracy"], "->", last["similarity_accuracy"])
    assert summary["pairs"]["val"] >= 30
    assert last["similarity_accuracy"] >= 0.75 and last["loss"] < first["loss"]  # chance: 0.5


def test_step2_selects_scene_pairs_from_matching_clusters(trained):
    planted, _, _, run = trained
    pairs = pq.read_table(run / SCENE_PAIRS_FILE).to_pylist()
    middle = lambda movie, first, last: planted.cluster[(movie, (first + last) // 2)]  # noqa: E731
    same = np.mean(
        [
            middle(p["movie_a"], p["a_first"], p["a_last"]) == middle(p["movie_b"], p["b_first"], p["b_last"])
            for p in pairs
        ]
    )
    # chance: the same two movies' scenes paired at random
    rng = np.random.default_rng(0)
    chance = np.mean(
        [
            planted.cluster[(p["movie_a"], int(rng.integers(48)))]
            == planted.cluster[(p["movie_b"], int(rng.integers(48)))]
            for p in pairs
        ]
    )
    print(f"selected scene pairs from one cluster: {same:.2f} vs {chance:.2f} at random ({len(pairs)} pairs)")
    assert len(pairs) > 100 and same > 0.8 and same > 2.5 * chance
    for movie in {p["movie_a"] for p in pairs}:  # non-overlapping within each movie, per movie pair
        for other in {p["movie_b"] for p in pairs if p["movie_a"] == movie}:
            spans = sorted((p["a_first"], p["a_last"]) for p in pairs if (p["movie_a"], p["movie_b"]) == (movie, other))
            assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))


def _held_out(planted, store, model):
    rows = [r for r in store.read_table("features/scene", model=model).to_pylist() if r["video_id"] in planted.held_out]
    return (
        np.array([r["embedding"] for r in rows]),
        np.array([planted.cluster[(r["video_id"], r["shot_idx"])] for r in rows]),
        np.array([r["video_id"] for r in rows]),
    )


def _untrained_scene_embeddings(planted, store, shots=3):
    """The baseline: the CLIP tower the encoder started from, over the same scenes (no training)."""
    clip = load_clip(ClipSpec(TINY, random_weights=True))
    encoder = SceneEncoder(clip.model.visual).eval()
    keyframes = store.read_table("keyframes").to_pylist()
    out, labels, groups = [], [], []
    for vid in sorted(planted.held_out):
        rows = sorted((r for r in keyframes if r["video_id"] == vid), key=lambda r: r["shot_idx"])
        frames = decode_jpegs([r["jpeg"] for r in rows])
        with torch.no_grad():
            x = normalize_frames(
                torch.from_numpy(frames[scene_windows(len(frames), shots)]), clip.preprocess.mean, clip.preprocess.std
            )
            out.append(encoder(x).numpy())
        labels += [planted.cluster[(vid, r["shot_idx"])] for r in rows]
        groups += [vid] * len(rows)
    return np.concatenate(out), np.array(labels), np.array(groups)


def test_embed_scenes_writes_features_that_retrieve_held_out_scenes_better_than_the_untrained_tower(trained):
    planted, _, _, run = trained
    out = embed_scenes(str(run), planted.dest)
    store = CatalogStore(planted.dest)
    n_shots = store.read_table("shots").num_rows
    assert out["rows"] == 2 * n_shots and set(out["models"]) == {SHOT_MODEL, SCENE_MODEL}
    # the same weights again, by the `ray job submit` entry point: their rows are replaced, not added
    again = movielib_cli("embed", "scenes", str(run), planted.dest, script=("jobs/embed_scenes.py",),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    console, _ = again.communicate(timeout=300)
    assert again.returncode == 0 and out["model_version"] in console, console[-3000:]
    table = store.read_table("features/scene")
    assert table.num_rows == 2 * n_shots and set(table["model_version"].to_pylist()) == {out["model_version"]}
    trained_p5 = precision_at_k(*_held_out(planted, store, SCENE_MODEL))
    shot_p5 = precision_at_k(*_held_out(planted, store, SHOT_MODEL))
    baseline = precision_at_k(*_untrained_scene_embeddings(planted, store))
    print(
        f"held-out scene retrieval precision@5: trained {trained_p5:.3f} (shot-level {shot_p5:.3f}) "
        f"vs untrained tower {baseline:.3f}"
    )
    assert trained_p5 > baseline + 0.3 and shot_p5 > baseline + 0.3


def test_a_killed_job_resumes_from_its_last_checkpoint_and_ends_like_the_uninterrupted_run(trained, tmp_path):
    """The launcher's resume after a killed driver, in step 3 (the genre and multimodal jobs' tests kill theirs the
    same way)."""
    from conftest import as_sets, assert_resumed, killed_and_run_again

    planted, cfg, _, run = trained
    resumed = tmp_path / "runs" / "planted"
    resumed.mkdir(parents=True)
    for done in (SIMILARITY, SCENE_PAIRS_FILE):  # steps 1 and 2 done: the kill lands in step 3
        shutil.copy(run / done, resumed / done)
    args = [
        "pretrain",
        "scenes",
        planted.dest,
        "--similarity",
        planted.genres_file,
        "--run-folder",
        str(tmp_path / "runs"),
        "--name",
        "planted",
        "--model",
        TINY,
        "--random-weights",
        *as_sets({k: v for k, v in SMALL.items() if k != "model"}),
    ]
    # run again by the `ray job submit` entry point (each of jobs/ runs a job once in the suite)
    [(last, after)] = killed_and_run_again(args, resumed / "scenes", scripts=((), ("jobs/pretrain_scenes.py",)))
    from movielib.train.movies2scenes.job import split_scene_pairs

    held = set(json.loads((resumed / "summary.json").read_text())["held_out"])  # step 3 trains on the rest's pairs
    steps_per_epoch = split_scene_pairs(pq.read_table(resumed / SCENE_PAIRS_FILE), held)[0].num_rows // cfg.scenes.batch
    whole = [r for r in RunLog(str(run / "scenes")).by_step() if r["kind"] == "epoch"]
    assert whole[-1]["step"] == 3 * steps_per_epoch
    assert_resumed(last, after, 3, whole[-1]["step"])  # ends at the uninterrupted run's step
    assert after[0]["resumed_step"] == last * steps_per_epoch
    assert (resumed / ENCODER).exists()


def test_a_bad_pretrain_config_fails_before_any_work_naming_the_field(tmp_path):
    with pytest.raises(ConfigError, match="similarity_model.max_kernel must be <="):
        build_config(
            PretrainScenesConfig, {"catalog": "x", "similarity": {"path": "g.csv"}, "similarity_model": {"shots": 64}}
        )
    with pytest.raises(ConfigError, match="scenes.frames_per_shot must be 1"):
        build_config(
            PretrainScenesConfig, {"catalog": "x", "similarity": {"path": "g.csv"}, "scenes": {"frames_per_shot": 2}}
        )
    with pytest.raises(ConfigError, match="similarity.path is required"):
        build_config(PretrainScenesConfig, {"catalog": "x"})
    with pytest.raises(ConfigError, match="unknown config field 'scenes.lr_max'"):
        build_config(PretrainScenesConfig, {"catalog": "x", "similarity": {"path": "g.csv"}, "scenes": {"lr_max": 1}})
    # a catalog tagged without keyframes: refused before Ray Train starts
    from movielib.train.movies2scenes.job import check_catalog

    (tmp_path / "genres.csv").write_text("movie,genres\n")
    cfg = build_config(PretrainScenesConfig, {"catalog": str(tmp_path), "similarity": {"path": "g.csv"}})
    with pytest.raises(ConfigError, match="catalog"):
        check_catalog(cfg, CatalogStore(str(tmp_path)))
