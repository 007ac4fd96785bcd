"""`movielib submit JOB --address http://HEAD:8265 [job args]`: a movielib job on a running Ray cluster.

A thin wrapper over Ray's Job Submission SDK, doing what `ray job submit --working-dir . -- python -m
movielib ...` does plus the checks a user would otherwise learn about only on the cluster: the job's
arguments are parsed here first (a typo fails before anything is uploaded), a `--config` file must be
inside the shipped working dir, the logs stream while the job runs, and the exit status is the job's
(the driver's own exit code when Ray knows it, so the tagging job's 75 "retry later" survives).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from movielib import registry
from movielib.errors import ConfigError, MovielibError
from movielib.runtime import QUIET_HOOK


def jobs() -> dict[str, tuple[str, ...]]:
    """movielib submit JOB -> the `movielib` command it runs on the cluster: the registry's jobs that end."""
    return {job.name: job.command for job in registry.JOBS if job.submit}


# what never needs to travel with a job, beyond what Ray leaves out itself (.git, .venv, ... and whatever the
# working dir's .gitignore names); and what must never travel: secrets a working dir may hold
EXCLUDES = ["**/__pycache__", "*.egg-info", ".pytest_cache", "bench-results", "demo-output"]
SECRETS = [".env", ".env.*", "**/.env", "**/.env.*", "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_ed25519*",
           "credentials", "**/credentials", "credentials.*", "**/credentials.*", ".aws/", ".ssh/", ".netrc",
           ".git-credentials", "*.kubeconfig", ".kube/"]  # fmt: skip
SECRET_FIELDS = ("secret_access_key", "access_key_id", "session_token", "token", "password", "api_key")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
PACKAGE = Path(__file__).resolve().parents[1]  # the movielib package this command runs from


@dataclass
class Submission:
    """One job: what runs (`python -m movielib ...`) and what ships with it."""

    job: str
    job_args: list[str]
    working_dir: Path = field(default_factory=Path.cwd)
    ship_package: bool = True  # False: the cluster's image has the movielib to use
    submission_id: str | None = None

    def __post_init__(self) -> None:
        if self.job not in jobs():
            raise ConfigError(f"unknown job {self.job!r}: one of {', '.join(jobs())}")
        self.working_dir = Path(self.working_dir).resolve()
        if not self.working_dir.is_dir():
            raise ConfigError(f"--working-dir {str(self.working_dir)!r} is not a folder")
        if self.working_dir == Path.home().resolve():
            raise ConfigError(
                "--working-dir is your home folder: it would ship everything in it (keys, credentials, other "
                "projects) to the cluster; run from the project's folder or pass --working-dir"
            )

    @property
    def argv(self) -> list[str]:
        return [*jobs()[self.job], *self.job_args]

    @property
    def entrypoint(self) -> str:
        return shlex.join(["python", "-m", "movielib", *self.argv])

    @property
    def runtime_env(self) -> dict:
        env: dict = {
            "working_dir": str(self.working_dir),
            "excludes": [*EXCLUDES, *SECRETS],
            "worker_process_setup_hook": QUIET_HOOK,  # Ray's INFO chatter stays in the job's logs
        }
        if self.ship_package and PACKAGE.parent != self.working_dir:  # else `python -m` finds it in the cwd
            env["py_modules"] = [str(PACKAGE)]
        return env

    def check(self) -> None:
        """The job's arguments as the cluster will parse them, and its config file, checked here first."""
        args = registry.job_parser().parse_args(self.argv)  # argparse: usage + exit 2 on a bad flag
        config = getattr(args, "config", None)
        if config and "://" not in config:
            path = (self.working_dir / config) if not Path(config).is_absolute() else Path(config)
            if not path.is_file():
                raise ConfigError(
                    f"--config {config!r}: no such file (relative paths are read from the working "
                    f"dir {self.working_dir}, which ships with the job)"
                )
            if not path.resolve().is_relative_to(self.working_dir):
                raise ConfigError(
                    f"--config {config!r} is outside the working dir {self.working_dir}, so it would "
                    "not reach the cluster: move it there or pass --working-dir"
                )
            for key in secret_fields(path):
                print(
                    f"movielib: warning: --config {config} sets {key}: it ships to the cluster with the working dir "
                    "and shows in the job's config; give the cluster its keys through a Secret or an instance role",
                    file=sys.stderr,
                )


