"""`movielib submit` for real: a local head from `ray start --head` on 127.0.0.1 (its own temp dir and
ports), the tagging job over a tiny catalog on the session's S3 server, and a job that fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY

from movielib.demo.s3server import free_port
from movielib.runtime import local_ray_config
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def ray_head(s3_server, tmp_path_factory):
    """`ray start --head --block` with every port chosen here, so it sits beside the session's Ray;
    SIGTERM to its process group stops all its processes (`ray stop` would stop every Ray on the machine)."""
    from ray.job_submission import JobSubmissionClient

    temp = Path(f"/tmp/mlh-{os.getpid()}")  # Ray's socket paths must stay short
    low = free_port()  # the workers' range [low, low + 200]: every other port is drawn outside it, each once
    taken = set(range(low, low + 201))
    ports = {}
    for opt in (
        "port",
        "dashboard-port",
        "ray-client-server-port",
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    ):
        port = free_port()
        while port in taken:
            port = free_port()
        ports[opt] = port
        taken.add(port)
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address",
        "127.0.0.1",
        "--dashboard-host",
        "127.0.0.1",
        "--include-dashboard",
        "true",
        "--temp-dir",
        str(temp),
        "--num-cpus",
        "2",
        "--disable-usage-stats",
        "--min-worker-port",
        str(low),
        "--max-worker-port",
        str(low + 200),
        *[x for opt, port in ports.items() for x in (f"--{opt}", str(port))],
    ]
    # the head's environment is its jobs': this venv's `python` first on PATH, and the S3 server's endpoint
    # ... and the worker pool a local Ray of movielib's keeps (runtime.local_ray_config), as RAY_<name> settings
    pool = {f"RAY_{k}": str(v) for k, v in local_ray_config(2).items()}
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled", **pool}
    log = tmp_path_factory.mktemp("head") / "ray-start.log"
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log.open("w"), stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    deadline = time.monotonic() + 90
    while True:
        try:
            JobSubmissionClient(address)
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"ray start --head did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
    yield address
    os.killpg(proc.pid, signal.SIGTERM)  # the head and every process it started (its own session), at once
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    shutil.rmtree(temp, ignore_errors=True)


def _submit(address: str, cwd: Path, *job: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "movielib"), "submit", *job[:1], "--address", address, *job[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )


def test_the_tagging_job_submitted_to_a_head_writes_the_catalog(ray_head, s3_server, bucket, clips, tmp_path):
    s3 = s3_server.client()
    for name in ("three.mp4", "two_30fps.mp4"):
        s3.upload_file(str(clips[name][0]), bucket, f"catalog/{name}")
    # the config file travels in the working dir (a folder that is not this checkout: movielib ships as a module)
    (tmp_path / "tag.yaml").write_text(
        "scoring: {batch_size: 4}\npeople: {enabled: false}\nfeatures: {audio: false, text: false}\n"
    )
    dest = f"s3://{bucket}/tags"
    proc = _submit(
        ray_head,
        tmp_path,
        "tag",
        f"s3://{bucket}/catalog/",
        dest,
        "--config",
        "tag.yaml",
        "--model",
        TINY,
        "--random-weights",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "submitted raysubmit_" in out and "python -m movielib tag" in out
    assert "2 tagged, 0 failed" in out and "batch_size: 4" in out  # the job's own logs, streamed; its config read
    assert "SUCCEEDED" in out
    store = CatalogStore(dest)
    assert sorted(r["uri"].rsplit("/", 1)[-1] for r in store.read_table("videos").to_pylist()) == [
        "three.mp4",
        "two_30fps.mp4",
    ]
    assert len(store.read_table("shots")) == len(clips["three.mp4"][1]) + len(clips["two_30fps.mp4"][1]) + 2


def test_a_job_that_fails_on_the_cluster_exits_non_zero_with_its_error(ray_head, bucket, tmp_path):
    proc = _submit(
        ray_head,
        tmp_path,
        "tag",
        f"s3://{bucket}/catalog/",
        f"s3://{bucket}/tags",
        "--random-weights",
        "--set",
        "sampling.fps=-1",
    )
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]  # the driver's own exit code
    assert "sampling.fps" in proc.stdout  # the job's error, from its streamed logs
    assert "FAILED (exit 2)" in proc.stderr


def test_a_typo_in_the_jobs_arguments_fails_before_anything_is_submitted(ray_head, tmp_path):
    proc = _submit(ray_head, tmp_path, "tag", "s3://b/catalog/", "s3://b/tags", "--wieghts", "x")
    assert proc.returncode == 2 and "unrecognized arguments: --wieghts" in proc.stderr
    assert "submitted" not in proc.stdout
    from ray.job_submission import JobSubmissionClient

    assert not [j for j in JobSubmissionClient(ray_head).list_jobs() if "--wieghts" in j.entrypoint]
