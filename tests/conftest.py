"""Shared fixtures: one local Ray and one moto S3 server per test session, generated videos with known cuts."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

from movielib.demo.s3server import MotoS3Server  # noqa: E402
from movielib.demo.samples import Segment, generate_clip  # noqa: E402
from movielib.runtime import local_ray_config  # noqa: E402

TINY = "movielib-tiny-clip"
SERVE_KEY_ENV = "MOVIELIB_TEST_API_KEY"

# Clips with known cuts: sources PySceneDetect separates cleanly, different lengths and frame rates.
CLIPS = {
    "three.mp4": ([Segment("testsrc", 2.0), Segment("smptebars", 2.0), Segment("color:darkblue", 2.0)], 25),
    "four.mp4": (
        [
            Segment("mandelbrot", 1.6),
            Segment("color:red", 1.2),
            Segment("rgbtestsrc", 2.0),
            Segment("color:green", 1.4),
        ],
        25,
    ),
    "two_30fps.mp4": ([Segment("smptebars", 1.5), Segment("testsrc2", 1.5)], 30),
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, tuple[Path, list[int]]]:
    """{name: (path, known cut frames)} for real H.264 files encoded by ffmpeg."""
    folder = tmp_path_factory.mktemp("clips")
    return {name: (folder / name, generate_clip(folder / name, segs, fps=fps)) for name, (segs, fps) in CLIPS.items()}


@pytest.fixture(scope="session")
def s3_server():
    server = MotoS3Server().start()
    saved = {k: os.environ.get(k) for k in server.env()}
    server.use()
    yield server
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_local(s3_server):
    """A real local Ray (2 CPUs), started after the S3 env is set so workers inherit it."""
    import ray

    # the Serve tests' API key (auth.api_key_env): replicas see the environment Ray started in, as pods see a Secret
    os.environ.setdefault(SERVE_KEY_ENV, secrets.token_hex(16))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=local_ray_config(2))
    yield ray
    ray.shutdown()


@pytest.fixture
def refused_url():
    """http://127.0.0.1:PORT where connections are refused for the whole test: the port is bound and never
    listened on, so no other process can take it (a fixed port, or one picked and released, could be anyone's)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def bucket(s3_server, request) -> str:
    """A fresh bucket per test, named after it."""
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50].strip("-")
    s3_server.client().create_bucket(Bucket=name)
    return name


def _tiny_quickgelu_config() -> dict:
    import open_clip

    import movielib.models.clip  # noqa: F401  (registers movielib's configs)

    return {**open_clip.get_model_config(TINY), "quick_gelu": True}


TINY_QUICKGELU = _tiny_quickgelu_config()
# a preprocessing config that differs from the defaults, so it must come from the folder
FOLDER_PREPROCESS = {
    "mean": [0.5, 0.5, 0.5],
    "std": [0.5, 0.5, 0.5],
    "interpolation": "bilinear",
    "resize_mode": "squash",
}


