"""Runs that share a DEST: every key ends up once (runs that die: tests/reliability/test_driver_death.py)."""

import threading

import pytest
from conftest import LIGHT, TINY, assert_each_key_once, link_catalog

from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def _cfg():
    # two runs at once on 2 CPUs: each run's scorer and decode tasks take half a CPU
    return load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            **LIGHT,
            "scoring.num_cpus": 0.5,
            "decode.num_cpus": 0.5,
            "output.rows_per_file": 3,
        },
    )


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
    a = link_catalog(tmp_path / "a", dict(list(clips.items())[:2]), copies=1)
    b = link_catalog(tmp_path / "b", dict(list(clips.items())[2:]), copies=1)
    dest = tmp_path / "out"
    # different SOURCEs: both succeed into the same tables
    one, two = _run_together(tmp_path / "a", tmp_path / "b", dest=dest)
    assert (one.videos_ok, two.videos_ok) == (len(a), len(b))
    store = CatalogStore(str(dest))
    assert_each_key_once(store, len(a) + len(b), sum(a.values()) + sum(b.values()))

    # the same SOURCE twice at once: every video is tagged by exactly one of them, none twice
    both = link_catalog(tmp_path / "c", clips, copies=1)
    three, four = _run_together(tmp_path / "c", tmp_path / "c", dest=dest)
    assert three.videos_ok + four.videos_ok == len(both)
    # they overlapped (or this proves nothing): one found videos the other live run had claimed and left them to it
    assert three.videos_held + four.videos_held > 0, "the two runs did not overlap"
    assert three.videos_held + four.videos_held + three.videos_skipped + four.videos_skipped == len(both)
    assert_each_key_once(store, len(a) + len(b) + len(both), sum(a.values()) + sum(b.values()) + sum(both.values()))
    # a later run has nothing left to do
    assert plan_tagging(_cfg(), str(tmp_path / "c"), str(dest)).todo.videos == 0
