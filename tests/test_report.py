"""Contact sheet and taxonomy commands through the CLI."""

import base64
import io
import re

import numpy as np
import pytest
from conftest import TINY
from PIL import Image

from movielib.cli import main
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging


@pytest.mark.slow
def test_contact_sheet_of_a_tagged_video(ray_local, clips, tmp_path, capsys):
    path, cuts = clips["four.mp4"]
    cfg = load_tag_config(None, {"model.name": TINY, "model.random_weights": True})
    run_tagging(plan_tagging(cfg, str(path), str(tmp_path / "out")))
    assert main(["report", str(tmp_path / "out"), "--video", "four.mp4", "--out", str(tmp_path / "sheet")]) == 0
    assert "contact sheet of 4 shots" in capsys.readouterr().out
    # four.mp4's shots: mandelbrot, red, rgbtestsrc, green; each card shows its own shot's keyframe, in order
    page = (tmp_path / "sheet.html").read_text()
    assert page.count("<figure>") == 4 and "faces" in page
    thumbs = [_jpeg(b) for b in re.findall(r'data:image/jpeg;base64,([^"]+)"', page)]
    assert [t.shape for t in thumbs] == [(240, 320, 3)] * 4  # the clip's 320x240 frames, not scaled up
    starts = re.findall(r"shot \d &middot; (\d\d:\d\d\.\d\d)&ndash;", page)
    assert starts == ["00:00.00", "00:01.60", "00:02.80", "00:04.80"]  # the segments: 1.6 s, 1.2 s, 2.0 s, 1.4 s
    assert _colour(thumbs[1]) == "red" and _colour(thumbs[3]) == "green"
    assert _colour(thumbs[0]) == _colour(thumbs[2]) == "mixed"  # a fractal and a test pattern, not solid
    with Image.open(tmp_path / "sheet.png") as png:
        sheet = np.asarray(png.convert("RGB"))
    quarters = np.array_split(sheet, 4, axis=1)  # one column of the 4-wide grid a shot
    red, green = ([_has_patch(q, rgb) for q in quarters] for rgb in ((255, 0, 0), (0, 128, 0)))
    # (rgbtestsrc, the third, has red and green bands of its own)
    assert (red[0], red[1], red[3]) == (False, True, False) and (green[0], green[1], green[3]) == (False, False, True)


def _jpeg(b64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        return np.asarray(img.convert("RGB"))


def _colour(thumb: np.ndarray) -> str:
    """ "red" / "green" for a solid shot of that lavfi colour (red #ff0000, green #008000), else "mixed"."""
    mean, spread = thumb.reshape(-1, 3).mean(0), thumb.reshape(-1, 3).std(0).max()
    if spread > 20:
        return "mixed"
    if mean[0] > 200 and mean[1] < 60 and mean[2] < 60:
        return "red"
    return "green" if mean[1] > 100 and mean[0] < 60 and mean[2] < 60 else "other"


def _has_patch(region: np.ndarray, rgb: tuple[int, int, int], side: int = 40) -> bool:
    """A side x side square of `rgb` (within the JPEG's error) somewhere in `region`."""
    near = (np.abs(region.astype(int) - rgb) < 40).all(axis=2).astype(np.int32)
    sums = near.cumsum(0).cumsum(1)
    box = sums[side:, side:] - sums[:-side, side:] - sums[side:, :-side] + sums[:-side, :-side]
    return bool((box == side * side).any())


def test_report_names_a_missing_video(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--video", "nope"]) == 2
    assert "no tagged video matching 'nope'" in capsys.readouterr().err


def test_taxonomy_commands(tmp_path, capsys):
    script = tmp_path / "script.txt"
    script.write_text("EXT. RIVER - DAY\nJohn swims.\nEXT. RIVER - NIGHT\nINT. RESTROOM - DAY\nINT. BATHROOM - DAY\n")
    out = tmp_path / "ms.txt"
    assert main(["taxonomy", "from-sluglines", str(script), "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == ["river\t2", "restroom\t1", "bathroom\t1"]
    assert out.read_text().split("\n")[:3] == ["river", "restroom", "bathroom"]
    other = tmp_path / "other.txt"
    other.write_text("bathroom\nriver\ndesert\n")
    merged = tmp_path / "merged.txt"
    assert main(["taxonomy", "merge", str(out), str(other), "--out", str(merged)]) == 0
    assert "merge\trestroom\t->\tbathroom" in capsys.readouterr().out
    assert merged.read_text().split() == ["river", "bathroom", "desert"]
    assert main(["taxonomy", "cluster", str(merged)]) == 0
    clusters = [line.split(": ", 1) for line in capsys.readouterr().out.splitlines()]
    members = [m for exemplar, names in clusters for m in names.split(", ")]
    assert sorted(members) == ["bathroom", "desert", "river"]  # every label in exactly one cluster
    assert all(exemplar in names.split(", ") for exemplar, names in clusters)  # each led by one of its own


def test_taxonomy_names_a_missing_script(tmp_path, capsys):
    assert main(["taxonomy", "from-sluglines", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err
