"""Model files from s3:// are fetched once per machine into a local cache; local paths pass through."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow.fs as pafs

from movielib.io.uri import S3Options, download, filesystem_for, is_s3


def cache_root() -> Path:
    return Path(os.environ.get("MOVIELIB_CACHE", Path.home() / ".cache" / "movielib"))


def local_path(uri: str, s3: S3Options | None = None, kind: str = "weights") -> str:
    """A local path for `uri`: an s3:// object or prefix (a folder of files) is copied to the cache
    once, atomically; local paths are returned as they are (they may not exist: callers check)."""
    if not is_s3(uri):
        return str(Path(uri).expanduser())
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(uri.rstrip("/").encode(), usedforsecurity=False).hexdigest()[:12]  # a name, not a signature
    local = folder / f"{digest}-{os.path.basename(uri.rstrip('/'))}"
    if local.exists():
        return str(local)
    fs, path = filesystem_for(uri, s3)
    info = fs.get_file_info(path)
    tmp = local.with_name(local.name + f".part{os.getpid()}")
    if info.type == pafs.FileType.File:
        download(fs, path, tmp)
    elif info.type == pafs.FileType.Directory:
        shutil.rmtree(tmp, ignore_errors=True)
        for item in fs.get_file_info(pafs.FileSelector(path, recursive=True)):
            if item.type == pafs.FileType.File:
                target = tmp / os.path.relpath(item.path, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                download(fs, item.path, target)
    else:
        return str(local)  # does not exist: the caller reports it
    try:
        tmp.replace(local)
    except OSError:  # another process finished the same copy first
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
    return str(local)
