"""`movielib tune heads`: an 8-trial Ray Tune sweep with ASHA over planted-signal features (real local Ray)."""

import collections
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pytest
import yaml
from conftest import movielib_cli

from movielib.config import build_config
from movielib.demo.planted_heads import build as plant
from movielib.heads.config import HeadsConfig
from movielib.heads.data import build
from movielib.heads.sweep import run_heads
from movielib.heads.train import load_head, predict
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow
EPOCHS = 9


def _config(dest, folder, name="sweep", samples=8, **tune) -> dict:
    return {
        "data": {"catalog": dest, "val_fraction": 0.2, "test_fraction": 0.2},
        "head": {"name": "mlp2", "epochs": EPOCHS},
        "search": {"lr": [1e-4, 3e-2], "width": [16, 64, 256], "batch_size": [32, 64], "dropout": [0.0, 0.2]},
        "tune": {"num_samples": samples, "grace_period": 1, "reduction_factor": 3, **tune},
        "run": {"folder": str(folder), "name": name},
    }


@pytest.fixture(scope="module")
def swept(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    planted = plant(str(root / "catalog"))
    cfg = build_config(HeadsConfig, _config(planted.dest, root / "runs"))
    return planted, cfg, run_heads(cfg), root / "runs" / "sweep"


def test_asha_stops_weak_trials_and_the_best_head_beats_chance_and_the_worst_trial(swept):
    _, _, summary, run = swept
    trials = pcsv.read_csv(run / "trials.csv").to_pylist()
    assert len(trials) == summary["trials"] == 8 and all(t["status"] == "done" for t in trials)
    epochs = [t["epochs"] for t in trials]
    assert sum(epochs) == summary["epochs_run"] < 8 * EPOCHS and min(epochs) < EPOCHS <= max(epochs)
    best, chance = summary["best"]["test"]["map"], summary["chance"]["map"]
    bests = sorted(t["best_val_map"] for t in trials)
    print(
        f"test mAP: best head {best:.3f}, linear probe {summary['linear_probe']['map']:.3f}, chance {chance:.3f}; "
        f"val mAP of the trials {bests[0]:.3f}..{bests[-1]:.3f}; epochs {sorted(epochs)}"
    )
    assert best > chance + 0.3 and bests[-1] > bests[0]
    # the planted signal is linear, so the linear probe is the bar (0.941 here): the sweep's pick comes within 0.05
    # of it (0.915 here), where the weakest trial (val 0.78) does not
    assert best > summary["linear_probe"]["map"] - 0.05
    assert yaml.safe_load((run / "best_config.yaml").read_text())["lr"] == summary["best"]["config"]["lr"]
    # split.csv: every planted video on exactly one side, the sides about the configured fractions (0.6/0.2/0.2)
    split = pcsv.read_csv(run / "split.csv").to_pylist()
    sides = collections.Counter(r["split"] for r in split)
    assert sorted(r["video_id"] for r in split) == sorted(swept[0].genres) and set(sides) == {"train", "val", "test"}
    assert abs(sides["train"] - 0.6 * len(split)) <= 4 and min(sides["val"], sides["test"]) >= 0.1 * len(split)


def test_the_exported_head_predicts_what_it_predicted_inside_its_trial(swept):
    planted, cfg, summary, run = swept
    model, meta = load_head((run / "best" / "head.pt").read_bytes())
    assert meta["task"] == "multilabel" and meta["feature_model"] == "planted/1" and len(meta["label_names"]) == 6
    data = build(CatalogStore(planted.dest), cfg.data)  # rebuilt: the same rows in the same order
    inside = np.load(run / "best" / "test_predictions.npy")
    # the same rows in the same order; equal up to float rounding (the blocks, so the batches, may be cut elsewhere)
    np.testing.assert_allclose(predict(model, data.splits["test"], meta["task"]), inside, rtol=0, atol=1e-6)


def _saved_state(sweep: Path) -> dict[str, tuple[str, int]]:
    """Per trial folder, what Tune's saved experiment state (what `--resume` restores) holds: its status and the
    iteration of its last recorded result (0: none). Read while Tune may be writing it: {} when unreadable."""
    try:
        state = json.loads(max(sweep.glob("experiment_state*.json")).read_text())
        out = {}
        for trial, runtime in state["trial_data"]:
            trial, runtime = json.loads(trial), json.loads(runtime)
            last = runtime["last_result"]
            last = (json.loads(last) if isinstance(last, str) else last).get("training_iteration", 0)
            out[trial["relative_logdir"]] = (trial["status"], last)
        return out
    except (ValueError, KeyError, OSError):
        return {}


def test_an_interrupted_sweep_is_restored_finished_trials_kept_and_the_unfinished_one_continued(ray_local, tmp_path):
    planted = plant(str(tmp_path / "catalog"), videos=20, shots=10)
    config = tmp_path / "heads.yaml"
    epochs = 6
    # FIFO, one trial at a time: a trial is finished when it ran every epoch (no ASHA stop to tell apart)
    cut = _config(planted.dest, tmp_path / "runs", name="cut", samples=4, max_concurrent_trials=1, scheduler="fifo")
    cut["head"]["epochs"] = epochs  # what is tested is the restore, not the search
    config.write_text(yaml.safe_dump(cut))
    run = tmp_path / "runs" / "cut"
    proc = movielib_cli(
        "tune",
        "heads",
        "--config",
        str(config),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 180

    def cut_now(saved: dict[str, tuple[str, int]]) -> bool:  # Tune saved a trial finished and one half way
        statuses = {(status, 0 < last < epochs) for status, last in saved.values()}
        return ("TERMINATED", False) in statuses and ("RUNNING", True) in statuses

    while time.time() < deadline and not cut_now(_saved_state(run / "sweep")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the sweep's driver dies with a trial half way and trials left
    proc.wait()
    saved = _saved_state(run / "sweep")
    print("killed after", time.time() - (deadline - 180), "s; Tune's saved state:", saved)
    assert cut_now(saved), f"killed at the wrong moment: {saved}"
    results = {name: run / "sweep" / name / "result.json" for name in saved}
    before = {name: results[name].read_bytes() for name, (status, _) in saved.items() if status == "TERMINATED"}
    t0 = time.time()
    assert not (run / "trials.csv").exists()
    again = movielib_cli(  # by the `ray job submit` entry point, tune/sweep_heads.py
        "tune", "heads", "--resume", str(run), script=("tune/sweep_heads.py",),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out[-3000:]
    print("resumed sweep took", time.time() - t0, "s")
    trials = pcsv.read_csv(run / "trials.csv").to_pylist()
    assert len(trials) == 4 and all(t["status"] == "done" for t in trials), trials
    assert Path(run / "best" / "head.pt").exists()
    for name, (status, last) in saved.items():
        if status == "TERMINATED":  # a finished trial is not run again: its results are what they were
            assert results[name].read_bytes() == before[name], f"{name} ran again"
        else:  # an unfinished one continues from its last saved checkpoint: the results since its restore (Tune
            # counts iterations_since_restore from 1 again) begin at the iteration after it, and run to the last
            rows = [json.loads(line) for line in results[name].read_text().splitlines() if line.strip()]
            since = rows[max(i for i, r in enumerate(rows) if r["iterations_since_restore"] == 1) :]
            assert [r["training_iteration"] for r in since] == list(range(last + 1, epochs + 1)), (name, last, rows)


SMALL_HEAD = ("head.name=linear", "head.epochs=2", "head.min_steps=20", "data.val_fraction=0.1")


def _train_head(dest: str, labels: Path, folder: Path, *sets: str) -> tuple[int, str]:
    """`movielib train head` as a user types it, on the session's Ray: its exit code and console."""
    args = ["train", "head", "--catalog", dest, "--run-folder", str(folder), "--set", f"data.labels={labels}"]
    proc = movielib_cli(*args, *[x for kv in sets for x in ("--set", kv)], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True)  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    return proc.returncode, out


def test_train_head_on_a_small_catalog_scores_a_one_class_split_and_refuses_a_label_it_cannot_learn(swept, tmp_path):
    """A movie-level labels file of two classes on a small catalog: the validation split may hold one class (top-1
    is defined there: the run ends with its summary). A label no training video has is refused before any trial,
    named with its counts per split, without a traceback."""
    planted = swept[0]
    videos = sorted(CatalogStore(planted.dest).read_table("videos", columns=["video_id"])["video_id"].to_pylist())
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,label\n" + "".join(f"{v},{'ab'[i % 2]}\n" for i, v in enumerate(videos)))
    code, out = _train_head(planted.dest, labels, tmp_path / "runs", *SMALL_HEAD)
    assert code == 0, out[-3000:]
    summary = json.loads((tmp_path / "runs" / "heads" / "summary.json").read_text())
    assert summary["task"] == "single" and summary["level"] == "movie" and summary["failed"] == []
    val = [v for v, s in csv_rows(tmp_path / "runs" / "heads" / "split.csv") if s == "val"]
    assert 0 <= summary["best"]["test"]["top1"] <= 1 and val
    # the only video of class "c" lands outside the train split: refused, naming it and its counts
    split = dict(csv_rows(tmp_path / "runs" / "heads" / "split.csv"))
    lone = next(v for v in videos if split[v] != "train")
    labels.write_text("video_id,label\n" + "".join(f"{v},{'c' if v == lone else 'ab'[i % 2]}\n"
                                                   for i, v in enumerate(videos)))  # fmt: skip
    code, out = _train_head(planted.dest, labels, tmp_path / "runs", *SMALL_HEAD)
    assert code == 2 and "Traceback" not in out, out[-3000:]
    line = next((x for x in out.splitlines() if "label 'c' has no videos in the train split" in x), out[-2000:])
    assert "(videos with it: train 0, " in line and f"{split[lone]} 1" in line, line


def csv_rows(path: Path) -> list[tuple[str, str]]:
    t = pcsv.read_csv(path)
    return list(zip(t["video_id"].to_pylist(), t["split"].to_pylist()))
