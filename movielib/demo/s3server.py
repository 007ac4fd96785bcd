"""An S3-compatible server on 127.0.0.1 (moto's server mode) for the demo and the tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3

from movielib.runtime import free_port

DEMO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "movielib",
    "AWS_SECRET_ACCESS_KEY": "movielib-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class PortTaken(RuntimeError):
    """The server exited before answering: most often another process bound its port first."""


class MotoS3Server:
    """Starts `moto_server` on a free loopback port; a context manager that stops it on exit.

    `env()` is what a client needs (endpoint + dummy credentials); `use()` puts it into
    os.environ so that boto3, pyarrow and Ray workers started afterwards all see it.
    """

    def __init__(self, port: int | None = None):
        self.chosen = port is None  # a port chosen here is chosen again when another process took it first
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0, attempts: int = 3) -> MotoS3Server:
        for attempt in range(attempts):
            try:
                return self._start(timeout_s)
            except PortTaken:
                if not self.chosen or attempt == attempts - 1:
                    raise
                self.port = free_port()
                self.endpoint_url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> MotoS3Server:
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or shutil.which("moto_server")
        cmd = [exe] if exe else [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen(
            [*cmd, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PortTaken(f"moto_server exited with {self.proc.returncode} (port {self.port} taken?)")
            try:
                # nosec B310: our own server's http:// URL, never a user's
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1).close()  # nosec B310
                return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer on {self.endpoint_url} within {timeout_s}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def env(self) -> dict[str, str]:
        return {**DEMO_CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint_url}

    def use(self) -> None:
        os.environ.update(self.env())

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def upload_folder(self, folder: str | os.PathLike, bucket: str, prefix: str) -> int:
        """Upload every file under `folder` to s3://bucket/prefix/ (creating the bucket); returns the count."""
        s3 = self.client()
        if bucket not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
            s3.create_bucket(Bucket=bucket)
        files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
        for p in files:
            s3.upload_file(str(p), bucket, f"{prefix.strip('/')}/{p.relative_to(folder).as_posix()}")
        return len(files)

    def __enter__(self) -> MotoS3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
