"""The job process killed mid-run (SIGKILL): a re-run finishes the rest, and the tables equal an uninterrupted run's."""

import signal
import subprocess
import time

import pytest
from conftest import LIGHT, TINY, assert_each_key_once, link_catalog, movielib_cli

from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow
SETTINGS = {**LIGHT, "output.rows_per_file": 2, "output.commit_every_s": 1, "scoring.batch_size": 2}


def _cfg():
    return load_tag_config(None, {"model.name": TINY, "model.random_weights": True, **SETTINGS})


def _rows(store, name, columns):
    rows = store.read_table(name, columns=["video_id", "shot_idx", *columns]).to_pylist()
    return {(r["video_id"], r["shot_idx"]): r for r in rows}


def test_a_killed_driver_is_resumed_and_the_tables_equal_an_uninterrupted_run(ray_local, tmp_path, clips):
    expected = link_catalog(tmp_path / "catalog", clips, copies=3)
    source = str(tmp_path / "catalog")
    reference = CatalogStore(str(tmp_path / "reference"))
    run_tagging(plan_tagging(_cfg(), source, reference.root))

    dest = tmp_path / "out"
    proc = movielib_cli(
        "tag",
        source,
        str(dest),
        "--model",
        TINY,
        "--random-weights",
        *[f"--set={k}={v}" for k, v in SETTINGS.items()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first_commit = dest / "videos" / "_delta_log" / "00000000000000000000.json"
    deadline = time.monotonic() + 240
    while not first_commit.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # the job's driver; Ray then ends its actors and tasks
    proc.wait()
    store = CatalogStore(str(dest))
    committed = len(store.video_ids())
    assert 1 <= committed < len(expected), "the kill should land after the first commit, before the end"

    # at once, without waiting out the claims (output.claim_ttl_s): the dead run's process is gone
    plan = plan_tagging(_cfg(), source, str(dest))
    assert (plan.todo.skipped, plan.todo.videos) == (committed, len(expected) - committed)
    summary = run_tagging(plan)
    assert summary.videos_ok == len(expected) - committed and summary.videos_held == 0
    assert_each_key_once(store, len(expected), sum(expected.values()))

    # the same rows as the run nobody killed: same keys, same shots, same tags for the same frames
    for name, columns in (("shots", ["start_frame", "end_frame", "keyframes"]), ("tags", ["labels", "scores"])):
        got, want = _rows(store, name, columns), _rows(reference, name, columns)
        assert got.keys() == want.keys()
        for key, row in want.items():
            if name == "tags":
                assert got[key]["labels"] == row["labels"], key
                assert got[key]["scores"] == pytest.approx(row["scores"], abs=1e-5), key
            else:
                assert got[key] == row
