"""AWS keys given by environment or config never appear in output, the printed config, run summaries, table
metadata, error messages, or the Ray session's logs."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import TINY, movielib_cli

pytestmark = pytest.mark.slow
ENV_KEYS = {"AWS_ACCESS_KEY_ID": "AKIAMOVIELIBENV00001", "AWS_SECRET_ACCESS_KEY": "envSecretMovielib/abc123XYZ"}
CONFIG_KEYS = {"access_key_id": "AKIAMOVIELIBCFG00002", "secret_access_key": "cfgSecretMovielib/def456UVW"}
SECRETS = [*ENV_KEYS.values(), *CONFIG_KEYS.values()]


def _leaks(text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return [s for s in SECRETS if s.encode() in data]


def test_keys_never_leak(s3_server, bucket, clips, tmp_path):
    client = s3_server.client()
    client.upload_file(str(clips["three.mp4"][0]), bucket, "catalog/three.mp4")
    client.put_object(Bucket=bucket, Key="catalog/corrupt.mp4", Body=b"\x00" * 5000)  # an error row's message too
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": {"name": TINY, "random_weights": True},
                "s3": {"endpoint_url": s3_server.endpoint_url, **CONFIG_KEYS},
                "features": {"audio": False, "text": False},
            }
        )
    )
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    outputs = []
    # a whole run on a Ray of its own (its workers inherit the environment's keys), then one that fails
    for dest in (f"s3://{bucket}/out", "s3://no-such-bucket/out"):
        proc = movielib_cli(
            "tag",
            f"s3://{bucket}/catalog/",
            dest,
            "--config",
            str(config),
            env={**ENV_KEYS, "RAY_TMPDIR": str(ray_tmp)},  # this test's Ray sessions, no other run's
            join_ray=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=300)
        outputs.append((proc.returncode, out, err))
    (rc, out, err), (bad_rc, bad_out, bad_err) = outputs
    assert rc == 0, err[-2000:]
    assert "s3.access_key_id: **********" in out and "s3.secret_access_key: **********" in out  # printed config
    assert bad_rc == 2 and "no-such-bucket" in bad_err
    for text in (out, err, bad_out, bad_err):
        assert _leaks(text) == []

    # every object the run wrote: Delta logs (commit metadata), data files, run summaries, claims, fingerprint
    written = client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]
    assert any(o["Key"].endswith(".json") and "_movielib/runs/" in o["Key"] for o in written)
    for obj in written:
        assert _leaks(client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()) == [], obj["Key"]

    # the Ray sessions these two runs started, and only theirs: every log file
    sessions = list(ray_tmp.glob("ray/session_2*"))  # RAY_TMPDIR/ray/session_*: the first run's (the second
    # fails its config check before it starts Ray)
    assert len(sessions) == 1, sessions
    logs = [f for s in sessions for f in (s / "logs").rglob("*") if f.is_file()]
    assert logs, "the runs' Ray session logs were not found"
    for f in logs:
        assert _leaks(f.read_bytes()) == [], f
    shutil.rmtree(ray_tmp, ignore_errors=True)
