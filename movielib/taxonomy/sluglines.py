"""Screenplay sluglines -> place labels (MovieCLIP §3.1: entities after INT. / EXT.).

EXT. GOTHAM RIVER - DAY                   -> gotham river
INT. JOHN'S HOUSE - KITCHEN - NIGHT       -> kitchen        (the most specific place)
12  INT./EXT. POLICE CAR - MOVING - NIGHT 12 -> police car  (scene numbers, time words dropped)
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable

PREFIX = re.compile(
    r"^\s*(?:[A-Z]?\d+[A-Z]?\s+)?"  # optional scene number
    r"(?:INT\.?\s*/\s*EXT\.?|EXT\.?\s*/\s*INT\.?|I\s*/\s*E\.?|INT\.|EXT\.|INT\b|EXT\b|INTERIOR\b|EXTERIOR\b)"
    r"[\s.:-]+(?P<rest>.+?)\s*(?:[A-Z]?\d+[A-Z]?)?\s*$"
)
TIME_WORDS = {
    "DAY",
    "NIGHT",
    "MORNING",
    "EVENING",
    "AFTERNOON",
    "DUSK",
    "DAWN",
    "SUNSET",
    "SUNRISE",
    "NOON",
    "MIDNIGHT",
    "TWILIGHT",
    "LATER",
    "MOMENTS LATER",
    "CONTINUOUS",
    "CONTINUING",
    "SAME",
    "SAME TIME",
    "MOVING",
    "NIGHT/DAY",
    "DAY/NIGHT",
    "LATE NIGHT",
    "EARLY MORNING",
    "MAGIC HOUR",
    "FLASHBACK",
    "PRESENT",
    "PRESENT DAY",
    "SIMULTANEOUS",
}
SEPARATOR = re.compile(r"\s+[-–—]+\s+|\s*[-–—]{2,}\s*")
PARENTHETICAL = re.compile(r"\([^)]*\)|\[[^]]*\]")


def parse_slugline(line: str) -> str | None:
    """The place label of one slugline (lower case), or None when the line is not a slugline."""
    if line.strip() != line.strip().upper():  # sluglines are upper case; action lines are not
        return None
    m = PREFIX.match(line)
    if not m:
        return None
    parts = [PARENTHETICAL.sub("", p).strip(" .,:;-") for p in SEPARATOR.split(m.group("rest"))]
    places = [p for p in parts if p and p.upper() not in TIME_WORDS]
    if not places:
        return None
    return re.sub(r"\s+", " ", places[-1]).lower()


def labels_from_sluglines(lines: Iterable[str]) -> collections.Counter[str]:
    """Place labels with how many sluglines name each."""
    return collections.Counter(label for line in lines if (label := parse_slugline(line)))
