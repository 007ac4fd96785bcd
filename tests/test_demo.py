"""The README's first command, as a newcomer runs it: `movielib demo` (what `bash dev.sh demo` runs after setting up)
tags the generated catalog on its own Ray and S3 server, and what it leaves behind is right."""

import re

import pyarrow.csv as pcsv
import pytest
from conftest import TINY, run_demo

from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def test_movielib_demo_finds_the_known_cuts_records_the_broken_object_and_draws_the_shots(ray_local, tmp_path):
    out = tmp_path / "demo-output"
    console = run_demo("--out", str(out), "--model", TINY, timeout=600)
    # every generated clip: the detected cuts are its known cuts
    found = re.findall(r"^  (\S+): detected cuts \[([^\]]*)\], known cuts \[([^\]]*)\]$", console, re.M)
    assert len(found) >= 3, console[-3000:]
    for clip, detected, known in found:
        assert detected == known, (clip, detected, known)
    store = CatalogStore(str(out))
    videos = {v["uri"].split("/catalog/", 1)[1]: v for v in store.read_table("videos").to_pylist()}
    broken = videos["broken/truncated.mp4"]
    assert broken["status"] == "error" and broken["error"], broken  # an error row; the run went on
    assert all(v["status"] == "ok" for name, v in videos.items() if name != "broken/truncated.mp4")
    # the contact sheet shows each shot of bikes.mp4: one keyframe per shot row
    bikes = next(v for name, v in videos.items() if name.endswith("bikes.mp4"))
    shots = store.read_tables("shots", video_id=bikes["video_id"])["shots"].num_rows
    page = (out / "contact-sheet.html").read_text()
    assert shots >= 1 and page.count("<figure><img") == shots
    assert (out / "contact-sheet.png").stat().st_size > 0


def test_the_heads_demo_prints_a_line_a_trial_and_its_summary(ray_local, tmp_path):
    console = run_demo("--heads", "--quick", "--out", str(tmp_path / "out"))
    trials = re.findall(r"^\[tune\] trial (\d+)/4 (done|stopped early) at epoch (\d+): val_map ([\d.]+)", console, re.M)
    assert [int(n) for n, *_ in trials] == list(range(1, 5)), console[-3000:]  # one line a trial, counted
    stopped = [r for r in pcsv.read_csv(tmp_path / "out" / "run" / "trials.csv").to_pylist() if r["epochs"] < 12]
    assert sum(how == "stopped early" for _, how, *_ in trials) == len(stopped)  # ASHA's calls, said as such
    best = float(re.search(r"test map ([\d.]+); chance ([\d.]+)", console).group(1))
    assert best > 0.8 and f"tensorboard --logdir {tmp_path / 'out' / 'run' / 'sweep'}" in console
    assert list((tmp_path / "out" / "run" / "sweep").glob("trial_*/events.out.tfevents.*"))  # what it points at
    assert "/tmp/ray/session_" not in console.split("Ray's own logs:")[1].split("\n", 1)[1]  # no temp-folder pointers
