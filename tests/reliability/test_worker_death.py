"""A scoring actor and a decode task killed mid-run: the run finishes and every video appears exactly once."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import LIGHT, TINY, assert_each_key_once, link_catalog

from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def _own_pids(title: str) -> list[int]:
    """This test session's Ray workers whose title contains `title`: children of this session's raylet only, never
    another run's processes on the same machine."""
    import ray._private.worker

    raylet = ray._private.worker._global_node.all_processes["raylet"][0].process.pid
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if parent == raylet and title in (p / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(p.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


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
        for pid in _own_pids("ClipSceneScorer")[:1]:
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
