"""One decode pass per video: every frame once, in presentation order, with its index and real time.

The shot detector and the frame sampler are both fed from this one stream (PySceneDetect's
frame-fed model), so they share one frame numbering and one clock. A decoded frame stays in the
decoder's own format (YUV on the CPU) until someone asks for pixels: the detector asks for a small
analysis-size copy of every frame, the sampler for full-resolution RGB of a few.

Decoders behind one interface (`open_stream(path) -> DecodedStream`):
  - `PyAVDecoder`: libavcodec through PyAV, frame+slice threads, on the CPU; pixels equal
    OpenCV's decode (the same libswscale conversion), display-matrix rotation applied as OpenCV does;
  - `NvdecDecoder`: NVDEC on the task's reserved GPU through torchcodec (needs Debian's shared
    FFmpeg libraries and a CUDA build of torchcodec), frames as tensors on that GPU.
Frame indices are 0-based decoded-frame numbers; `pts_s` is seconds from the first frame.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from movielib.io.video import VideoReadError


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # the stream's average rate (nominal for VFR files)
    width: int  # as displayed (after rotation)
    height: int


class DecodedFrame(Protocol):
    index: int
    pts_s: float

    def analysis(self, width: int, height: int, fmt: str = "bgr24", interpolation: str = "POINT") -> np.ndarray:
        """A small (height, width, 3) uint8 copy for a detector, scaled inside the decoder."""

    def rgb(self) -> np.ndarray:
        """Full-resolution (height, width, 3) uint8 RGB, as displayed."""

    def bgr(self) -> np.ndarray:
        """Full-resolution BGR (what OpenCV, and so PySceneDetect, decodes)."""


class DecodedStream(Protocol):
    info: VideoInfo

    def __iter__(self) -> Iterator[DecodedFrame]: ...


class Decoder(Protocol):
    name: str

    def open_stream(self, path: str) -> contextlib.AbstractContextManager[DecodedStream]: ...


def _rotate(img: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display-matrix rotation (degrees counter-clockwise, as PyAV reports it) like OpenCV does."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(img, turns)) if turns else img


class PyAVFrame:
    """One decoded frame (a PyAV VideoFrame still in the decoder's pixel format)."""

    __slots__ = ("index", "pts_s", "_frame", "_rotation")

    def __init__(self, index: int, pts_s: float, frame, rotation: int):
        self.index, self.pts_s, self._frame, self._rotation = index, pts_s, frame, rotation

    def analysis(self, width: int, height: int, fmt: str = "bgr24", interpolation: str = "POINT") -> np.ndarray:
        w, h = (height, width) if self._rotation % 180 else (width, height)
        return _rotate(self._frame.to_ndarray(width=w, height=h, format=fmt, interpolation=interpolation), self._rotation)

    def bgr(self) -> np.ndarray:
        return _rotate(self._frame.to_ndarray(format="bgr24"), self._rotation)

    def rgb(self) -> np.ndarray:
        return _rotate(self._frame.to_ndarray(format="rgb24"), self._rotation)


class PyAVStream:
    def __init__(self, container, threads: int):
        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads inside libavcodec
        if threads:
            self._stream.codec_context.thread_count = threads
        cc = self._stream.codec_context
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        self._rotation = 0
        w, h = cc.width, cc.height
        self.info = VideoInfo(fps=float(rate) if rate else 0.0, width=w, height=h)
        self.n = 0

    def __iter__(self) -> Iterator[PyAVFrame]:
        import av

        first: float | None = None
        try:
            for frame in self._container.decode(self._stream):
                if self.n == 0:
                    self._rotation = int(getattr(frame, "rotation", 0) or 0)
                    if self._rotation % 180:
                        self.info = VideoInfo(self.info.fps, self.info.height, self.info.width)
                t = float(frame.time) if frame.pts is not None else self.n / (self.info.fps or 1.0)
                first = t if first is None else first
                yield PyAVFrame(self.n, t - first, frame, self._rotation)
                self.n += 1
        except av.error.FFmpegError as exc:
            if self.n == 0:
                raise VideoReadError(f"cannot decode video: {exc}") from exc
            # a truncated or damaged tail: keep the frames that decoded, as players do
        if self.n == 0:
            raise VideoReadError("cannot decode video: no frames")


@dataclass(frozen=True)
class PyAVDecoder:
    """CPU decoding with PyAV (libavcodec); `threads` 0 lets libavcodec choose."""

    threads: int = 0
    name = "pyav"

    @contextlib.contextmanager
    def open_stream(self, path: str) -> Iterator[PyAVStream]:
        import av

        try:
            container = av.open(path, metadata_errors="ignore")
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {exc}") from exc
        try:
            if not container.streams.video:
                raise VideoReadError("cannot open video (corrupt, truncated or not a video): no video stream")
            yield PyAVStream(container, self.threads)
        finally:
            container.close()


class NvdecFrame:
    """A frame decoded by NVDEC: a (3, H, W) uint8 tensor on the GPU."""

    __slots__ = ("index", "pts_s", "_chw")

    def __init__(self, index: int, pts_s: float, chw):
        self.index, self.pts_s, self._chw = index, pts_s, chw

    def analysis(self, width: int, height: int, fmt: str = "bgr24", interpolation: str = "POINT") -> np.ndarray:
        import torch.nn.functional as F

        mode = {"POINT": "nearest", "BICUBIC": "bicubic"}.get(interpolation, "bilinear")
        small = F.interpolate(self._chw[None].float(), size=(height, width), mode=mode)[0]
        small = small.round().clamp(0, 255).byte().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(small[..., ::-1]) if fmt == "bgr24" else small

    def rgb(self) -> np.ndarray:
        return self._chw.permute(1, 2, 0).cpu().numpy()

    def bgr(self) -> np.ndarray:
        return np.ascontiguousarray(self.rgb()[..., ::-1])


@dataclass(frozen=True)
class NvdecDecoder:
    """NVDEC decoding on the GPU this task reserved (torchcodec); frames stay on the GPU until asked for."""

    device: str = "cuda"
    name = "nvdec"

    @contextlib.contextmanager
    def open_stream(self, path: str):
        try:
            from torchcodec.decoders import VideoDecoder
        except Exception as exc:  # ImportError, or torchcodec missing FFmpeg's shared libraries
            raise RuntimeError(f"decode.decoder nvdec needs torchcodec with FFmpeg's shared libraries: {exc}") from exc
        try:
            decoder = VideoDecoder(path, device=self.device, seek_mode="approximate")
        except Exception as exc:
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {exc}") from exc
        yield _NvdecStream(decoder)


class _NvdecStream:
    def __init__(self, decoder):
        self._decoder = decoder
        meta = decoder.metadata
        self.info = VideoInfo(fps=float(meta.average_fps or 0.0), width=int(meta.width), height=int(meta.height))
        self.n = 0

    def __iter__(self) -> Iterator[NvdecFrame]:
        first = None
        for frame in self._decoder:  # torchcodec Frame: data (3, H, W) on the device, pts_seconds
            t = float(frame.pts_seconds)
            first = t if first is None else first
            yield NvdecFrame(self.n, t - first, frame.data)
            self.n += 1
        if self.n == 0:
            raise VideoReadError("cannot decode video: no frames")


def make_decoder(kind: str = "auto", gpu_reserved: bool = False) -> Decoder:
    """`auto`: NVDEC when this task reserved a GPU (decode.num_gpus > 0), else PyAV on the CPU."""
    if kind == "nvdec" or (kind == "auto" and gpu_reserved):
        return NvdecDecoder()
    return PyAVDecoder()


def read_frames(path: str, indices, decoder: Decoder | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, full-resolution RGB) for the wanted frame indices, in one pass: same numbering as the detectors."""
    wanted = sorted(set(int(i) for i in indices))
    if not wanted:
        return
    with (decoder or PyAVDecoder()).open_stream(path) as stream:
        it = iter(wanted)
        nxt = next(it)
        for frame in stream:
            if frame.index == nxt:
                yield frame.index, frame.rgb()
                nxt = next(it, None)
                if nxt is None:
                    return
