"""`movielib serve` as the README shows it: the shipped serve/movielib.yaml, blocking in the foreground with a Ray
of its own (a second one on this machine, beside the suite's), answering HTTP, and gone on Ctrl-C."""

import os
import shlex
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests
from conftest import CONSOLE_NOISE, ROOT, movielib_cli

from movielib.runtime import free_port

pytestmark = pytest.mark.slow


def _readme_command() -> list[str]:
    """The README's first `movielib serve --config serve/movielib.yaml --random-weights ...` line, as argv."""
    line = next(
        line
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("movielib serve --config serve/movielib.yaml --random-weights")
    )
    return shlex.split(line.split("#", 1)[0])


@pytest.mark.timeout(600)
def test_movielib_serve_with_the_shipped_config_answers_until_ctrl_c(ray_local):
    argv = _readme_command()
    assert argv[:4] == ["movielib", "serve", "--config", "serve/movielib.yaml"]
    port = free_port()  # the README's port is 8000; a free one here
    proc = movielib_cli(
        *argv[1:], "--set", f"port={port}", join_ray=False, env={"MOVIELIB_VERBOSE": "0"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not any(x.startswith("serving on") for x in lines):
            time.sleep(0.5)
        assert any(x.startswith(f"serving on {url}") for x in lines), "".join(lines)[-3000:]
        assert requests.get(f"{url}/healthz", timeout=30).json() == {"status": "ok"}
        answer = requests.post(f"{url}/embed/text", json={"texts": ["a beach at night"]}, timeout=60)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"].startswith("movielib-tiny-clip/") and len(body["embeddings"]) == 1
        assert requests.get(f"{url}/tag/docs", timeout=30).status_code == 200  # the tagging app, on its prefix
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in its terminal: the foreground process group
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    reader.join(timeout=10)
    console = "".join(lines)
    assert f"stopped serving {url}" in console, console[-3000:]
    noisy = [x for x in lines if any(n in x for n in CONSOLE_NOISE)]
    assert not noisy, noisy
    with socket.socket() as s, pytest.raises(OSError):  # nothing listens there any more
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
