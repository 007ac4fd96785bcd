"""Each learning method learns from what the tagging job writes, end to end: its demo generates videos (audio
tracks, .srt sidecars), tags them with the real tagging job and runs the method as a user types it
(`movielib demo --multimodal | --pretrain | --genre`); each test then scores what the demo left behind against a
baseline computed here on the same features (planted feature tables prove the math; only these prove the product),
and reads the curves the console shows."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import movielib_cli, run_demo

from movielib.store import CatalogStore

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[2] / "movielib" / "demo"


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


def _epochs(console: str, stage: str, *metrics: str) -> list[dict[str, float]]:
    """The `[stage] epoch i/n ...` lines of a demo's console, each as its metrics."""
    rows = []
    for line in re.findall(rf"\[{stage}\] epoch \d+/\d+ (.*)", console):
        values = dict(re.findall(r"(\w+) (-?[\d.]+(?:e-?\d+)?)(?=\s|$)", line))
        rows.append({m: float(values[m]) for m in metrics if m in values})
    return rows


def _genre_by_video(store: CatalogStore) -> dict[str, str]:
    """Each video's genre: the generated trailers are named <genre>-<n>.mp4."""
    videos = store.read_table("videos", columns=["video_id", "uri"]).to_pylist()
    return {v["video_id"]: v["uri"].rsplit("/", 1)[-1].split("-")[0] for v in videos}


