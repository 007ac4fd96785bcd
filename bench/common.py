"""Shared pieces: the generated workload, timing that can be believed, and result rows.

A row's ratio is only as good as the machine was quiet. So timed rows run the candidate and its
baseline interleaved (ABAB..., the order turning each round, so drift and a neighbour's burst
hit both), several rounds; a row keeps every round's ratio and reports their median and range,
and what the machine was doing meanwhile (other processes' CPU, steal). A target is met
when the whole range clears it, missed when none of it does, and otherwise the row says the
spread is larger than the gap: re-run it on a quieter machine before believing either.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from movielib.demo.samples import Segment, generate_clip
from movielib.runtime import local_ray_config

SEGMENTS = [
    Segment("testsrc2", 4.0),
    Segment("smptebars", 3.0),
    Segment("mandelbrot", 4.0),
    Segment("color:navy", 3.0),
    Segment("rgbtestsrc", 3.0),
    Segment("testsrc", 3.0),
]


Size = Literal["full", "quick", "micro"]
T = TypeVar("T")


def start_ray(num_cpus: int = 2) -> None:
    """The bench's local Ray: `num_cpus` CPUs, no dashboard, workers' output in Ray's logs, and the worker pool a
    local Ray of movielib's keeps (runtime.local_ray_config), so timings are the jobs' own."""
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _system_config=local_ray_config(num_cpus))


@contextlib.contextmanager
def local_ray(num_cpus: int = 2) -> Iterator[None]:
    """`start_ray`, shut down when the block ends (however it ends)."""
    import ray

    start_ray(num_cpus)
    try:
        yield
    finally:
        ray.shutdown()


def sized(size: Size, full: T, quick: T, micro: T) -> T:
    """A case's workload at a bench size: full (the README's figures), quick (about a minute a case), micro (seconds:
    every row made, as the suite runs them; its ratios mean little)."""
    return {"full": full, "quick": quick, "micro": micro}[size]


@dataclass
class Row:
    benchmark: str
    case: str
    ours: float
    baseline: float
    unit: str
    target: float | None = None  # ratio the issue asks for (ours / baseline >= target), if any
    note: str = ""
    ratios: list[float] = field(default_factory=list)  # one per interleaved round (empty: a single measurement)
    load: str = ""  # what else the machine did while the row ran

    @property
    def ratio(self) -> float:
        if self.ratios:
            return statistics.median(self.ratios)
        return self.ours / self.baseline if self.baseline else float("nan")

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.ratios), max(self.ratios)) if self.ratios else (self.ratio, self.ratio)

    @property
    def verdict(self) -> str | None:
        """ok / MISS when the whole spread is on one side of the target, else noise (spread > gap)."""
        if self.target is None:
            return None
        lo, hi = self.spread
        return "ok" if lo >= self.target else "MISS" if hi < self.target else "noise"

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "spread": self.spread, "verdict": self.verdict}


@dataclass
class Timings:
    """Seconds per round for each case, measured interleaved, and each case's last result."""

    seconds: dict[str, list[float]]
    results: dict[str, object]
    load: str

    def median(self, case: str) -> float:
        return statistics.median(self.seconds[case])

    def row(self, benchmark: str, case: str, ours: str, baseline: str, work: float, unit: str, **kw) -> Row:
        """A throughput row (work / seconds) of case `ours` against case `baseline`, ratios paired by round."""
        return Row(
            benchmark,
            case,
            work / self.median(ours),
            work / self.median(baseline),
            unit,
            ratios=[b / o for o, b in zip(self.seconds[ours], self.seconds[baseline])],
            load=self.load,
            **kw,
        )


class LoadProbe:
    """What else the machine did over a span: CPU used by processes outside this bench's process tree (in
    cores; the Ray processes an e2e case starts are in the tree), and steal (a VM's cores taken by its host).
    The load average is no use here: it mostly counts the bench's own last minute. The process table, steal,
    clock and own pid are read through the functions given (the machine's by default; a test gives fixed ones)."""

    def __init__(
        self,
        processes: Callable[[], dict[int, tuple[int, float]]] | None = None,
        steal: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        pid: int | None = None,
    ):
        self.processes, self.steal = processes or _processes, steal or _steal
        self.clock, self.pid = clock, pid or os.getpid()

    def __enter__(self) -> LoadProbe:
        self.t0, self.steal0, self.procs0 = self.clock(), self.steal(), self.processes()
        return self

    def __exit__(self, *exc) -> None:
        wall = self.clock() - self.t0 or 1e-9
        procs = self.processes()
        mine = {self.pid}
        changed = True  # this process and its descendants, to a fixpoint
        while changed:
            changed = False
            for pid, (ppid, _) in procs.items():
                if pid not in mine and ppid in mine:
                    mine.add(pid)
                    changed = True
        others = sum(cpu - self.procs0.get(pid, (0, 0.0))[1] for pid, (_, cpu) in procs.items() if pid not in mine)
        steal = (self.steal() - self.steal0) / (wall * (os.cpu_count() or 1))
        self.text = f"others used {max(0.0, others) / wall:.2f} cores, steal {100 * steal:.1f}%"


def _processes() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds so far) of every process /proc shows (empty without /proc)."""
    ticks, out = os.sysconf("SC_CLK_TCK"), {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        out[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    return out


def _steal() -> float:
    """Seconds of CPU the host took from this VM, over all cores (0 where there is no /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    return float(fields[7]) / os.sysconf("SC_CLK_TCK") if len(fields) > 7 else 0.0


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, warmup: bool = True) -> Timings:
    """Each case `rounds` times, round-robin with the order turning each round; one untimed warm-up each
    (imports, file cache). Returns the seconds per round and what the machine did meanwhile."""
    names = list(cases)
    if warmup:
        for name in names:
            cases[name]()
    seconds: dict[str, list[float]] = {n: [] for n in names}
    results: dict[str, object] = {}
    with LoadProbe() as probe:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                t0 = time.perf_counter()
                results[name] = cases[name]()
                seconds[name].append(time.perf_counter() - t0)
    return Timings(seconds, results, probe.text)


def video(folder: Path, name: str, size: tuple[int, int], repeats: int, fps: int = 25) -> Path:
    """A clip of `repeats` x the 20 s segment list (cuts known), generated once per folder; `repeats` 0: the list
    once at 1 s a segment (the micro workload)."""
    path = folder / name
    if not path.exists():
        segments = SEGMENTS * repeats or [Segment(s.source, 1.0) for s in SEGMENTS]
        generate_clip(path, segments, fps=fps, size=size)
    return path


def best_of(n: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Shortest wall time of n runs, and the last run's result."""
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result
