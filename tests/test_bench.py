"""The bench's own arithmetic (a row's verdict from its rounds, interleaving, the load it notes), and every case run
as the README shows it, at the smallest size (`python -m bench --micro`)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.__main__ import ALL, table
from bench.common import LoadProbe, Row, Timings, interleaved


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [([1.10, 1.25, 1.20], "ok"), ([0.80, 0.95, 0.90], "MISS"), ([0.90, 1.20, 1.05], "noise")],
)
def test_a_row_passes_or_fails_only_when_its_whole_range_is_on_one_side_of_the_target(ratios, verdict):
    row = Row("b", "c", 2.0, 1.0, "x/s", target=1.0, ratios=ratios)
    assert row.verdict == verdict
    assert row.ratio == sorted(ratios)[1]  # the median round, not ours / baseline of the medians
    assert row.spread == (min(ratios), max(ratios))
    printed = table([row])
    assert f">=1 {verdict}" in printed and f"{min(ratios):.2f}-{max(ratios):.2f}" in printed
    assert ("spread > gap" in printed) == (verdict == "noise")


def test_rounds_interleave_with_the_order_turning_and_ratios_pair_by_round():
    calls = []
    runs = interleaved({k: (lambda k=k: calls.append(k) or k) for k in "abc"}, rounds=3)
    # one warm-up each, then a b c / b c a / c a b
    assert "".join(calls) == "abc" + "abc" + "bca" + "cab"
    assert {k: len(v) for k, v in runs.seconds.items()} == {"a": 3, "b": 3, "c": 3}
    timings = Timings({"new": [1.0, 2.0, 4.0], "old": [2.0, 3.0, 4.0]}, {}, "quiet")
    row = timings.row("b", "c", "new", "old", work=10.0, unit="x/s")
    assert row.ratios == [2.0, 1.5, 1.0]  # old / new seconds, round by round
    assert (row.ours, row.baseline) == (10.0 / 2.0, 10.0 / 3.0)  # work over median seconds


def test_the_load_noted_is_other_processes_cpu_not_the_bench_own():
    """A fixed process table (pid -> parent, CPU seconds) before and after 2 s: the bench (pid 100), its child and
    grandchild are its own; another process's CPU and a process born meanwhile are the others'."""
    before = {100: (1, 5.0), 101: (100, 1.0), 102: (101, 0.0), 200: (1, 10.0), 201: (1, 4.0)}
    after = {100: (1, 7.0), 101: (100, 3.0), 102: (101, 1.5), 200: (1, 11.5), 300: (1, 0.5)}  # 201 gone
    tables, clock, steal = iter([before, after]), iter([10.0, 12.0]), iter([3.0, 3.0 + 0.2 * (os.cpu_count() or 1)])
    probe = LoadProbe(lambda: next(tables), lambda: next(steal), lambda: next(clock), pid=100)
    with probe:
        pass
    # others: 200 used 1.5 s, 300 0.5 s (all of it meanwhile) over 2 s: 1.00 core; the steal: 0.2 s a core in 2 s
    assert probe.text == "others used 1.00 cores, steal 10.0%"
    with LoadProbe() as own:  # the machine's: a number, whatever else runs
        time.sleep(0.1)
    assert own.text.startswith("others used ") and float(own.text.split()[2]) >= 0


# e2e, scale, train-scale and serve start several Rays (or Serve twice) even at micro size, about two minutes each
# here: the suite's budget does not hold them yet, so `python -m bench --micro --rounds 1 --only
# e2e,scale,train-scale,serve` runs them by hand (all four did, at this size, when --micro was added)
BY_HAND = ("e2e", "scale", "train-scale", "serve")
IN_SUITE = [c for c in ALL if c not in BY_HAND]


@pytest.fixture(scope="module")
def micro_bench(tmp_path_factory) -> tuple[dict, str, Path]:
    """`python -m bench --micro --rounds 1 --only <every case the suite runs>`, once (one process and its Rays, not
    one a case): its report, console and folder."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--micro", "--rounds", "1", "--only", ",".join(IN_SUITE), "--out", str(out)],
        cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    console = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, console
    return json.loads((out / "bench.json").read_text()), console, out


@pytest.mark.slow
@pytest.mark.timeout(1600)  # the first case's test runs the whole bench (the fixture)
@pytest.mark.parametrize("case", IN_SUITE)
def test_every_bench_case_runs_at_micro_size_and_makes_its_rows(case, micro_bench):
    """Each case of `python -m bench --micro`: rows in bench.json, every ratio a positive number (a benchmark whose
    code drifted from the library's fails here, not in a user's hands), the chart drawn."""
    report, console, out = micro_bench
    assert report["size"] == "micro", report
    rows = [report["rows"][i] for i in report["cases"][case]["rows"]]
    assert rows, (case, report["cases"], console)
    for row in rows:
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
    assert (out / "bench.png").stat().st_size > 0
