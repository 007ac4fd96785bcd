"""Screenplay sluglines -> place labels."""

import pytest

from movielib.taxonomy.sluglines import labels_from_sluglines, parse_slugline


@pytest.mark.parametrize(
    "line, label",
    [
        ("EXT. GOTHAM RIVER - DAY", "gotham river"),
        ("INT. HOSPITAL ROOM - NIGHT", "hospital room"),
        ("INT. JOHN'S HOUSE - KITCHEN - NIGHT", "kitchen"),
        ("INT./EXT. POLICE CAR - MOVING - NIGHT", "police car"),
        ("EXT./INT. BARN - DAWN", "barn"),
        ("I/E WAR ROOM - CONTINUOUS", "war room"),
        ("12   INT. BANK (FLASHBACK) - DAY   12", "bank"),
        ("EXT. DESERT", "desert"),
        ("INT. SUBWAY STATION -- LATER", "subway station"),
        ("  EXT. BEACH - SUNSET  ", "beach"),
        ("INTERIOR CHURCH - DAY", "church"),
    ],
)
def test_sluglines(line, label):
    assert parse_slugline(line) == label


@pytest.mark.parametrize(
    "line",
    [
        "John walks into the INT. of the house.",  # action line, not upper case
        "INTERCUT WITH:",
        "CUT TO:",
        "EXT. - NIGHT",  # no place
        "",
        "JOHN",
    ],
)
def test_non_sluglines(line):
    assert parse_slugline(line) is None


def test_counts():
    counts = labels_from_sluglines(["EXT. RIVER - DAY", "Some action.", "EXT. RIVER - NIGHT", "INT. BAR - NIGHT"])
    assert counts == {"river": 2, "bar": 1}