def hf_folder(path: Path, seed: int = 3) -> Path:
    """An HF-style open_clip folder: open_clip_config.json (QuickGELU, its own preprocessing) + safetensors."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY, force_quick_gelu=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "open_clip_model.safetensors"))
    (path / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": TINY_QUICKGELU, "preprocess_cfg": FOLDER_PREPROCESS})
    )
    return path


LIGHT = {"people.enabled": False, "features.audio": False, "features.text": False}  # scoring only: fast runs


def link_catalog(folder: Path, clips: dict, copies: int = 1) -> dict[str, int]:
    """`copies` differently named links to each clip (distinct videos: the id hashes the URI) -> shots each."""
    folder.mkdir(parents=True)
    expected = {}
    for n in range(copies):
        for name, (path, cuts) in clips.items():
            (folder / f"{n}-{name}").symlink_to(path)
            expected[f"{n}-{name}"] = len(cuts) + 1
    return expected


def assert_each_key_once(store, n_videos: int, n_shots: int) -> None:
    for name in ("shots", "tags", "features/image"):
        keys = store.read_table(name, columns=["video_id", "shot_idx"]).to_pylist()
        assert len(keys) == len({(k["video_id"], k["shot_idx"]) for k in keys}) == n_shots, name
    ids = store.video_ids().to_pylist()
    assert len(ids) == len(set(ids)) == n_videos


def movielib_cli(*args: str, env: dict | None = None, join_ray: bool = True, script: tuple[str, ...] = (), **popen):
    """`python -m movielib.cli ARGS` in a subprocess; `join_ray` makes it a driver of this session's Ray
    (as a job submitted to a cluster is), else it starts a Ray of its own. `script`: the same job run by the entry
    point `ray job submit` runs instead (("jobs/train_genre.py",), ("jobs/run.py", "train-genre")), which takes the
    arguments after the job's command words."""
    import subprocess

    import ray

    from movielib.registry import JOBS

    full = {**os.environ, **(env or {})}
    if join_ray:
        full["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    argv = [sys.executable, "-m", "movielib.cli", *args]
    if script:
        (words,) = [len(j.command) for j in JOBS if tuple(args[: len(j.command)]) == j.command]
        argv = [sys.executable, *script, *args[words:]]
    return subprocess.Popen(argv, cwd=ROOT, env=full, **popen)


DEMO_CONSOLE_LINES = 150
# lines a good run must not print: a traceback, and warnings nobody running a demo can act on (Ray's token
# authentication notice; torch's detach advice; Ray Train's clean-up actor confused by a second Ray on the machine)
CONSOLE_NOISE = (
    "Traceback (most recent call last)",
    "Token authentication is enabled",
    "Consider using tensor.detach()",
    "Found multiple active Ray instances",
    "Throughput optimized Ray Serve enabled",  # Serve's banner (serving/app.py sets the mode by its parts)
    "PYTHON worker processes have been started",  # the raylet's count (runtime.local_ray_config)
    "Progress bars disabled",  # Ray Data's advice, from the driver and each split coordinator
    "The given NumPy array is not writable",  # torch, on Ray Data's read-only batches (launcher)
)


def run_demo(*args: str, timeout: float = 900) -> str:
    """`movielib demo ARGS` as a user runs it (its own Ray and S3 server); its console, checked for what a person
    reads: no crash dump, no line over and over (Ray's and Tune's chatter stays in Ray's logs), a screenful or two.
    The demo tests ask for the suite's Ray (ray_local), so a second Ray instance runs on the machine beside the
    demo's, as a notebook or another job would (Ray Train's clean-up actor once printed a traceback then)."""
    import collections
    import subprocess

    proc = movielib_cli(
        "demo", *args, join_ray=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"MOVIELIB_VERBOSE": "0"}, start_new_session=True,
    )  # fmt: skip
    try:
        console, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)  # the demo and its Ray, not left running by a failed test
    assert proc.returncode == 0, console[-3000:]
    lines = [line for line in console.splitlines() if line.strip()]
    assert "Fatal Python error" not in console, console[-3000:]
    noisy = [line for line in lines if any(n in line for n in CONSOLE_NOISE)]
    assert not noisy, noisy
    repeated = {line: n for line, n in collections.Counter(lines).items() if n > 3}
    assert not repeated, repeated
    assert len(lines) <= DEMO_CONSOLE_LINES, f"{len(lines)} lines:\n" + "\n".join(lines)
    return console


