"""The bench's own arithmetic: a row's verdict from its rounds, interleaving, and the load it notes."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.__main__ import table
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
    busy = "import time\nt = time.time()\nwhile time.time() - t < 4: pass"
    # our own child: part of the bench's tree, not counted
    child = subprocess.Popen([sys.executable, "-c", busy])
    with LoadProbe() as own:
        time.sleep(1.5)
    child.kill()
    assert own.text.startswith("others used 0.")
    assert float(own.text.split()[2]) < 0.5
    # an orphan (its shell exits at once): outside the tree, a whole core busy
    subprocess.run(["sh", "-c", f'"{sys.executable}" -c "{busy}" >/dev/null 2>&1 &'], check=True)
    time.sleep(0.3)
    with LoadProbe() as foreign:
        time.sleep(1.5)
    assert float(foreign.text.split()[2]) > 0.6
