"""The house's rules, checked with the suite: import floors and no cycles (import-linter), ruff lint and format."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_each_floor_imports_only_the_floors_below_it_and_nothing_imports_in_a_cycle():
    proc = _run("lint-imports", "--no-cache")
    assert proc.returncode == 0 and "3 kept, 0 broken" in proc.stdout, proc.stdout + proc.stderr


def test_ruff_finds_nothing():
    proc = _run("ruff", "check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_code_is_formatted_as_ruff_formats_it():
    proc = _run("ruff", "format", "--check", "--no-cache", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bandit_finds_no_medium_or_high_issue_left_unexplained():
    """Security lint of movielib/: each `# nosec` beside a finding says why it is not one."""
    proc = _run("bandit", "-q", "-r", "movielib", "-ll", "-f", "json")
    import json

    report = json.loads(proc.stdout)
    assert report["results"] == [], [(r["test_id"], r["filename"], r["line_number"]) for r in report["results"]]
