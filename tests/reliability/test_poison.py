"""Videos that kill their worker (native crash, kill, memory, hang) end as one error row after bounded attempts;
failures that are not the video's fault are retried, and if they persist, left for a re-run."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import LIGHT, TINY, assert_each_key_once, link_catalog, movielib_cli

from movielib.cli import EXIT_RETRY, main
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def _config(tmp_path, faults, **reliability):
    sections: dict = {
        "model": {"name": TINY, "random_weights": True},
        "output": {"rows_per_file": 4},
        "reliability": {**reliability, "faults": faults},
    }
    for dotted, value in LIGHT.items():
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = value
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(sections))
    return str(path)


def _summary(store) -> dict:
    """The newest run summary in DEST (a local folder here)."""
    runs = sorted(Path(store.meta_path("runs")).glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    return json.loads(runs[-1].read_text())


def test_poison_videos_end_as_error_rows_and_the_run_succeeds(ray_local, tmp_path, clips):
    catalog = tmp_path / "catalog"
    expected = link_catalog(catalog, clips)  # 3 good videos
    poison = ("crash", "kill", "hang", "memory")
    for name in (*poison, "flaky"):  # copies of a good clip, each with its own fault
        shutil.copy(clips["three.mp4"][0], catalog / f"{name}.mp4")
    faults = [
        {"kind": "crash", "video": "crash.mp4"},
        {"kind": "kill", "video": "kill.mp4"},
        {"kind": "hang", "video": "hang.mp4"},
        {"kind": "memory", "video": "memory.mp4"},
        {"kind": "io_error", "video": "flaky.mp4", "attempts": 2},
    ]  # two failed reads, then it reads
    config = _config(
        tmp_path, faults, max_attempts=2, video_timeout_s=6.0, memory_limit_gb=2.0, io_attempts=3, backoff_s=0.05
    )
    dest = tmp_path / "out"
    proc = movielib_cli(
        "tag", str(catalog), str(dest), "--config", config, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-3000:]

    store = CatalogStore(str(dest))
    videos = {v["uri"].rsplit("/", 1)[1]: v for v in store.read_table("videos").to_pylist()}
    assert len(videos) == len(expected) + len(poison) + 1
    for name, what in (
        ("crash", "crashed: Segmentation fault"),
        ("hang", "hung: still in its decode task after"),
        ("kill", "its worker died (killed by a signal, or by the kernel's or Ray's out-of-memory"),
        ("memory", "out of memory: its worker reached"),
    ):
        v = videos[f"{name}.mp4"]
        assert v["status"] == "error" and v["error"].startswith(
            "poison video: 2 attempts each ended with its worker gone"
        ), v
        assert what in v["error"], v["error"]
    assert "attempts.py" in videos["crash.mp4"]["error"]  # the Python frame the crash happened under
    assert videos["flaky.mp4"]["status"] == "ok" and all(videos[n]["status"] == "ok" for n in expected)
    assert_each_key_once(store, len(expected) + len(poison) + 1, sum(expected.values()) + 3)
    summary = _summary(store)
    assert (summary["videos_ok"], summary["videos_error"], summary["videos_retryable"]) == (
        len(expected) + 1,
        len(poison),
        0,
    )
    assert f"{len(poison)} failed" in out and "poison video" in out


def test_transient_failures_are_not_recorded_as_done_and_a_rerun_takes_them(ray_local, tmp_path, clips, capsys):
    catalog = tmp_path / "catalog"
    expected = link_catalog(catalog, clips)
    for name in ("store-down", "bug"):
        shutil.copy(clips["four.mp4"][0], catalog / f"{name}.mp4")
    faults = [{"kind": "io_error", "video": "store-down.mp4"}, {"kind": "error", "video": "bug.mp4"}]
    dest = str(tmp_path / "out")
    rc = main(["tag", str(catalog), dest, "--config", _config(tmp_path, faults, io_attempts=3, backoff_s=0.05)])
    out = capsys.readouterr().out
    assert rc == EXIT_RETRY, out
    assert "2 videos failed for reasons not their own" in out
    assert "store-down.mp4: 3 attempts to read it failed; last: ConnectionResetError" in out
    assert "bug.mp4: RuntimeError: injected fault: a bug" in out
    store = CatalogStore(dest)
    assert len(store.video_ids()) == len(expected)  # no row: not done
    summary = _summary(store)
    assert (summary["videos_ok"], summary["videos_retryable"]) == (len(expected), 2)
    assert {r["uri"].rsplit("/", 1)[1] for r in summary["retryable"]} == {"store-down.mp4", "bug.mp4"}
    claims = store.tables.read("_movielib/claims").to_pylist()
    assert len(claims) == len(expected)  # the two were given back: a re-run may take them at once

    # the store is back and the bug fixed: the same command finishes the catalog
    rc = main(["tag", str(catalog), dest, "--config", _config(tmp_path, [])])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"2 videos to tag in 1 chunks, {len(expected)} already in" in out
    assert_each_key_once(store, len(expected) + 2, sum(expected.values()) + 8)


def test_the_cpu_stages_run_in_the_decode_task_so_its_attempts_cover_them(ray_local, tmp_path, clips, capsys):
    """A crash in the people, audio or text stage must count as an attempt at the video: that holds only while
    Ray Data fuses them into the decode task (it stops when their remote args or concurrency caps differ)."""
    import pyarrow as pa

    from movielib.pipeline.config import load_tag_config
    from movielib.pipeline.tagging import build_dataset, plan_tagging

    link_catalog(tmp_path / "catalog", clips)
    plan = plan_tagging(
        load_tag_config(None, {"model.name": TINY, "model.random_weights": True}),
        str(tmp_path / "catalog"),
        str(tmp_path / "out"),
    )
    build_dataset(plan, pa.table({"video_id": ["v"], "uri": ["x.mp4"]})).explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert (
        "[MapBatches(DecodeAndDetect)->MapBatches(DetectPeople)->MapBatches(EmbedAudio)->MapBatches(EmbedText)]"
        in optimized
    ), optimized
