"""One decode pass per video: every frame once, in presentation order, with its index and real time.

The shot detector and the frame sampler are both fed from this one stream (PySceneDetect's
frame-fed model), so they share one frame numbering and one clock. A decoded frame stays in the
decoder's own format (YUV on the CPU) until someone asks for pixels: the detector asks for a small
analysis-size copy of every frame, the sampler for full-resolution RGB of a few.

Decoders behind one interface (`open_stream(path) -> DecodedStream`):
  - `PyAVDecoder`: libavcodec through PyAV, frame+slice threads, on the CPU; pixels equal
    OpenCV's decode (the same libswscale conversion), display-matrix rotation applied as OpenCV does;
  - `TorchCodecDecoder("cuda")`: NVDEC on the task's reserved GPU through torchcodec (a CUDA build,
    the one PyPI serves; needs FFmpeg's shared libraries, e.g. Debian's ffmpeg), frames as tensors
    on that GPU until a stage asks for pixels.
Frame indices are 0-based decoded-frame numbers; `pts_s` is seconds from the first frame.
"""

from __future__ import annotations

import contextlib
import queue
import threading
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


class Scalers:
    """libswscale contexts kept per thread and per target, single-threaded.

    PyAV gives every frame a fresh scaler (its own SwsContext and, on FFmpeg 8, its own slice
    threads): ~0.5 ms a frame spent setting up before any pixel moves, more than the 480p decode
    itself. One context per (thread, target) is set up once per video; one thread a context because
    the callers (decoder, detector, the sampler's crop pool) already keep the cores busy.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def to_ndarray(self, frame, **kwargs) -> np.ndarray:
        cache = self._local.__dict__
        key = tuple(kwargs.items())
        if (scaler := cache.get(key)) is None:
            from av.video.reformatter import VideoReformatter

            scaler = cache[key] = VideoReformatter()
        return scaler.reformat(frame, threads=1, **kwargs).to_ndarray()


class PyAVFrame:
    """One decoded frame (a PyAV VideoFrame still in the decoder's pixel format)."""

    __slots__ = ("index", "pts_s", "_frame", "_rotation", "_scalers")

    def __init__(self, index: int, pts_s: float, frame, rotation: int, scalers: Scalers):
        self.index, self.pts_s, self._frame, self._rotation, self._scalers = index, pts_s, frame, rotation, scalers

    def analysis(self, width: int, height: int, fmt: str = "bgr24", interpolation: str = "POINT") -> np.ndarray:
        w, h = (height, width) if self._rotation % 180 else (width, height)
        return self._pixels(width=w, height=h, format=fmt, interpolation=interpolation)

    def bgr(self) -> np.ndarray:
        return self._pixels(format="bgr24")

    def rgb(self) -> np.ndarray:
        return self._pixels(format="rgb24")

    def _pixels(self, **kwargs) -> np.ndarray:
        return _rotate(self._scalers.to_ndarray(self._frame, **kwargs), self._rotation)


class PyAVStream:
    """Frames of one container's first video stream, decoded ahead on a thread.

    libavcodec's frame threads are fed by whoever calls decode; a thread that only decodes keeps
    them busy while the consumer scales, scores and samples (1080p here: 290 -> 500 frames/s).
    Pixel conversions stay off that thread: made there, they stall the feeding (480p decode-only
    0.38 -> 0.52 s for 500 frames, same CPU). At most `readahead` decoded frames wait in the queue.
    The first frame is decoded on open, so `info` (rotation applied) is right from the start and a
    file that cannot be decoded fails there.
    """

    def __init__(self, container, threads: int, readahead: int = 16):
        import av

        self._container = container
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads inside libavcodec
        if threads:
            self._stream.codec_context.thread_count = threads
        self._readahead = readahead
        self._scalers = Scalers()
        cc = self._stream.codec_context
        rate = self._stream.average_rate or self._stream.guessed_rate or self._stream.base_rate
        fps = float(rate) if rate else 0.0
        self._decoded = container.decode(self._stream)
        try:
            self._first = next(self._decoded)
        except StopIteration:
            raise VideoReadError("cannot decode video: no frames") from None
        except av.error.FFmpegError as exc:
            raise VideoReadError(f"cannot decode video: {getattr(exc, 'strerror', None) or exc}") from exc
        self._rotation = int(getattr(self._first, "rotation", 0) or 0)
        w, h = (cc.height, cc.width) if self._rotation % 180 else (cc.width, cc.height)
        self.info = VideoInfo(fps=fps, width=w, height=h)
        self.n = 0

    def _frames(self) -> Iterator[PyAVFrame]:
        import av

        t0: float | None = None
        n = 0
        frame = self._first
        while frame is not None:
            t = float(frame.time) if frame.pts is not None else n / (self.info.fps or 1.0)
            t0 = t if t0 is None else t0
            yield PyAVFrame(n, t - t0, frame, self._rotation, self._scalers)
            n += 1
            try:
                frame = next(self._decoded, None)
            except av.error.FFmpegError:
                return  # a truncated or damaged tail: keep the frames that decoded, as players do

    def _decode(self, out: queue.Queue, stop: threading.Event) -> None:
        try:
            for frame in self._frames():
                while not stop.is_set():
                    try:
                        out.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # surfaced in the consumer's thread
            out.put(exc)
        out.put(None)

    def __iter__(self) -> Iterator[PyAVFrame]:
        frames: queue.Queue = queue.Queue(maxsize=self._readahead)
        self._stop = threading.Event()
        self._queue = frames
        self._worker = threading.Thread(
            target=self._decode, args=(frames, self._stop), daemon=True, name="movielib-decode"
        )
        self._worker.start()
        try:
            while (frame := frames.get()) is not None:
                if isinstance(frame, BaseException):
                    raise frame
                yield frame
                self.n += 1
        finally:
            self.close()

    def close(self) -> None:
        """Stop the decode thread and wait for it: the container must not close under a running decoder
        (the consumer may stop early, or fail while this iterator is still suspended)."""
        worker = getattr(self, "_worker", None)
        if worker is None:
            return
        self._stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get_nowait()
            worker.join(timeout=0.05)


@dataclass(frozen=True)
class PyAVDecoder:
    """CPU decoding with PyAV (libavcodec); `threads` 0 lets libavcodec choose."""

    threads: int = 0
    name = "pyav"

    @contextlib.contextmanager
    def open_stream(self, path: str) -> Iterator[PyAVStream]:
        import av

        try:
            # local files only: no demuxer (a playlist, say) may make ffmpeg open a URL or another protocol
            container = av.open(path, metadata_errors="ignore", options={"protocol_whitelist": "file"})
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)  # not the scratch copy's path
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {reason}") from exc
        stream = None
        try:
            if not container.streams.video:
                raise VideoReadError("cannot open video (corrupt, truncated or not a video): no video stream")
            stream = PyAVStream(container, self.threads)
            yield stream
        finally:
            if stream is not None:
                stream.close()
            container.close()