@pytest.mark.timeout(900)
def test_the_multimodal_demo_learns_from_its_videos_beyond_a_ridge_map_and_the_base_features(ray_local, tmp_path):
    from sklearn.linear_model import RidgeCV

    out = tmp_path / "out"
    console = run_demo("--multimodal", "--out", str(out))
    # the console's curves: the held-out loss falls, retrieval rises far above its chance
    names = ("val_loss", "val_video_to_audio_top1", "val_video_to_language_top1", "val_video_to_audio_top1_chance")
    epochs = _epochs(console, "multimodal", *names)
    assert len(epochs) == 40, console[-3000:]
    chance = epochs[-1]["val_video_to_audio_top1_chance"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"] - 1.0, epochs
    assert epochs[-1]["val_video_to_audio_top1"] > max(3 * chance, epochs[0]["val_video_to_audio_top1"]), epochs
    # language: scored when a worker's held-out shots with a cue fill a candidate set (not in every run: 4
    # held-out movies on 2 workers)
    assert all(e["val_video_to_language_top1"] >= 2 * chance for e in epochs[-1:] if "val_video_to_language_top1" in e)
    assert f"(retrieval chance {chance:.3g})" in console

    # held-out video -> audio retrieval: the pretrained features (embed multimodal, in the demo's catalog) against
    # a ridge map from the standardised base video features to the standardised base audio features, fitted on
    # the training movies; both over the same candidate sets
    store = CatalogStore(str(out / "tags"))
    held = set(json.loads((out / "run" / "summary.json").read_text())["held_out"])
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
    # measured over runs: 0.61 vs 0.57 and 0.40 vs 0.40 (the workers' batches, hence the training, differ run to
    # run): the pretrained features reach the ridge map, not reliably beyond it
    assert pre_top1 >= ridge_top1 - 0.05 and pre_top1 >= 3 / size, (pre_top1, ridge_top1)

    # the editing tasks, scored on every movie's examples over 3 folds (600 a task). Measured on three demo runs,
    # two fold seeds each: SSO pretrained above base by 0.055 to 0.10, NSS by 0.015 to 0.055; NSS's gap is within
    # what 600 examples resolve, so it may fall 0.02 short here
    figures = json.loads((out / "run" / "editing.json").read_text())["tasks"]
    sso, nss = figures["sso"], figures["nss"]
    assert sso["examples"] == nss["examples"] == 600, figures
    assert sso["pretrained"] > sso["base"] and nss["pretrained"] >= nss["base"] - 0.02, figures
    assert min(sso["base"], sso["pretrained"]) > 1.5 * sso["chance"], figures


def _same_genre_neighbours(rows: dict[tuple[str, int], np.ndarray], genre: dict[str, str]) -> float:
    """The share of movies whose nearest other movie (cosine of their mean shot features, standardised) is of their
    genre."""
    movies: dict[str, list] = {}
    for (video, _), x in rows.items():
        movies.setdefault(video, []).append(x)
    ids = sorted(movies)
    x = np.stack([np.mean(movies[v], axis=0) for v in ids])
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return float(np.mean([genre[ids[i]] == genre[ids[j]] for i, j in enumerate(sim.argmax(1))]))


@pytest.mark.timeout(900)
def test_the_pretraining_demo_learns_from_its_videos_on_held_out_movies_and_puts_genres_together(ray_local, tmp_path):
    out = tmp_path / "out"
    console = run_demo("--pretrain", "--out", str(out))
    step1 = [e["similarity_accuracy"] for e in _epochs(console, "similarity", "similarity_accuracy")]
    assert len(step1) == 10, console[-3000:]
    assert min(step1[-3:]) >= 0.8  # held-out movie pairs, balanced: chance is 0.5 (it stayed there, unscaled)
    names = ("loss", "moco_top1", "val_loss", "val_moco_top1", "val_moco_top1_chance", "val_scene_top1",
             "val_scene_top1_chance")  # fmt: skip
    moco = _epochs(console, "scenes", *names)
    assert len(moco) == 16 and all(set(names) <= set(e) for e in moco), console[-3000:]

    # the held-out movies' scene pairs (about 45), never trained on, scored each epoch against the queue (full from
    # epoch 2: from there the task is the same one) and among each other: their MoCo loss falls, their key is found
    # among the queue's far more often than in epoch 1 and than chance, and among each other's more than twice as
    # often as chance. Two runs: against the queue (chance 0.024) 0.04 -> 0.39-0.52 and 0.05 -> 0.20-0.35 in epochs
    # 14-16, jumping between 0.2 and 0.5 from epoch 2 on; among each other (chance 0.125) 0.25 -> 0.50, 0.17 -> 0.45
    def last(name: str) -> float:
        return float(np.mean([e[name] for e in moco[-3:]]))

    # against the queue the figure jumps (0.06-0.32 from epoch 2 in a third run, whose epoch 1 was 0.29: a queue
    # still filling is an easier task): it must end far above chance; the rise is asserted among each other
    held = [e["val_loss"] for e in moco]
    assert min(held[-3:]) < held[1] - 0.3, held
    top1, among = [e["val_moco_top1"] for e in moco], [e["val_scene_top1"] for e in moco]
    assert last("val_moco_top1") > 5 * moco[-1]["val_moco_top1_chance"], top1
    assert last("val_scene_top1") > np.mean(among[:2]), among
    assert last("val_scene_top1") >= 2 * moco[-1]["val_scene_top1_chance"], among
    assert "pretraining demo finished" in console and (out / "run" / "similarity" / "curves.png").exists()
    # the learned scene features (embed scenes, in the demo's catalog) put each movie next to one of its genre
    store = CatalogStore(str(out / "tags"))
    genre = _genre_by_video(store)
    scenes = _same_genre_neighbours(_per_shot(store, "features/scene", "movies2scenes-scene"), genre)
    print(f"same-genre nearest neighbours by scene features: {scenes:.2f}")
    assert scenes >= 0.8  # chance: 5 of a movie's 17 others share its genre


def _run(*args: str, timeout: float = 400) -> None:
    """`movielib ARGS` as a driver of the session's Ray, to its end (it must succeed)."""
    proc = movielib_cli(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    console, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, console[-3000:]


def _held_out_top1(store: CatalogStore, run: Path, genre: dict[str, str]) -> float:
    """The share of a genre run's held-out trailers whose most probable genre (features/trailer, as `embed genre`
    wrote it for that run) is theirs."""
    summary = json.loads((run / "summary.json").read_text())
    rows = store.read_table("features/trailer", model="genre-probabilities").to_pylist()
    name = summary["run"].rstrip("/").rsplit("/", 1)[-1]  # model_version: the run's name, then its weights' digest
    probs = {r["video_id"]: r["embedding"] for r in rows if r["model_version"].startswith(f"{name}-")}
    return float(np.mean([summary["genres"][int(np.argmax(probs[v]))] == genre[v] for v in summary["held_out"]]))


def _val_top1(run: Path) -> float:
    """A genre run's held-out top-1 at its last epoch, as its loop scored it (val_top1 in summary.json)."""
    return json.loads((run / "summary.json").read_text())["metrics"]["val_top1"]


@pytest.mark.timeout(1200)  # the demo, then three trainings
def test_the_genre_demo_learns_genres_only_a_pair_of_experts_tells_apart_beyond_the_best_single_expert(
    ray_local, tmp_path
):
    out = tmp_path / "out"
    console = run_demo("--genre", "--out", str(out))
    store = CatalogStore(str(out / "tags"))
    genre = _genre_by_video(store)
    # held-out top-1 of the experts together: as the loop scored it, and from what `embed genre` wrote
    together, embedded = _val_top1(out / "run"), _held_out_top1(store, out / "run", genre)
    # per genre every epoch, the lagging genre named; nothing printed as nan
    shown = [line for line in console.splitlines() if line.startswith(("per genre", "fine-grained", "step "))]
    assert any(line.startswith("per genre, held-out AP/F1, lowest first: ") for line in shown), console[-3000:]
    assert not [line for line in shown if "nan" in line], shown
    assert len(_epochs(console, "genre", "val_ap_lowest")) == 20

    # each expert alone, trained the same way on the demo's catalog (its genres file keyed by video_id; the
    # fine-grained stage skipped: not scored here), one after another (side by side, three Ray Train runs and their
    # data pipelines would wait on each other's CPUs), scored by its loop on the same held-out trailers
    labels = tmp_path / "genres.csv"
    labels.write_text("movie,genres\n" + "".join(f"{v},{g}\n" for v, g in sorted(genre.items())))
    experts = ("image", "audio", "motion")
    runs = tmp_path / "runs"
    common = ["--config", str(DEMO / "train_genre.yaml"), "--genres", str(labels), "--run-folder", str(runs),
              "--set", "finegrained.epochs=0"]  # fmt: skip
    for e in experts:
        off = [x for other in experts if other != e for x in ("--set", f"experts.{other}.use=false")]
        _run("train", "genre", str(out / "tags"), *common, *off, "--name", e)
    alone = {e: _val_top1(runs / e) for e in experts}
    held = json.loads((out / "run" / "summary.json").read_text())["held_out"]
    assert all(json.loads((runs / e / "summary.json").read_text())["held_out"] == held for e in experts)
    print(f"held-out top-1: the experts together {together:.2f} (embedded {embedded:.2f}), each alone {alone}")
    assert together >= 0.75 and embedded >= 0.75 and together > max(alone.values()), (together, embedded, alone)
