"""Contact sheet and taxonomy commands through the CLI."""

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
    with Image.open(tmp_path / "sheet.png") as png:
        assert png.width > 600 and png.height > 200
    page = (tmp_path / "sheet.html").read_text()
    assert page.count("<figure>") == 4 and page.count("data:image/jpeg;base64,") == 4
    assert "faces" in page and "shot 3" in page


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
    assert capsys.readouterr().out.strip()


def test_taxonomy_names_a_missing_script(tmp_path, capsys):
    assert main(["taxonomy", "from-sluglines", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().err
