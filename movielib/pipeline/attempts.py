"""Attempts at each video, and what ended them: how a video that kills its worker ends as one error row.

A native crash, an out-of-memory kill or a hang takes the decode task's whole worker process with
it, so the task cannot report its own failure. Instead every attempt at a video is registered
with the run's `AttemptLedger` actor before any work, and Ray retries the task (a bounded number
of times: `reliability.max_attempts`). The attempt after the last allowed one finds the earlier
attempts in the ledger and emits one error row naming what ended them, without touching the video.

What ended an attempt is known three ways:
  - the `VideoGuard` watchdog thread stops a worker whose video runs past `video_timeout_s` or
    whose RSS passes `memory_limit_gb`, and notes why in the ledger before the worker exits;
  - a native crash writes Python's faulthandler report to a per-process file on the node, which
    the next attempt on that node reads (signal and the Python frame it happened under);
  - otherwise the worker was killed from outside (the kernel's or Ray's OOM killer, a signal).

Transient failures are different: reading a video is retried in the task with exponential
backoff (`io_attempts`, `backoff_s`); if the store stays unreachable the video is reported as
retryable (no videos row: a re-run tries it again), never as a bad video.
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import random
import re
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from movielib.io.video import VideoReadError


class TransientError(RuntimeError):
    """The video could not be read for reasons of the moment (store throttling, resets, timeouts)."""


def is_transient(exc: BaseException) -> bool:
    """I/O of the moment (retried with backoff) as opposed to the video's own fault or a bug."""
    return isinstance(exc, (OSError, TimeoutError, ConnectionError, TransientError)) and not isinstance(
        exc, (VideoReadError, FileNotFoundError, IsADirectoryError, NotADirectoryError)
    )


class AttemptLedger:
    """The run's record of attempts per video (a Ray actor, no CPU): who tried, and what ended each try."""

    def __init__(self):
        self.attempts: dict[str, list[dict]] = {}
        self.peak_rss: dict[str, int] = {}

    def begin(self, video_id: str, node: str, pid: int, fault_log: str) -> list[dict]:
        """Register a new attempt; returns the earlier ones (each with the cause noted for it, if any)."""
        earlier = self.attempts.setdefault(video_id, [])
        before = [dict(a) for a in earlier]
        earlier.append({"node": node, "pid": pid, "fault_log": fault_log, "cause": None})
        return before

    def note(self, video_id: str, cause: str) -> None:
        """What is ending the current attempt (the watchdog says so before the worker exits)."""
        if self.attempts.get(video_id):
            self.attempts[video_id][-1]["cause"] = cause

    def finish(self, video_id: str, peak_rss: int) -> None:
        self.peak_rss[video_id] = max(peak_rss, self.peak_rss.get(video_id, 0))

    def causes(self, video_ids: list[str]) -> dict[str, str]:
        """The last noted cause of each video that has one (for videos that never reached the sink)."""
        out = {}
        for vid in video_ids:
            noted = [a["cause"] for a in self.attempts.get(vid, []) if a["cause"]]
            if noted:
                out[vid] = noted[-1]
        return out

    def retried(self) -> int:
        """How many videos took more than one attempt (a worker lost on them at least once)."""
        return sum(len(tries) > 1 for tries in self.attempts.values())

    def max_peak_rss(self) -> int:
        """The highest RSS a decode worker reached while on one video, in bytes."""
        return max(self.peak_rss.values(), default=0)


@dataclass(frozen=True)
class Fault:
    """An injected fault (config `reliability.faults`): tests and drills prove the mechanisms with it."""

    kind: str  # crash | kill | hang | memory | io_error | error
    video: str  # a substring of the URI
    attempts: int | None = None  # the first N attempts (io_error: the first N reads) only

    def fires(self, uri: str, n: int) -> bool:
        return self.video in uri and (self.attempts is None or n <= self.attempts)


