"""Untrusted media, read with bounds: an image's header before its pixels, a clip's container before its frames.

A PNG under 1 MB can declare 2^30 pixels (3 GB decoded) and a small MP4 can declare hours of 8K video; the
limits are checked on what the file says about itself, before any decoder allocates for it. Clips are opened
only with the listed demuxers and only from local files (no playlist may make ffmpeg fetch a URL or another
file). A reason never carries a path or a library's error text: those name the server's files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from movielib.serving.config import LimitsSection

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")  # Pillow's names, what the header may say


class Refused(Exception):
    """A request's media refused: the HTTP status and a reason that names the limit."""

    def __init__(self, status: int, reason: str):
        super().__init__(status, reason)
        self.status, self.reason = status, reason


def image_size(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) from the image's header (no pixel decoded), or Refused(422) when it is not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise Refused(422, f"{what} is not an image that can be decoded (JPEG, PNG, WebP, BMP)") from None


def read_image(data: bytes, limits: LimitsSection, what: str = "the body") -> np.ndarray:
    """Image bytes -> RGB uint8, refused (413) past `limits.max_pixels` before decoding, (422) when unreadable."""
    import cv2

    if not data:
        raise Refused(422, f"{what} is empty")
    width, height = image_size(data, what)
    if width * height > limits.max_pixels:
        raise Refused(
            413,
            f"{what} is {width}x{height} ({width * height} pixels), more than limits.max_pixels ({limits.max_pixels})",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise Refused(422, f"{what} is not an image that can be decoded (JPEG, PNG, WebP, BMP)")
    return np.ascontiguousarray(image[..., ::-1])


@dataclass(frozen=True)
class ClipInfo:
    format: str
    duration_s: float
    width: int
    height: int
    streams: int


def probe_clip(path: str, limits: LimitsSection, what: str) -> ClipInfo:
    """The container's own account of a local clip, checked against the limits before a frame is decoded."""
    import av

    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(limits.clip_formats)}
    try:
        container = av.open(path, options=options, metadata_errors="ignore")
    except av.error.ArgumentError:  # no allowed demuxer claims it
        raise Refused(415, f"{what} is not in a container limits.clip_formats allows (MP4/MOV, MKV, AVI, TS)") from None
    except (av.error.FFmpegError, UnicodeDecodeError, OSError):
        raise Refused(422, f"{what} cannot be opened (corrupt, truncated or not a video)") from None
    with container:
        video = container.streams.video
        if not video:
            raise Refused(422, f"{what} has no video stream")
        v = video[0]
        duration = container.duration / 1e6 if container.duration else float(v.duration * v.time_base or 0)
        info = ClipInfo(container.format.name, duration, v.codec_context.width, v.codec_context.height,
                        len(container.streams))  # fmt: skip
    if info.streams > limits.max_clip_streams:
        raise Refused(
            413, f"{what} has {info.streams} streams, more than limits.max_clip_streams ({limits.max_clip_streams})"
        )
    if info.width * info.height > limits.max_clip_pixels:
        raise Refused(
            413,
            f"{what} is {info.width}x{info.height} a frame, more than limits.max_clip_pixels "
            f"({limits.max_clip_pixels})",
        )
    if not info.duration_s or info.duration_s > limits.max_clip_s:
        raise Refused(
            413,
            f"{what} lasts {info.duration_s:.1f} s, more than limits.max_clip_s ({limits.max_clip_s:g} s)"
            if info.duration_s
            else f"{what} does not say how long it is: limits.max_clip_s cannot be checked",
        )
    return info
