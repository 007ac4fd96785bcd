"""Video access for CPU stages: bring an object to local disk, read its frames by index.

Decoders want a seekable local file, so s3:// objects are streamed to a scratch file
(deleted afterwards) and local files are used in place. Frame numbers are 0-based
decoded-frame indices, the same ones PySceneDetect's OpenCV backend reports.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
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
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="movielib-", dir=scratch_dir)
    try:
        os.close(fd)
        download(fs, path, tmp)
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def read_frames(path: str, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode once, front to back, yielding (index, RGB uint8 HxWx3) for the wanted frame indices.

    Frames not wanted are grabbed but never converted, which costs decode time only.
    """
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        raise VideoReadError(f"cannot open video: {path}")
    try:
        pos = 0
        for idx in wanted:
            while pos < idx:
                if not cap.grab():
                    raise VideoReadError(f"video ended at frame {pos}, before frame {idx}")
                pos += 1
            ok, bgr = cap.read()
            if not ok:
                raise VideoReadError(f"cannot decode frame {idx}")
            pos += 1
            yield idx, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def probe_video(path: str) -> tuple[float, int, int]:
    """(fps, width, height) as OpenCV reports them (fps is the stream's average for VFR files)."""
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise VideoReadError("cannot open video (corrupt, truncated or not a video)")
        return float(cap.get(cv2.CAP_PROP_FPS)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
