"""The README's first command, as a newcomer runs it: `movielib demo` (what `bash dev.sh demo` runs after setting up)
tags the generated catalog on its own Ray and S3 server, and what it leaves behind is right."""

import re
import subprocess

import pytest
from conftest import TINY, movielib_cli

from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def test_movielib_demo_finds_the_known_cuts_records_the_broken_object_and_draws_the_shots(tmp_path):
    out = tmp_path / "demo-output"
    proc = movielib_cli(
        "demo", "--out", str(out), "--model", TINY, join_ray=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    console, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, console[-3000:]
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
