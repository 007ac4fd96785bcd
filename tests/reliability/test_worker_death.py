"""A scoring actor and a decode task killed mid-run: the run finishes and every video appears exactly once."""

import os
import signal
import threading
import time

import pytest
from conftest import LIGHT, TINY, assert_each_key_once, link_catalog, live_actors

from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def test_killed_scorer_and_decode_workers_lose_and_duplicate_nothing(ray_local, tmp_path, clips):
    expected = link_catalog(tmp_path / "catalog", clips, copies=3)
    dest = tmp_path / "out"
    # the decode task of one video dies once (its worker is SIGSEGV'd); the test SIGKILLs a scoring actor
    cfg = load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            **LIGHT,
            "output.rows_per_file": 2,
            "output.commit_every_s": 1,
            "scoring.batch_size": 2,
            "reliability.faults": [{"kind": "crash", "video": "1-four.mp4", "attempts": 1}],
        },
    )
    killed: list[int] = []

    def kill_a_scorer() -> None:
        first_commit = dest / "shots" / "_delta_log" / "00000000000000000000.json"
        deadline = time.monotonic() + 240
        while not first_commit.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # this session's own scoring actor (the GCS's table), never another run's process on the machine
        for pid in [a["Pid"] for a in live_actors(("ClipSceneScorer",), own_job=True)][:1]:
            os.kill(pid, signal.SIGKILL)
            killed.append(len(CatalogStore(str(dest)).video_ids()))  # videos committed when it died

    killer = threading.Thread(target=kill_a_scorer, daemon=True)
    killer.start()
    summary = run_tagging(plan_tagging(cfg, str(tmp_path / "catalog"), str(dest)))
    killer.join()
    assert killed and killed[0] < len(expected), "the scoring actor should die mid-run"
    assert (summary.videos_ok, summary.videos_error, summary.videos_retryable) == (len(expected), 0, 0)
    assert summary.videos_retried >= 1  # the injected decode crash happened, and its video was tried again
    assert_each_key_once(CatalogStore(str(dest)), len(expected), sum(expected.values()))
