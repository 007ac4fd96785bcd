"""Subtitles next to a video (`movie.mp4` -> `movie.srt` or `movie.en.srt`), parsed and cut per shot."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow.fs as pafs

from movielib.io.uri import S3Options, filesystem_for

TIME = r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})"
CUE_TIME = re.compile(TIME + r"\s*-->\s*" + TIME)
TAG = re.compile(r"<[^>]+>|\{\\[^}]*\}")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def parse_srt(text: str) -> list[Cue]:
    """SubRip cues in file order; formatting tags dropped, lines of one cue joined by spaces."""
    cues = []
    for block in re.split(r"\r?\n\s*\r?\n", text.lstrip("\ufeff")):
        lines = [line.strip() for line in block.strip().splitlines()]
        for i, line in enumerate(lines):
            m = CUE_TIME.search(line)
            if m:
                body = " ".join(TAG.sub("", t) for t in lines[i + 1 :] if t).strip()
                if body:
                    cues.append(Cue(_seconds(*m.groups()[:4]), _seconds(*m.groups()[4:]), body))
                break
    return cues


def text_between(cues: list[Cue], start_s: float, end_s: float) -> str | None:
    """The text of every cue overlapping [start_s, end_s), or None when none does."""
    parts = [c.text for c in cues if c.start_s < end_s and c.end_s > start_s]
    return " ".join(parts) if parts else None


def cues_starting_in(
    cues: list[Cue], start_s: float, end_s: float, first: bool = False, last: bool = False
) -> list[tuple[int, Cue]]:
    """(index in file order, cue) of the cues that start in [start_s, end_s): the shot that carries each cue's row
    to the cues table, so every cue is written once. The first shot also carries cues that start before it, the
    last those that start after it."""
    return [(i, c) for i, c in enumerate(cues) if (first or c.start_s >= start_s) and (last or c.start_s < end_s)]


def sidecar_subtitles(uri: str, s3: S3Options | None = None) -> list[Cue] | None:
    """Cues of the first sidecar found (`<stem>.srt`, then `<stem>.en.srt`), or None."""
    stem = uri.rsplit(".", 1)[0]
    for candidate in (f"{stem}.srt", f"{stem}.en.srt"):
        fs, path = filesystem_for(candidate, s3)
        if fs.get_file_info(path).type == pafs.FileType.File:
            with fs.open_input_stream(path) as f:
                return parse_srt(f.read().decode("utf-8", errors="replace"))
    return None
