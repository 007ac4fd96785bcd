"""Each learning method learns from what the tagging job writes, end to end: generated videos (audio tracks, .srt
sidecars) -> `movielib tag` -> the method's CLI, as a user runs them, each against a baseline computed here on the
same features (planted feature tables prove the math; only these prove the product)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, movielib_cli

from movielib.store import CatalogStore

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[2] / "movielib" / "demo"


def _cli(*args: str, timeout: float = 540) -> str:
    """`movielib ARGS` as a driver of the session's Ray; its console (it must succeed)."""
    proc = movielib_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        console, _ = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    assert proc.returncode == 0, console[-4000:]
    return console


def _tag(source: Path, dest: Path, *sets: str) -> CatalogStore:
    _cli("tag", str(source), str(dest), "--model", TINY, "--random-weights", "--set", "people.enabled=false",
         *(x for s in sets for x in ("--set", s)))  # fmt: skip
    return CatalogStore(str(dest))


def _per_shot(store: CatalogStore, table: str, model: str | None = None) -> dict[tuple[str, int], np.ndarray]:
    t = store.read_table(table, columns=["video_id", "shot_idx", "model", "embedding"])
    return {
        (v, s): np.asarray(e, np.float64)
        for v, s, m, e in zip(*(t[c].to_pylist() for c in ("video_id", "shot_idx", "model", "embedding")))
        if e is not None and (model is None or m == model)
    }


def _candidate_top1(queries: np.ndarray, keys: np.ndarray, size: int, draws: int = 30, seed: int = 0) -> float:
    """Each query's own key found nearest (cosine) among `size` candidates: itself and size - 1 other keys, drawn
    `draws` times per query with a fixed seed (the same sets for every method scored)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    k = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    rng, n, hits = np.random.default_rng(seed), len(q), []
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        for _ in range(draws):
            pool = np.concatenate([[i], rng.choice(others, size - 1, replace=False)])
            hits.append(np.argmax(k[pool] @ q[i]) == 0)
    return float(np.mean(hits))


@pytest.fixture(scope="module")
def looks(ray_local, tmp_path_factory):
    """The pretraining demo's 3-genre catalog (each genre its own looks), each shot's tone its look's, .srt
    sidecars naming the looks, tagged once with keyframes, audio and subtitle cues."""
    from movielib.demo.pretrain import write_genre_catalog

    tmp = tmp_path_factory.mktemp("looks")
    genres = write_genre_catalog(
        tmp, str(tmp / "catalog") + "/", movies_per_genre=5, shots=24, subtitles=True, follow=0.8
    )
    store = _tag(tmp / "catalog", tmp / "tags", "features.cues=true", "features.keyframes=true")
    return store, genres, tmp


def test_multimodal_pretraining_learns_from_tagged_videos_beyond_a_ridge_map_and_the_base_features(looks):
    from sklearn.linear_model import RidgeCV

    store, _, tmp = looks
    console = _cli("pretrain", "multimodal", store.dest, "--config", str(DEMO / "pretrain_multimodal.yaml"),
                   "--run-folder", str(tmp / "runs"))  # fmt: skip
    run = tmp / "runs" / "multimodal"
    summary = json.loads((run / "summary.json").read_text())
    held = set(summary["held_out"])
    m = summary["metrics"]
    chance = m["val_video_to_audio_top1_chance"]
    assert f"(retrieval chance {chance:.3g})" in console
    assert m["val_video_to_audio_top1"] >= 3 * chance and m["val_video_to_language_top1"] >= 3 * chance, m
    _cli("embed", "multimodal", str(run), store.dest)
    editing = _cli("eval", "editing", str(run), store.dest)

    # held-out video -> audio retrieval: the pretrained features against a ridge map from the standardised base
    # video features to the standardised base audio features, fitted on the training movies; the same candidate sets
    video, audio = _per_shot(store, "features/image"), _per_shot(store, "features/audio")
    shots = sorted(k for k in video if k in audio)
    train = [k for k in shots if k[0] not in held]
    test = [k for k in shots if k[0] in held]
    x, y = np.stack([video[k] for k in train]), np.stack([audio[k] for k in train])
    xs, ys = (x.mean(0), x.std(0) + 1e-9), (y.mean(0), y.std(0) + 1e-9)
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((x - xs[0]) / xs[1], (y - ys[0]) / ys[1])
    predicted = ridge.predict((np.stack([video[k] for k in test]) - xs[0]) / xs[1])
    actual = (np.stack([audio[k] for k in test]) - ys[0]) / ys[1]
    size = int(round(1 / chance))
    ridge_top1 = _candidate_top1(predicted, actual, size)
    mv = _per_shot(store, "features/multimodal", "multimodal-video")
    ma = _per_shot(store, "features/multimodal", "multimodal-audio")
    pre_top1 = _candidate_top1(np.stack([mv[k] for k in test]), np.stack([ma[k] for k in test]), size)
    print(f"held-out video -> audio top-1 among {size}: pretrained {pre_top1:.3f}, ridge {ridge_top1:.3f}")
    assert pre_top1 >= ridge_top1 and pre_top1 >= 3 / size, (pre_top1, ridge_top1)

    # the editing tasks: the pretrained features above the base features at both
    figures = json.loads((run / "editing.json").read_text())["tasks"]
    for task in ("sso", "nss"):
        assert figures[task]["pretrained"] > figures[task]["base"], (editing, figures)


def _movie_means(rows: dict[tuple[str, int], np.ndarray]) -> dict[str, np.ndarray]:
    movies: dict[str, list] = {}
    for (video, _), x in rows.items():
        movies.setdefault(video, []).append(x)
    return {v: np.mean(xs, axis=0) for v, xs in movies.items()}


def _same_genre_neighbours(means: dict[str, np.ndarray], genre: dict[str, str]) -> float:
    """The share of movies whose nearest other movie (cosine of their mean features) is of their genre."""
    ids = sorted(means)
    x = np.stack([means[v] for v in ids])
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean([genre[ids[i]] == genre[ids[j]] for i, j in enumerate(sim.argmax(1))]))


def _genre_of(store: CatalogStore, genres_csv: Path) -> dict[str, str]:
    named = dict(line.split(",") for line in genres_csv.read_text().splitlines()[1:])
    videos = store.read_table("videos", columns=["video_id", "uri"]).to_pylist()
    by_name = {u.rsplit("/", 1)[-1]: g for u, g in named.items()}
    return {v["video_id"]: by_name[v["uri"].rsplit("/", 1)[-1]] for v in videos}


def test_movies2scenes_learns_from_tagged_videos_its_held_out_moco_rises_and_genres_are_neighbours(looks):
    from movielib.train.runlog import RunLog

    store, genres, tmp = looks
    runs = tmp / "runs"
    _cli("pretrain", "scenes", store.dest, "--config", str(DEMO / "pretrain_scenes.yaml"), "--model", TINY,
         "--random-weights", "--similarity", str(genres), "--run-folder", str(runs))  # fmt: skip
    run = runs / "scenes"
    epochs = [r for r in RunLog(str(run / "scenes")).by_step() if r.get("kind") == "epoch"]
    held = [r["val_moco_top1"] for r in epochs]
    chance = epochs[-1]["val_moco_top1_chance"]
    print(f"held-out MoCo top-1 by epoch: {held} (chance {chance:.3f})")
    # the held-out movies' scene pairs, never trained on: their key found among the queue's more often as the
    # encoder learns (the queue is full from the second epoch on)
    assert max(held[-2:]) > held[1] + 0.1 and held[-1] > 3 * chance, held
    _cli("embed", "scenes", str(run), store.dest)
    genre = _genre_of(store, genres)
    scenes = _same_genre_neighbours(_movie_means(_per_shot(store, "features/scene", "movies2scenes-scene")), genre)
    print(f"same-genre nearest neighbours: scene features {scenes:.2f}")
    assert scenes >= 0.8  # chance: 4 of the 14 other movies share a movie's genre


@pytest.fixture(scope="module")
def paired(ray_local, tmp_path_factory):
    """Trailers in four genres that only a pair of experts tells apart (tone band x restless picture), tagged once
    with audio and motion."""
    from movielib.demo.paired_genres import write_paired_genre_catalog

    tmp = tmp_path_factory.mktemp("paired")
    genres = write_paired_genre_catalog(tmp, str(tmp / "catalog") + "/", per_genre=6, shots=12)
    store = _tag(tmp / "catalog", tmp / "tags", "features.motion=true", "features.text=false")
    return store, genres, tmp


def _genre_top1(store: CatalogStore, run: Path, genre: dict[str, str]) -> float:
    """`movielib embed genre RUN`, then the share of the run's held-out trailers whose most probable genre is theirs."""
    from movielib.train.genre.embed import TABLE

    _cli("embed", "genre", str(run), store.dest)
    summary = json.loads((run / "summary.json").read_text())
    version = f"{run.name}-"
    rows = store.read_table(TABLE, model="genre-probabilities").to_pylist()
    probs = {r["video_id"]: r["embedding"] for r in rows if r["model_version"].startswith(version)}
    held = summary["held_out"]
    return float(np.mean([summary["genres"][int(np.argmax(probs[v]))] == genre[v] for v in held]))


