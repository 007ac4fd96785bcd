"""Video objects for CPU stages: bring an object to local disk for the decoder (movielib.io.decode).

Decoders want a seekable local file, so s3:// objects are streamed to a scratch file
(deleted afterwards) and local files are used in place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pyarrow.fs as pafs

from movielib.io.uri import S3Options, download, filesystem_for


class VideoReadError(RuntimeError):
    """The object is missing, empty, not a video, or cannot be decoded."""


@contextlib.contextmanager
def local_copy(uri: str, s3: S3Options | None = None, scratch_dir: str | None = None) -> Iterator[str]:
    """Yield a local path for `uri`, copying remote objects to a scratch file for the block's duration."""
    fs, path = filesystem_for(uri, s3)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise VideoReadError(f"object not found: {uri}")
    if info.size == 0:
        raise VideoReadError(f"object is empty (0 bytes): {uri}")
    if isinstance(fs, pafs.LocalFileSystem):
        yield path
        return
    # no suffix from the object's key: a name the uploader chose must not pick ffmpeg's demuxer (.m3u8, .concat)
    fd, tmp = tempfile.mkstemp(prefix="movielib-", dir=scratch_dir)
    try:
        os.close(fd)
        download(fs, path, tmp)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