def registered_epochs(stage: Path) -> list[int]:
    """The epochs of the checkpoints Ray Train has on record for a run's stage (its checkpoint manager snapshot):
    what a resume starts from. A checkpoint folder alone can be an orphan."""
    import json

    try:
        saved = json.loads((stage / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, ValueError):  # not written yet, or caught mid-write
        return []
    return [c["metrics"]["epoch"] for c in saved.get("checkpoint_results", [])]


def killed_and_run_again(
    args: list[str], *stages: Path, scripts: tuple[tuple[str, ...], ...] = ()
) -> list[tuple[int, list[dict]]]:
    """`movielib ARGS` killed once the first of `stages` has a checkpoint on record, started again and killed once
    the next one has, and so on, then run again to the end; for each stage (<run folder>/<stage>) the last epoch on
    record at its kill and the metrics rows it wrote after it. `scripts[i]`: run i started by that entry point
    (movielib_cli's `script`) instead, so that each of jobs/ and tune/ runs a job once in the suite."""
    import subprocess

    from movielib.train.runlog import RunLog

    def start(i: int, **popen):
        return movielib_cli(*args, script=scripts[i] if i < len(scripts) else (), **popen)

    kills = []
    for i, stage in enumerate(stages):
        proc = start(i, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        last = kill_after_a_checkpoint(proc, stage)
        kills.append((stage, last, len(RunLog(str(stage)).rows)))
    again = start(len(stages), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, _ = again.communicate(timeout=400)
    assert again.returncode == 0, out[-3000:]
    return [(last, RunLog(str(stage)).rows[before:]) for stage, last, before in kills]


def as_sets(config: dict, prefix: str = "") -> list[str]:
    """A config's sections as the CLI's --set=section.field=value arguments."""
    out = []
    for k, v in config.items():
        out += as_sets(v, f"{prefix}{k}.") if isinstance(v, dict) else [f"--set={prefix}{k}={v}"]
    return out


def assert_resumed(last: int, after: list[dict], epochs: int, final_step: int) -> None:
    """A stage's rows after a kill (killed_and_run_again) are a resume, not a restart: the launcher's resume row
    names the last checkpoint on record at the kill (a restart writes none, and epoch 1 again), the epochs after it
    follow in order to the last, every step comes after the resumed one, and the stage ends at the uninterrupted
    run's `final_step`."""
    assert after and after[0]["kind"] == "resume" and after[0]["resumed_epoch"] == last >= 1, after[:1]
    done = [r for r in after if r["kind"] == "epoch"]
    assert [r["epoch"] for r in done] == list(range(last + 1, epochs + 1)), done
    assert all(r["step"] > after[0]["resumed_step"] for r in after[1:] if r["kind"] != "resume" and r.get("step"))
    assert (done[-1]["step"] if done else after[0]["resumed_step"]) == final_step, (after, final_step)


def kill_after_a_checkpoint(proc, stage: Path, timeout: float = 240) -> int:
    """SIGKILL the driver `proc` (started with start_new_session) once its `stage` has a checkpoint on record;
    returns the last epoch on record after the kill (what the next run must resume from)."""
    import signal
    import time

    deadline = time.time() + timeout
    while time.time() < deadline and not registered_epochs(stage) and proc.poll() is None:
        time.sleep(0.5)
    assert registered_epochs(stage), f"the job never registered a checkpoint (exit code {proc.poll()})"
    proc.send_signal(signal.SIGKILL)  # the driver dies mid-run
    proc.wait()
    _wait_for_training_actors_to_go(deadline=time.time() + 60)  # they die with their owner, not at once
    return max(registered_epochs(stage))


def live_actors(classes: tuple[str, ...], own_job: bool) -> list[dict]:
    """Live actors of this session's Ray (the GCS's table: the state API needs the dashboard, off in tests) whose
    class name contains one of `classes`: this driver's own (`own_job`), or other drivers' (a killed CLI run's)."""
    import ray
    from ray._private.state import actors

    own = ray.get_runtime_context().get_job_id()
    return [
        a
        for a in actors().values()
        if a["State"] != "DEAD" and (a["JobID"] == own) == own_job and any(c in a["ActorClassName"] for c in classes)
    ]


def _wait_for_training_actors_to_go(deadline: float) -> None:
    """Until this session's Ray has no live Ray Train controller or worker of another driver (a killed driver's run
    still logs and registers checkpoints until Ray reaps them; this session's own runs' controllers outlive them)."""
    import time

    def alive() -> list:
        return live_actors(("TrainController", "RayTrainWorker"), own_job=False)

    while alive() and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(), "the killed run's training actors are still alive"
