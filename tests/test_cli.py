"""The CLI refuses bad requests before any work starts, naming what is wrong."""

import subprocess
import sys

import pytest

from movielib.cli import main


def test_cli_refuses_without_weights(tmp_path):
    (tmp_path / "cat").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "movielib.cli", "tag", str(tmp_path / "cat"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "model.weights" in proc.stderr and "--random-weights" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(
    "config, message",
    [
        ("scoring:\n  batch_size: 0\n", "scoring.batch_size must be > 0"),
        ("scoring:\n  bach_size: 8\n", "unknown config field 'scoring.bach_size'"),
        ("model:\n  name: [1, 2]\n", "model.name must be a string"),
        ("shots: {threshold: 27\n", "not valid YAML"),
        ("scoring:\n  min_actors: 3\n  max_actors: 2\n", "scoring.min_actors must be <= scoring.max_actors"),
        ("- just\n- a list\n", "must hold a mapping"),
    ],
)
def test_cli_rejects_malformed_config(tmp_path, capsys, config, message):
    cfg = tmp_path / "job.yaml"
    cfg.write_text(config)
    rc = main(["tag", str(tmp_path), str(tmp_path / "out"), "--config", str(cfg), "--random-weights"])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_cli_names_the_missing_bucket(s3_server, tmp_path, capsys):
    rc = main(
        [
            "tag",
            str(tmp_path),
            "s3://bucket-that-does-not-exist/out",
            "--random-weights",
            "--s3-endpoint",
            s3_server.endpoint_url,
        ]
    )
    assert rc == 2
    assert "bucket-that-does-not-exist" in capsys.readouterr().err


def test_cli_names_a_missing_source(tmp_path, capsys):
    assert main(["tag", str(tmp_path / "nope"), str(tmp_path / "out"), "--random-weights"]) == 2
    assert "SOURCE" in capsys.readouterr().err
