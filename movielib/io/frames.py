"""Video frames streamed from ffmpeg at a chosen size, in decode order, with their timestamps.

ffmpeg scales inside its (multi-threaded) filter graph, so only small frames cross the pipe;
`-fps_mode passthrough` keeps every decoded frame once, so frame numbers are decoded-frame
indices; the showinfo filter logs each frame's presentation time, parsed once at the end.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Callable, Iterator

import numpy as np

from movielib.io.ffmpeg import ffmpeg_exe
from movielib.io.video import VideoReadError, probe_video

PTS_TIME = re.compile(rb"pts_time:\s*(-?[0-9.]+)")


def _pump(stream, size: int, out: "queue.Queue[bytearray | None]") -> None:
    """Read fixed-size chunks from a pipe until EOF; None marks the end."""
    while True:
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size and (n := stream.readinto(view[got:])):
            got += n
        if got:
            out.put(buf if got == size else buf[:got])  # bytearray: numpy views of it are writable
        if got < size:
            out.put(None)
            return


def _widen_pipe(stream, size: int = 1 << 20) -> None:
    """Let ffmpeg write up to 1 MiB ahead of the reader (Linux F_SETPIPE_SZ; a no-op elsewhere)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), 1031, size)
    except (ImportError, OSError):
        pass


class FrameStream:
    """ffmpeg decoding one video to (k, h, w, 3) uint8 chunks at `size` (w, h), or at `size_for(w, h)`.

    A reader thread keeps ffmpeg's pipe drained while the consumer works on the previous chunk,
    so decoding never waits on the consumer. After iteration, `pts` holds each frame's
    presentation time and `n` the frame count.
    """

    def __init__(self, path: str, size: tuple[int, int] | Callable[[int, int], tuple[int, int]],
                 pix_fmt: str = "bgr24", scale_flags: str = "bicubic", chunk: int = 32, threads: int = 0):
        self.path, self.chunk, self.threads, self.pix_fmt, self.scale_flags = path, chunk, threads, pix_fmt, scale_flags
        self.fps, self.width, self.height = probe_video(path)
        self.w, self.h = size(self.width, self.height) if callable(size) else size
        self.n = 0
        self._log: list[bytes] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.w, self.h
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "info", "-threads", str(self.threads), "-i", self.path,
               "-map", "0:v:0", "-fps_mode", "passthrough", "-an", "-sn",
               "-vf", f"scale={w}:{h}:flags={self.scale_flags},showinfo=checksum=0",
               "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "pipe:"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        _widen_pipe(proc.stdout)
        stderr = threading.Thread(target=lambda: self._log.append(proc.stderr.read()), daemon=True)
        stderr.start()
        frame_bytes = w * h * 3
        chunks: queue.Queue[bytearray | None] = queue.Queue(maxsize=4)
        threading.Thread(target=_pump, args=(proc.stdout, frame_bytes * self.chunk, chunks), daemon=True).start()
        done = False
        try:
            while (buf := chunks.get()) is not None:
                k = len(buf) // frame_bytes
                if k == 0:
                    break
                self.n += k
                yield np.frombuffer(buf, np.uint8, k * frame_bytes).reshape(k, h, w, 3)
            done = True
        finally:
            if not done:  # the consumer stopped early: do not leave ffmpeg decoding
                proc.kill()
            proc.wait()
            stderr.join()  # the frame timestamps are in ffmpeg's log: read all of it before pts is asked
        if self.n == 0:
            err = b"".join(self._log).decode(errors="replace").strip()
            raise VideoReadError(f"cannot decode video: {err[-300:] or 'no frames'}")

    @property
    def pts(self) -> np.ndarray:
        """Seconds from the first frame, per frame; the nominal rate where showinfo said nothing."""
        pts = np.array([float(x) for x in PTS_TIME.findall(b"".join(self._log))][: self.n])
        if len(pts) < self.n:
            pts = np.arange(self.n) / (self.fps or 1.0)
        return pts - pts[0]