class TorchCodecFrame:
    """A frame decoded by torchcodec: a (3, H, W) uint8 tensor on the decoder's device (the GPU for NVDEC)."""

    __slots__ = ("index", "pts_s", "_chw")

    def __init__(self, index: int, pts_s: float, chw):
        self.index, self.pts_s, self._chw = index, pts_s, chw

    def analysis(self, width: int, height: int, fmt: str = "bgr24", interpolation: str = "POINT") -> np.ndarray:
        """Scaled on the frame's device (nearest for POINT, else bilinear/bicubic), then copied to the host."""
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
class TorchCodecDecoder:
    """torchcodec decoding, `device` "cuda" for NVDEC on the GPU this task reserved (decode.decoder: nvdec).

    Frames stay on the device until pixels are asked for, and come in batches of `batch` frames.
    Needs FFmpeg's shared libraries (Debian's ffmpeg package); on the CPU its frames equal PyAV's.
    """

    device: str = "cuda"
    batch: int = 32

    @property
    def name(self) -> str:
        return "nvdec" if self.device.startswith("cuda") else f"torchcodec-{self.device}"

    @contextlib.contextmanager
    def open_stream(self, path: str):
        try:
            from torchcodec.decoders import VideoDecoder
        except Exception as exc:  # ImportError, or torchcodec missing FFmpeg's shared libraries
            raise RuntimeError(
                f"decode.decoder {self.name} needs torchcodec and FFmpeg's shared libraries: {exc}"
            ) from exc
        try:
            decoder = VideoDecoder(path, device=self.device, seek_mode="exact")
        except Exception as exc:
            raise VideoReadError(f"cannot open video (corrupt, truncated or not a video): {exc}") from exc
        yield _TorchCodecStream(decoder, self.batch)


class _TorchCodecStream:
    def __init__(self, decoder, batch: int):
        self._decoder, self._batch = decoder, batch
        meta = decoder.metadata
        self.info = VideoInfo(fps=float(meta.average_fps or 0.0), width=int(meta.width), height=int(meta.height))
        self._total = int(meta.num_frames or 0)

    def __iter__(self) -> Iterator[TorchCodecFrame]:
        first = None
        for start in range(0, self._total, self._batch):
            frames = self._decoder.get_frames_in_range(start, min(self._total, start + self._batch))
            for j, (chw, t) in enumerate(zip(frames.data, frames.pts_seconds.tolist())):
                first = t if first is None else first
                yield TorchCodecFrame(start + j, t - first, chw)
        if first is None:
            raise VideoReadError("cannot decode video: no frames")


def make_decoder(kind: str = "auto", gpu_reserved: bool = False) -> Decoder:
    """`auto`: NVDEC when this task reserved a GPU (decode.num_gpus > 0), else PyAV on the CPU."""
    if kind == "nvdec" or (kind == "auto" and gpu_reserved):
        return TorchCodecDecoder("cuda")
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
