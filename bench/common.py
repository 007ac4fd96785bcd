"""Shared pieces: the generated workload, timing, and result rows."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from movielib.demo.samples import Segment, generate_clip

SEGMENTS = [
    Segment("testsrc2", 4.0),
    Segment("smptebars", 3.0),
    Segment("mandelbrot", 4.0),
    Segment("color:navy", 3.0),
    Segment("rgbtestsrc", 3.0),
    Segment("testsrc", 3.0),
]


@dataclass
class Row:
    benchmark: str
    case: str
    ours: float
    baseline: float
    unit: str
    target: float | None = None  # ratio the issue asks for (ours / baseline >= target), if any
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "met": None if self.target is None else self.ratio >= self.target}


def video(folder: Path, name: str, size: tuple[int, int], repeats: int, fps: int = 25) -> Path:
    """A clip of `repeats` x the 20 s segment list (cuts known), generated once per folder."""
    path = folder / name
    if not path.exists():
        generate_clip(path, SEGMENTS * repeats, fps=fps, size=size)
    return path


def best_of(n: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Shortest wall time of n runs, and the last run's result."""
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
