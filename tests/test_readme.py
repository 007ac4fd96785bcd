"""The README's claims name tests that exist: every `tests/...` path it cites is in the tree, and every test it
names (`test_...`, `path.py::test_...`) is defined there. A test deleted takes its claim with it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _defined_tests() -> dict[str, set[str]]:
    """Each test file (relative to the repository) and the test functions it defines."""
    return {
        str(p.relative_to(ROOT)): set(re.findall(r"^\s*(?:async\s+)?def (test_\w+)\(", p.read_text(), re.M))
        for p in (ROOT / "tests").rglob("*.py")
    }


def cited(text: str) -> tuple[set[str], set[tuple[str | None, str]]]:
    """The test paths (files and folders) a text names, and the tests it names, each with its file when given."""
    paths = set(re.findall(r"\btests/[\w/]*\w(?:\.py)?/?", text))
    tests = {(f, t) for f, t in re.findall(r"\b(tests/[\w/]+\.py)::(test_\w+)", text)}
    named = {t for _, t in tests}
    tests |= {(None, t) for t in re.findall(r"(?<![\w/.:])(test_\w+)\b", text) if t not in named}
    return {p.rstrip("/") for p in paths}, tests


def missing(text: str, defined: dict[str, set[str]]) -> list[str]:
    paths, tests = cited(text)
    folders = {str(parent) for f in defined for parent in Path(f).parents}
    gone = [p for p in sorted(paths) if p not in defined and p not in folders]
    everywhere = set().union(*defined.values())
    for file, test in sorted(tests, key=lambda x: (x[0] or "", x[1])):
        if file is None and test not in everywhere and not any(t.startswith(test) for t in everywhere):
            gone.append(test)
        elif file is not None and test not in defined.get(file, set()):
            gone.append(f"{file}::{test}")
    return gone


def test_every_test_the_readme_cites_exists():
    assert missing((ROOT / "README.md").read_text(), _defined_tests()) == []


def test_a_claim_naming_a_test_that_is_gone_is_found():
    defined = {"tests/a/test_x.py": {"test_one", "test_two_things"}}
    text = (
        "shown by tests/a/test_x.py (`test_one`, `test_two`) and tests/a/test_x.py::test_three; "
        "tests/b/test_y.py is gone, tests/ and tests/a/ are folders; not a test: my_test_one, x.test_one"
    )
    # `test_two`: the start of a test's name (the README cites long names short)
    assert missing(text, defined) == ["tests/b/test_y.py", "tests/a/test_x.py::test_three"]
