"""Runs that die, and runs that share a DEST: every key ends up once, and nothing committed is redone."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import ROOT, TINY
from movielib.config import load_config
from movielib.features.store import CatalogStore
from movielib.pipeline.tagging import plan_tagging, run_tagging

pytestmark = pytest.mark.slow
LIGHT = {"people.enabled": False, "features.audio": False, "features.text": False}


def _catalog(folder, clips, copies):
    """`copies` differently named links to each clip: distinct videos (the id hashes the URI)."""
    folder.mkdir(parents=True)
    expected = {}
    for n in range(copies):
        for name, (path, cuts) in clips.items():
            (folder / f"{n}-{name}").symlink_to(path)
            expected[f"{n}-{name}"] = len(cuts) + 1
    return expected


def _assert_each_key_once(store, n_videos, n_shots):
    for name in ("shots", "tags", "features/image"):
        keys = store.read_table(name, columns=["video_id", "shot_idx"]).to_pylist()
        assert len(keys) == len({(k["video_id"], k["shot_idx"]) for k in keys}) == n_shots, name
    ids = store.video_ids().to_pylist()
    assert len(ids) == len(set(ids)) == n_videos


def test_a_run_killed_after_its_first_commit_is_resumed_without_redoing_it(ray_local, tmp_path, clips):
    expected = _catalog(tmp_path / "catalog", clips, copies=3)
    dest = tmp_path / "out"
    cmd = [sys.executable, "-m", "movielib.cli", "tag", str(tmp_path / "catalog"), str(dest), "--model", TINY,
           "--random-weights", *[f"--set={k}={v}" for k, v in LIGHT.items()],
           "--set=output.rows_per_file=2", "--set=output.commit_every_s=1", "--set=scoring.batch_size=2", "--set=output.claim_ttl_s=3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    first_commit = dest / "videos" / "_delta_log" / "00000000000000000000.json"
    deadline = time.monotonic() + 240
    while not first_commit.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait()
    time.sleep(3.5)  # the killed run's claims lapse (and its workers notice their raylet is gone)
    store = CatalogStore(str(dest))
    committed = len(store.video_ids())
    assert 1 <= committed < len(expected), "the kill should land after the first commit, before the end"
    plan = plan_tagging(load_config(None, {"model.name": TINY, "model.random_weights": True, **LIGHT}),
                        str(tmp_path / "catalog"), str(dest))
    assert (plan.todo.skipped, plan.todo.videos) == (committed, len(expected) - committed)
    summary = run_tagging(plan)
    assert summary.videos_ok + summary.videos_error == len(expected) - committed
    _assert_each_key_once(store, len(expected), sum(expected.values()))


def _cfg():
    # two runs at once on 2 CPUs: each run's scorer and decode tasks take half a CPU
    return load_config(None, {"model.name": TINY, "model.random_weights": True, **LIGHT, "scoring.num_cpus": 0.5,
                              "decode.num_cpus": 0.5, "output.rows_per_file": 3})


def _run_together(*sources, dest):
    summaries, errors = {}, []

    def run(n, source):
        try:
            summaries[n] = run_tagging(plan_tagging(_cfg(), str(source), str(dest)))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in enumerate(sources)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [summaries[n] for n in range(len(sources))]


def test_two_runs_at_once_on_one_dest(ray_local, tmp_path, clips):
    a = _catalog(tmp_path / "a", dict(list(clips.items())[:2]), copies=1)
    b = _catalog(tmp_path / "b", dict(list(clips.items())[2:]), copies=1)
    dest = tmp_path / "out"
    # different SOURCEs: both succeed into the same tables
    one, two = _run_together(tmp_path / "a", tmp_path / "b", dest=dest)
    assert (one.videos_ok, two.videos_ok) == (len(a), len(b))
    store = CatalogStore(str(dest))
    _assert_each_key_once(store, len(a) + len(b), sum(a.values()) + sum(b.values()))

    # the same SOURCE twice at once: every video is tagged by exactly one of them, none twice
    both = _catalog(tmp_path / "c", clips, copies=1)
    three, four = _run_together(tmp_path / "c", tmp_path / "c", dest=dest)
    assert three.videos_ok + four.videos_ok == len(both)
    assert three.videos_held + four.videos_held + three.videos_skipped + four.videos_skipped == len(both)
    _assert_each_key_once(store, len(a) + len(b) + len(both), sum(a.values()) + sum(b.values()) + sum(both.values()))
    # a later run has nothing left to do
    assert plan_tagging(_cfg(), str(tmp_path / "c"), str(dest)).todo.videos == 0
