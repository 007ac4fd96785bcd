"""ContentDetector's math, fast: ffmpeg decodes straight to the analysis size, numpy/OpenCV score
many frames per call, so no per-frame Python image work is left.

PySceneDetect's ContentDetector (0.7) on its default settings:
  1. each frame is resized to 256 px wide (auto downscale: width / 256 when width >= 256, bilinear);
  2. converted BGR -> HSV (8-bit, OpenCV);
  3. score_t = mean over H, S, V of the mean |pixel_t - pixel_{t-1}| (weights 1, 1, 1, edges 0);
  4. a cut at t when score_t >= threshold (27), passed through its FlashFilter in MERGE mode with
     min_scene_len (15 frames).
Here step 1 runs inside ffmpeg's decoder (scale filter, multi-threaded), step 2 runs once per
chunk of frames stacked into one image, step 3 is one numpy reduction per chunk, and step 4 is
PySceneDetect's state machine over the per-frame booleans. Frame numbers are decoded-frame
indices; times come from each frame's presentation timestamp, so VFR files keep real times.
"""

from __future__ import annotations

import re
import subprocess
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from movielib.io.ffmpeg import ffmpeg_exe
from movielib.io.video import VideoReadError, probe_video
from movielib.shots.detect import DetectedVideo, Shot

ANALYSIS_WIDTH = 256  # PySceneDetect's DEFAULT_MIN_WIDTH
PTS_TIME = re.compile(rb"pts_time:\s*(-?[0-9.]+)")


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """PySceneDetect's auto-downscale target for a frame size."""
    if width < ANALYSIS_WIDTH:
        return width, height
    factor = width / float(ANALYSIS_WIDTH)
    return max(1, round(width / factor)), max(1, round(height / factor))


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        return False


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


def flash_filter_merge(above: np.ndarray, min_len: int) -> list[int]:
    """PySceneDetect's FlashFilter (MERGE mode) over per-frame threshold flags; returns cut frames.

    Only a state machine step per frame on a boolean; frames are numbered from 0.
    """
    if min_len <= 0:
        return [int(i) for i in np.flatnonzero(above)]
    cuts: list[int] = []
    last_above, merge_enabled, merge_triggered, merge_start = 0, False, False, 0
    for t, is_above in enumerate(above.tolist()):
        met = t - last_above >= min_len
        if is_above:
            last_above = t
        if merge_triggered:
            if met and not is_above and last_above - merge_start >= min_len:
                merge_triggered = False
                cuts.append(last_above)
            continue
        if not is_above:
            continue
        if met:
            merge_enabled = True
            cuts.append(t)
        elif merge_enabled:
            merge_triggered, merge_start = True, t
    return cuts


class AnalysisFrames:
    """ffmpeg decoding one video to analysis-size BGR frames, iterated in chunks of (k, h, w, 3).

    The scale runs inside ffmpeg's filter graph; a reader thread keeps ffmpeg's pipe drained
    while the consumer works on the previous chunk, so decoding never waits on scoring. After
    iteration, `pts` holds each frame's presentation time (from ffmpeg's showinfo filter).
    """

    def __init__(self, path: str, chunk: int = 32, threads: int = 0):
        self.path, self.chunk, self.threads = path, chunk, threads
        self.fps, self.width, self.height = probe_video(path)
        self.w, self.h = analysis_size(self.width, self.height)
        self.n = 0
        self._log: list[bytes] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.w, self.h
        cmd = [ffmpeg_exe(), "-nostdin", "-v", "info", "-threads", str(self.threads), "-i", self.path,
               "-map", "0:v:0", "-fps_mode", "passthrough", "-an", "-sn",
               "-vf", f"scale={w}:{h}:flags=neighbor,showinfo=checksum=0", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:"]
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


@dataclass(frozen=True)
class FastContentDetector:
    """Same cuts as PySceneDetect's ContentDetector, less work per frame.

    `chunk` frames are scored per numpy call; `threads` is ffmpeg's decoder thread count
    (0: ffmpeg chooses).
    """

    threshold: float = 27.0
    min_scene_len: int = 15
    chunk: int = 32
    threads: int = 0
    scorer: str = "auto"  # numpy (OpenCV + numpy on the CPU) | torch (on the GPU when there is one) | auto

    name = "fast-content"

    def frames(self, path: str) -> AnalysisFrames:
        return AnalysisFrames(path, self.chunk, self.threads)

    def frame_scores(self, path: str) -> tuple[np.ndarray, AnalysisFrames]:
        """Per-frame scores (frame 0 scores 0) and the decoded stream's facts."""
        frames = self.frames(path)
        use_torch = self.scorer == "torch" or (self.scorer == "auto" and _cuda())
        scores = self._torch_scores(frames) if use_torch else self._numpy_scores(frames)
        return scores[: frames.n], frames

    @staticmethod
    def _torch_scores(frames: AnalysisFrames) -> np.ndarray:
        """The same scores with movielib.shots.hsv (OpenCV's HSV, bit for bit) on the GPU if present."""
        import torch

        from movielib.shots.hsv import content_scores

        device = "cuda" if torch.cuda.is_available() else "cpu"
        scores, prev = [np.zeros(1, np.float64)], None
        for chunk in frames:
            part, prev = content_scores(torch.from_numpy(chunk).to(device, non_blocking=True), prev)
            scores.append(part.cpu().numpy())
        return np.concatenate(scores)

    @staticmethod
    def _numpy_scores(frames: AnalysisFrames) -> np.ndarray:
        scores: list[np.ndarray] = [np.zeros(1, np.float64)]
        prev: np.ndarray | None = None
        for chunk in frames:
            k, h, w, _ = chunk.shape
            hsv = cv2.cvtColor(chunk.reshape(k * h, w, 3), cv2.COLOR_BGR2HSV).reshape(k, h * w * 3)
            seq = hsv if prev is None else np.concatenate([prev[None], hsv])
            if len(seq) > 1:
                # weights (1, 1, 1): the mean of the three channel means is the mean over all bytes
                diff = cv2.absdiff(seq[1:], seq[:-1])
                scores.append(diff.sum(axis=1, dtype=np.int64) / (3.0 * h * w))
            prev = hsv[-1]
        return np.concatenate(scores)

    def detect(self, path: str) -> DetectedVideo:
        scores, frames = self.frame_scores(path)
        pts, fps, width, height, n = frames.pts, frames.fps, frames.width, frames.height, frames.n
        cuts = flash_filter_merge(scores >= self.threshold, self.min_scene_len)
        bounds = [0, *cuts, n]
        step = 1.0 / fps if fps > 0 else 0.0
        end_time = float(pts[-1]) + step
        times = [float(pts[b]) if b < n else end_time for b in bounds]
        shots = [Shot(i, a, b, ta, tb) for i, (a, b, ta, tb) in enumerate(zip(bounds, bounds[1:], times, times[1:]))]
        return DetectedVideo(fps=fps, width=width, height=height, n_frames=n, duration_s=end_time, shots=shots)