def _rss_bytes() -> int:
    """This process's resident set now (Linux /proc; 0 elsewhere: the memory limit is then not enforced)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


_FRAME = re.compile(r'File "([^"]+)", line (\d+) in (\S+)')


def crash_report(text: str) -> str | None:
    """'Segmentation fault in movielib/models/faces.py:80 (detect)' from a faulthandler report."""
    m = re.search(r"Fatal Python error: (.+)", text)
    if not m:
        return None
    what = m.group(1).strip()
    start = text.find("Current thread")  # with all_threads, the crashing thread is marked current
    frame = _FRAME.search(text, max(start, 0))
    if frame:
        path = frame.group(1)
        path = path[path.rfind("movielib/") :] if "movielib/" in path else os.path.basename(path)
        what += f" in {path}:{frame.group(2)} ({frame.group(3)})"
    return what


@dataclass
class Attempt:
    number: int  # 1-based
    earlier_causes: list[str] = field(default_factory=list)


class _Watchdog:
    """One per worker process: stops the process when the armed video passes its time or memory limit."""

    def __init__(self, guard: VideoGuard):
        self.guard = guard
        self.video: str | None = None
        self.started = 0.0
        self.peak = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True, name="movielib-watchdog").start()

    def arm(self, video_id: str) -> None:
        with self.lock:
            self.video, self.started, self.peak = video_id, time.monotonic(), _rss_bytes()

    def disarm(self) -> int:
        with self.lock:
            self.video = None
            return self.peak

    def _run(self) -> None:
        while True:
            time.sleep(0.2)
            with self.lock:
                if self.video is None:
                    continue
                g = self.guard  # the limits of the stage that armed it
                rss = _rss_bytes()
                self.peak = max(self.peak, rss)
                elapsed = time.monotonic() - self.started
                if elapsed > g.timeout_s:
                    cause = (
                        f"hung: still in its decode task after {elapsed:.0f}s (reliability.video_timeout_s "
                        f"{g.timeout_s:g})"
                    )
                elif rss > g.memory_limit_bytes:
                    cause = (
                        f"out of memory: its worker reached {rss / 2**30:.2f} GiB "
                        f"(reliability.memory_limit_gb {g.memory_limit_bytes / 2**30:g})"
                    )
                else:
                    continue
                g.stop_worker(self.video, cause)


_WATCHDOG: _Watchdog | None = None
_FAULT_LOG: str | None = None


@dataclass(frozen=True)
class VideoGuard:
    """Bounded attempts, time and memory limits, transient-I/O retries and fault injection for one stage."""

    ledger: object | None  # the run's AttemptLedger actor handle (None: no attempt tracking, e.g. unit tests)
    max_attempts: int = 3
    timeout_s: float = 14400.0
    memory_limit_bytes: int = 8 << 30
    io_attempts: int = 5
    backoff_s: float = 1.0
    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_config(cls, cfg, ledger) -> VideoGuard:
        """From a `reliability` config section (movielib.config.ReliabilityConfig)."""
        return cls(
            ledger,
            cfg.max_attempts,
            cfg.video_timeout_s,
            int(cfg.memory_limit_gb * 2**30),
            cfg.io_attempts,
            cfg.backoff_s,
            tuple(Fault(f.kind, f.video, f.attempts) for f in cfg.faults),
        )

    # -- attempts ----------------------------------------------------------------------------------------
    def begin(self, video_id: str) -> Attempt:
        """Register this attempt; the causes of the earlier ones are read now (their faulthandler files too)."""
        if self.ledger is None:
            return Attempt(1)
        import ray

        node = ray.get_runtime_context().get_node_id()
        earlier = ray.get(self.ledger.begin.remote(video_id, node, os.getpid(), _fault_log()))
        return Attempt(len(earlier) + 1, [self._cause(a, node) for a in earlier])

    @staticmethod
    def _cause(attempt: dict, node: str) -> str:
        if attempt["cause"]:
            return attempt["cause"]
        if attempt["node"] == node:
            with contextlib.suppress(OSError):
                with open(attempt["fault_log"], errors="replace") as f:
                    report = crash_report(f.read())
                if report:
                    return f"crashed: {report}"
        return "its worker died (killed by a signal, or by the kernel's or Ray's out-of-memory killer)"

    def exhausted(self, attempt: Attempt) -> str | None:
        """The error row's text once every allowed attempt ended with the worker gone; else None."""
        if attempt.number <= self.max_attempts:
            return None
        last = attempt.earlier_causes[-1] if attempt.earlier_causes else "unknown"
        same = sum(c == last for c in attempt.earlier_causes)
        return f"poison video: {len(attempt.earlier_causes)} attempts each ended with its worker gone; last: {last}" + (
            f" ({same} of {len(attempt.earlier_causes)} the same)" if same > 1 else ""
        )

    @contextlib.contextmanager
    def watching(self, video_id: str, uri: str, attempt: Attempt) -> Iterator[None]:
        """Arm the time and memory limits around one attempt (the context spans the generator's yields)."""
        if self.ledger is None:
            yield
            return
        dog = _watchdog(self)
        dog.arm(video_id)
        try:
            self._inject(uri, attempt.number)
            yield
        finally:
            peak = dog.disarm()
            with contextlib.suppress(Exception):
                self.ledger.finish.remote(video_id, peak)

    def stop_worker(self, video_id: str, cause: str) -> None:
        """Note why, then end this worker process: Ray retries the task, and the ledger counts the attempt."""
        import ray

        with contextlib.suppress(Exception):
            ray.get(self.ledger.note.remote(video_id, cause), timeout=10)
        os._exit(70)

    # -- transient I/O -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self, uri: str, open_video: Callable[[], contextlib.AbstractContextManager[str]]) -> Iterator[str]:
        """Enter `open_video()` (fetch the object), retrying transient errors with exponential backoff."""
        with contextlib.ExitStack() as stack:
            for n in range(1, self.io_attempts + 1):
                try:
                    if any(f.kind == "io_error" and f.fires(uri, n) for f in self.faults):
                        raise ConnectionResetError(f"injected fault: connection reset reading {uri}")
                    path = stack.enter_context(open_video())
                    break
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    if n == self.io_attempts:
                        raise TransientError(
                            f"{n} attempts to read it failed; last: {type(exc).__name__}: {exc}"
                        ) from exc
                    time.sleep(min(30.0, self.backoff_s * 2 ** (n - 1)) * random.uniform(0.5, 1.0))
            yield path

    # -- fault injection ---------------------------------------------------------------------------------
    def _inject(self, uri: str, n: int) -> None:
        for f in self.faults:
            if f.kind == "io_error" or not f.fires(uri, n):  # io_error fires in reading()
                continue
            if f.kind == "crash":
                os.kill(os.getpid(), signal.SIGSEGV)  # faulthandler reports it, then the process dies of it
            elif f.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does: no report at all
            elif f.kind == "hang":
                while True:
                    time.sleep(1)
            elif f.kind == "memory":
                hog = []
                while True:  # touched pages, 64 MiB at a time, until the watchdog (or an OOM killer) stops us
                    hog.append(np.ones(64 << 20, np.uint8))
                    time.sleep(0.01)
            elif f.kind == "error":
                raise RuntimeError(f"injected fault: a bug while tagging {uri}")


def _fault_log() -> str:
    """This process's faulthandler file (enabled once): a native crash leaves its report there."""
    global _FAULT_LOG
    if _FAULT_LOG is None:
        folder = os.path.join(tempfile.gettempdir(), "movielib-faults")
        os.makedirs(folder, exist_ok=True)
        _remove_old_logs(folder)
        path = os.path.join(folder, f"{os.getpid()}.log")
        faulthandler.enable(file=open(path, "w"), all_threads=True)  # kept open for the process's life
        _FAULT_LOG = path
    return _FAULT_LOG


def _remove_old_logs(folder: str, age_s: float = 86400) -> None:
    """Reports of processes gone for a day: every attempt that could read them has run."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        with contextlib.suppress(OSError, ValueError):
            if time.time() - os.path.getmtime(path) > age_s and not os.path.exists(f"/proc/{int(name.split('.')[0])}"):
                os.unlink(path)


def _watchdog(guard: VideoGuard) -> _Watchdog:
    global _WATCHDOG
    if _WATCHDOG is None:
        _WATCHDOG = _Watchdog(guard)
    _WATCHDOG.guard = guard
    return _WATCHDOG
