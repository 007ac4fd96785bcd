"""What every job stands on: joining Ray, whole files at any local path or s3:// URI, and run folders.

The jobs (tagging, pretraining, heads, Serve) and the demos use these; none of them reaches into
another job for them. Byte I/O takes the job's own S3 options (`S3Options.from_config(cfg.s3)`:
endpoint, credentials, retries from the config), falling back to the environment's.
"""

from __future__ import annotations

import os

from pydantic import Field

from movielib.config import Section
from movielib.io.uri import S3Options, filesystem_for

__all__ = ["RunSection", "exists", "init_ray", "read_bytes", "run_folder", "storage_path", "write_bytes"]


def init_ray(address: str | None = None) -> None:
    """Join the cluster a job was submitted to (RAY_ADDRESS or `address`), or start a local Ray."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True)


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