def secret_fields(path: Path) -> list[str]:
    """The dotted names of a YAML config's fields that hold a secret's value (keys, tokens, passwords)."""
    import yaml

    found: list[str] = []

    def walk(node, at: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                name = f"{at}.{k}" if at else str(k)
                if str(k).lower().endswith(SECRET_FIELDS) and v not in (None, ""):
                    found.append(name)
                walk(v, name)

    try:
        walk(yaml.safe_load(path.read_text(encoding="utf-8")), "")
    except yaml.YAMLError:
        pass  # the job's own parser names what is wrong with it
    return found


def _auth_token() -> str | None:
    """Ray's token for clusters with token auth, where Ray's own CLI looks for it."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text(encoding="utf-8").strip() if path.is_file() else None


def client_for(address: str):
    """Ray's JobSubmissionClient for the dashboard at `address` (http://HEAD:8265), or an error naming it.

    A cluster with token auth gets the token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) even
    when this shell has not set RAY_AUTH_MODE=token, which Ray's client needs before it sends one."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        try:
            return JobSubmissionClient(address)
        except AuthenticationError:
            token = _auth_token()
            if token is None:
                raise
            refuse_plain_http(address)
            return JobSubmissionClient(address, headers={"Authorization": f"Bearer {token}"})
    except AuthenticationError as exc:
        raise MovielibError(
            f"the Ray cluster at {address} refused this client's token: "
            f"{str(exc).splitlines()[0]} (set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH)"
        ) from exc
    except Exception as exc:  # ConnectionError, or a RuntimeError wrapping one
        raise MovielibError(
            f"cannot reach the Ray dashboard at {address} ({exc}); is the head up and its "
            "dashboard port (8265) reachable?"
        ) from exc


def refuse_plain_http(address: str) -> None:
    """The cluster's token goes over https, or over plain http to this machine only (an SSH / port-forward tunnel)."""
    from urllib.parse import urlparse

    url = urlparse(address if "://" in address else f"http://{address}")
    if url.scheme != "https" and url.hostname not in LOCAL_HOSTS:
        raise MovielibError(
            f"refusing to send the cluster's token over plain http to {url.hostname}: anyone on the way could run "
            "jobs with it; use https://, or tunnel to localhost (`ray dashboard cluster/aws.yaml`, "
            "`kubectl port-forward svc/<cluster>-head-svc 8265`)"
        )


async def _stream_logs(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)


def wait_for(client, job_id: str, follow: bool = True, poll_s: float = 1.0):
    """Stream the job's logs (if `follow`) until it ends; returns its JobDetails."""
    if follow:
        try:
            asyncio.run(_stream_logs(client, job_id))
        except Exception as exc:  # a dropped log stream is not the job failing: keep waiting on its status
            print(f"movielib: log stream ended early ({exc}); waiting for the job's status", file=sys.stderr)
    while (info := client.get_job_info(job_id)).status not in TERMINAL:
        time.sleep(poll_s)
    return info


def exit_code(info) -> int:
    """0 when the job succeeded; otherwise the driver's exit code when Ray has it, else 1."""
    if info.status == "SUCCEEDED":
        return 0
    return info.driver_exit_code or 1


def submit(sub: Submission, address: str, wait: bool = True) -> int:
    """Submit `sub` to the cluster at `address`; with `wait`, stream its logs and return its exit status."""
    sub.check()
    client = client_for(address)
    job_id = client.submit_job(
        entrypoint=sub.entrypoint,
        runtime_env=sub.runtime_env,
        submission_id=sub.submission_id,
        metadata={"movielib_job": sub.job},
    )
    print(
        f"submitted {job_id} to {address}: {sub.entrypoint}\n"
        f"  logs: ray job logs --address {address} -f {job_id}   stop: ray job stop --address {address} {job_id}",
        flush=True,
    )
    if not wait:
        return 0
    try:
        info = wait_for(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nmovielib: stopped following {job_id}; the job goes on (ray job stop --address {address} {job_id})",
            file=sys.stderr,
        )
        return 130
    code = exit_code(info)
    line = f"job {job_id} {info.status}"
    if code:
        reason = (info.message or "").strip().partition("\n")[0].rstrip(",")  # Ray repeats the logs after it
        line += f" (exit {code}): {reason}"
    print(line, file=sys.stderr if code else sys.stdout, flush=True)
    return code
