"""Model files from s3:// are fetched once per machine into a local cache; local paths pass through."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from movielib.io.uri import S3Options, download, filesystem_for, is_s3


def cache_root() -> Path:
    return Path(os.environ.get("MOVIELIB_CACHE", Path.home() / ".cache" / "movielib"))


def local_file(uri: str, s3: S3Options | None = None, kind: str = "weights") -> str:
    """A local path for `uri`: s3:// objects are copied to the cache (atomically, once), local paths returned as is."""
    if not is_s3(uri):
        return str(Path(uri).expanduser())
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    local = folder / f"{hashlib.sha1(uri.encode()).hexdigest()[:12]}-{os.path.basename(uri)}"
    if not local.exists():
        fs, path = filesystem_for(uri, s3)
        tmp = local.with_suffix(local.suffix + f".part{os.getpid()}")
        download(fs, path, tmp)
        tmp.replace(local)
    return str(local)
