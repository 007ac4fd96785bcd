"""What every job stands on: joining Ray, whole files at any local path or s3:// URI, and run folders.

The jobs (tagging, pretraining, heads, Serve) and the demos use these; none of them reaches into
another job for them. Byte I/O takes the job's own S3 options (`S3Options.from_config(cfg.s3)`:
endpoint, credentials, retries from the config), falling back to the environment's.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import warnings
from pathlib import Path

from pydantic import Field

from movielib.config import Section, changed_fields
from movielib.io.uri import S3Options, filesystem_for

__all__ = [
    "RunSection",
    "actor_pool",
    "exists",
    "init_ray",
    "local_ray_config",
    "read_bytes",
    "run_folder",
    "storage_path",
    "write_bytes",
    "write_run_config",
]


RAY_LOGGERS = ("ray", "ray.train", "ray.tune", "ray.air", "ray.serve")  # ray.data: its own config, below
QUIET_HOOK = "movielib.runtime.quiet_ray_logs"  # the jobs' worker_process_setup_hook (and `movielib submit`'s)
RAY_DATA_LOGGING = os.path.join(os.path.dirname(__file__), "ray_data_logging.yaml")


def verbose() -> bool:
    """`movielib --verbose` (MOVIELIB_VERBOSE=1): Ray's, Train's and Tune's own INFO lines on the console too."""
    return os.environ.get("MOVIELIB_VERBOSE", "") not in ("", "0")


def elapsed_eta(elapsed_s: float, done: int, total: int) -> str:
    """`41s, ETA ~27s` (the ETA in minutes past 90 s) from the time `done` of `total` units took: how an epoch's
    line and a Tune trial's end."""
    eta = elapsed_s / max(1, done) * (total - done)
    return f"{elapsed_s:.0f}s, ETA ~" + (f"{eta:.0f}s" if eta < 90 else f"{eta / 60:.0f}m")


def quiet_ray_logs() -> None:
    """Ray's libraries log INFO lines nobody running a movielib job can act on (checkpoint paths, dataset
    execution plans, parquet sampling): only their warnings and errors reach the console, unless --verbose.
    Runs in the driver and, as the job's worker_process_setup_hook, in every worker process (Tune trials, Train
    workers, Ray Data tasks). Ray Data configures its logger when it is imported, from RAY_DATA_LOGGING_CONFIG
    (init_ray points it at movielib's copy of its default, whose console handler passes warnings only; its file
    handler still writes the session's ray-data.log); here its console handler is raised where it was
    configured already. Ray Train's workers are quieted by the launcher (its LoggingConfig and console filter)."""
    if verbose():
        return
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # a record passes its ancestors' handlers whatever their loggers' levels: Ray Train sets its own loggers to
    # DEBUG on its workers, and their INFO lines reach the console through the "ray" logger's handler
    for handler in logging.getLogger("ray").handlers:
        handler.setLevel(logging.WARNING)
    for handler in logging.getLogger("ray.data").handlers:
        if handler.name == "console":
            handler.setLevel(logging.WARNING)
    # the progress bars movielib turns off on a pipe (init_ray): Ray Data advises turning them back on, in the driver
    # and in each split coordinator of a training run, a choice made here, not the user's to act on
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    from ray.util.annotations import RayDeprecationWarning

    # Ray's libraries calling each other's deprecated options (Train's dataset manager, Ray Data's options)
    warnings.filterwarnings("ignore", category=RayDeprecationWarning)


def local_ray_config(num_cpus: int | None = None) -> dict:
    """Ray's system config for a Ray this process starts on its machine (`ray.init(_system_config=...)`): idle
    worker processes kept for the next task up to the CPUs + 8. Ray keeps them up to the CPUs alone and kills the
    rest after 1 s idle, and the actors Ray Data and Ray Train keep alive through a job (stats, split coordinator,
    train controller) count towards that limit: on a small machine every idle task worker was killed, and each next
    task of a pipeline started a process (~2 s of CPU apiece): on 2 CPUs the pretraining demo's step-1 pairs took
    42-46 s and 30 worker processes that way, 7-9 s and 12-13 with this. The raylet warns once the workers alive
    reach 4x the startup concurrency (the CPUs by default): it is raised to the same number, or each run printed
    "N PYTHON worker processes have been started" for the workers it now keeps."""
    workers = (num_cpus or os.cpu_count() or 1) + 8
    return {"num_workers_soft_limit": workers, "worker_maximum_startup_concurrency": workers}