def test_the_genre_model_learns_genres_only_a_pair_of_experts_tells_apart_beyond_the_best_single_expert(paired):
    store, genres, tmp = paired
    genre = _genre_of(store, genres)
    runs = tmp / "runs"
    experts = ("image", "audio", "motion")
    common = ["--config", str(DEMO / "train_genre.yaml"), "--genres", str(genres), "--run-folder", str(runs),
              "--set", "experts.scene.use=false"]  # fmt: skip
    console = _cli("train", "genre", store.dest, *common, "--name", "all")
    together = _genre_top1(store, runs / "all", genre)
    alone = {}
    for e in experts:  # each expert alone, trained the same way (the fine-grained stage skipped: not scored here)
        off = [x for other in experts if other != e for x in ("--set", f"experts.{other}.use=false")]
        _cli("train", "genre", store.dest, *common, *off, "--set", "finegrained.epochs=0", "--name", e)
        alone[e] = _genre_top1(store, runs / e, genre)
    print(f"held-out top-1: experts together {together:.2f}, alone {alone}")
    assert together >= 0.75 and together > max(alone.values()), (together, alone)
    # the console names each genre's held-out AP / F1, the lagging genre first, and prints no nan
    shown = [line for line in console.splitlines() if line.startswith(("per genre", "fine-grained", "step "))]
    assert any(line.startswith("per genre, held-out AP/F1, lowest first: ") for line in shown), console[-3000:]
    assert not [line for line in shown if "nan" in line], shown