def init_ray(address: str | None = None) -> None:
    """Join the cluster a job was submitted to (RAY_ADDRESS or `address`), or start a local Ray (with its
    dashboard: Ray Train's clean-up actor reads actor states through it, and warns every few seconds without)."""
    import ray

    if not ray.is_initialized():
        submitted = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ  # `ray job submit` set the job's runtime_env
        quiet = {"RAY_DATA_LOGGING_CONFIG": RAY_DATA_LOGGING}
        if not verbose():
            os.environ.update(quiet)  # this process, and a local Ray's workers (they inherit it)
        env = {} if verbose() else dict(quiet)
        local = {}
        if not (address or os.environ.get("RAY_ADDRESS") or submitted):
            # a Ray of our own: its dashboard on a port chosen here, named to every process of the job. Ray Train's
            # clean-up actor looks the cluster up by its state API, and with another Ray on the machine (a second
            # job, a notebook, a test session) it could not tell which, and printed a traceback every run
            port = free_port()
            local = {"dashboard_port": port, "_system_config": local_ray_config()}
            env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        hook = {} if verbose() else {"worker_process_setup_hook": QUIET_HOOK}
        if not verbose():  # token authentication on (Ray's default, kept): a warning every start, nothing to act on
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        ray.init(
            address=address,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=True,
            runtime_env=None if submitted or not (env or hook) else {**hook, "env_vars": env},
            **local,
        )
        if not verbose():
            print(f"Ray's own logs: {ray_logs_dir()} (movielib --verbose shows them here)", flush=True)
    quiet_ray_logs()
    if not verbose() and not sys.stdout.isatty():  # the driver's bars (parquet sampling) would print a line each
        from ray.data import DataContext  # update to a file or a pipe

        DataContext.get_current().enable_progress_bars = False  # (quiet_ray_logs keeps Ray Data's advice off)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port nobody listens on, drawn at random outside the kernel's ephemeral range: no outgoing
    connection is given it between this call and the caller's bind (bind-to-0 ports come from that range)."""
    low, high = _ephemeral_range()
    span = range(10000, low) if low - 10000 >= 2000 else range(high + 1, 65536)
    for _ in range(100):
        port = random.choice(span)  # nosec B311: picking a port, not a secret
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_logs_dir() -> str:
    """This node's Ray session log folder."""
    import ray

    node = ray._private.worker._global_node  # no public API names it
    return node.get_logs_dir_path() if node else "the session folder's logs/ (ray.init has not run)"


def actor_pool() -> dict:
    """Ray Data map_batches arguments for a model-holding actor pool that grows with the cluster: one actor up to
    one per GPU when the cluster has GPUs (each on its GPU), else up to half the CPUs."""
    import ray
    import ray.data

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    most = gpus if gpus else max(1, cpus // 2)
    return {"compute": ray.data.ActorPoolStrategy(min_size=1, max_size=most), **({"num_gpus": 1} if gpus else {})}


def read_bytes(path: str, s3: S3Options | None = None) -> bytes:
    """A whole file at a local path or s3:// URI."""
    fs, where = filesystem_for(path, s3)
    with fs.open_input_stream(where) as f:
        return f.read()


def write_bytes(path: str, data: bytes, s3: S3Options | None = None) -> None:
    """A whole file at a local path or s3:// URI (its folder is made when missing)."""
    fs, where = filesystem_for(path, s3)
    fs.create_dir(where.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(where) as f:
        f.write(data)


def exists(path: str, s3: S3Options | None = None) -> bool:
    """Whether a file or folder is at a local path or s3:// URI."""
    import pyarrow.fs as pafs

    fs, where = filesystem_for(path, s3)
    return fs.get_file_info(where).type != pafs.FileType.NotFound


class RunSection(Section):
    """Where a training run or sweep lives: `<folder>/<name>/` (config, checkpoints, metrics, exports)."""

    folder: str = "runs"  # local path or s3:// prefix; the run is <folder>/<name>
    name: str = "run"
    max_failures: int = Field(default=2, ge=0)  # worker deaths survived (restart from the last checkpoint)


def run_folder(run: RunSection) -> str:
    """Where a run lives: one subfolder per stage (checkpoints, metrics.csv, curves.png), and its exports."""
    return f"{storage_path(run.folder).rstrip('/')}/{run.name}"


def storage_path(folder: str) -> str:
    """Ray Train's / Tune's storage_path: s3:// as it is, a local folder absolute."""
    return folder if "://" in folder else os.path.abspath(os.path.expanduser(folder))


# fields a run may change when it is started again: where Ray and S3 are, how many failures to survive, how often
# Ray Train's controller polls
RESUMABLE = ("ray_address", "s3", "run.max_failures", "run.folder", "run.controller_poll_s")


def write_run_config(folder: str, cfg, s3: S3Options | None = None, may_change: tuple[str, ...] = RESUMABLE) -> None:
    """Record `cfg` as the run's config.yaml; a run folder that holds another run's config is refused, naming
    what changed (its checkpoints and exports came from those settings), unless only `may_change` fields did."""
    import yaml

    from movielib.errors import ConfigError

    path = f"{folder}/config.yaml"
    new = cfg.to_dict()
    if exists(path, s3):
        old = yaml.safe_load(read_bytes(path, s3)) or {}
        changed = [
            f"{k}: {a!r} -> {b!r}"
            for k, (a, b) in changed_fields(old, new).items()
            if not any(k == f or k.startswith(f"{f}.") for f in may_change)
        ]
        if changed:
            raise ConfigError(
                f"run.name: the run folder {folder} was started with other settings ({'; '.join(changed[:8])}); "
                "run it again with its own settings to resume it, or give the new run another run.name"
            )
    write_bytes(path, cfg.to_yaml().encode(), s3)
