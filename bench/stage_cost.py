"""CPU seconds per minute of video for each tagging stage, at 1080p and 480p: what CPU nodes are sized from.

The job's own stage classes run in this process, one after another, on the same clip (shots of
3-4 s, 25 fps, 4 sampled frames a second); each is charged the CPU time of the whole process (all
its threads) plus the child processes it waited for (ffmpeg's audio extraction). Each row's
baseline is the decode + detect + sample stage at the same size, so the ratio says what a stage
costs next to decoding. Text assumes a subtitle line on every shot (the most a stage can get);
CLIP scoring runs with one torch thread (CPU seconds do not depend on the thread count, wall time does).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from bench.common import Row, Size, sized, video
from movielib.io.audio import extract_audio, slice_seconds
from movielib.models.audio import LogMelStats
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.models.faces import PersonFaceDetector
from movielib.pipeline.stages import ClipSceneScorer, DecodeAndDetect, DetectPeople, EmbedText
from movielib.shots.fast import FastContentDetector
from movielib.tagging.scene_score import CleanRules
from movielib.taxonomy.labels import LabelSet

MODEL = "ViT-B-32-quickgelu"  # what MovieCLIP used; random weights cost the same CPU as real ones
LINE = "I told you we should have left the city before the storm came in"  # a subtitle line, 14 words


def cpu_of(fn: Callable[[], object]) -> tuple[float, object]:
    """CPU seconds (user + system, every thread, and waited-for children) that fn took, and its result."""

    def now() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    c0 = now()
    out = fn()
    return now() - c0, out


def _scorer(model: str) -> ClipSceneScorer:
    import torch

    torch.set_num_threads(1)
    return ClipSceneScorer(ClipSpec(model, random_weights=True), LabelSet.movieclip(), CleanRules(), torch_threads=1)


def costs(path: str, scorer: ClipSceneScorer) -> tuple[dict[str, float], float, int]:
    """CPU seconds per stage on one clip, its length in minutes and its shot count."""
    spec = ClipSpec(MODEL, random_weights=True)
    decode = DecodeAndDetect(FastContentDetector(), FramePreprocess.for_spec(spec), people_max_side=640)
    spent: dict[str, float] = {}
    spent["decode+detect+sample"], tables = cpu_of(lambda: list(decode.process("v", path)))
    rows = pa.concat_tables(tables)
    minutes = rows.column("duration_s")[0].as_py() / 60.0
    people = DetectPeople(PersonFaceDetector(max_side=640))
    spent["people"], _ = cpu_of(lambda: people(rows))
    encoder = LogMelStats()

    def audio() -> None:
        samples = extract_audio(path)
        for start, end in zip(rows.column("start_s").to_pylist(), rows.column("end_s").to_pylist()):
            encoder.embed(slice_seconds(samples, start, end))

    spent["audio"], _ = cpu_of(audio)
    text = EmbedText()
    subtitled = pa.table({"subtitle": [LINE] * rows.num_rows})
    text(subtitled.slice(0, 1))  # the model loads once per worker: not a per-minute cost
    spent["text"], _ = cpu_of(lambda: text(subtitled))
    spent[f"CLIP scoring ({MODEL}, CPU)"], _ = cpu_of(lambda: scorer(rows.drop_columns(["people_frames"])))
    return spent, minutes, rows.num_rows


def run(folder: Path, size: Size = "full") -> tuple[list[Row], dict]:
    scorer = _scorer(MODEL)
    rows, table, repeats = [], {}, sized(size, 3, 1, 0)
    for case, frame in (("1080p", (1920, 1080)), ("480p", (854, 480))):
        path = str(video(folder, f"cost-{case}-{repeats}.mp4", frame, repeats))
        t0 = time.perf_counter()
        spent, minutes, shots = costs(path, scorer)
        per_min = {k: v / minutes for k, v in spent.items()}
        table[case] = {"cpu_s_per_video_minute": per_min, "shots_per_minute": shots / minutes}
        base = per_min["decode+detect+sample"]
        for stage, value in per_min.items():
            rows.append(
                Row(
                    "CPU per video minute",
                    f"{case}: {stage} vs decode+detect+sample",
                    value,
                    base,
                    "CPU s per minute of video",
                    None,
                    f"{shots / minutes:.0f} shots/min; all stages {time.perf_counter() - t0:.0f}s wall"
                    if stage == "decode+detect+sample"
                    else f"{1000 * spent[stage] / shots:.0f} ms a shot",
                )
            )
    return rows, table


def render(table: dict) -> str:
    """The README's table: CPU seconds per minute of video, a column a resolution."""
    cases = list(table)
    stages = list(next(iter(table.values()))["cpu_s_per_video_minute"])
    lines = ["| stage | " + " | ".join(f"{c} (CPU s / video min)" for c in cases) + " |", "|---|" + "---|" * len(cases)]
    for s in stages:
        lines.append(f"| {s} | " + " | ".join(f"{table[c]['cpu_s_per_video_minute'][s]:.1f}" for c in cases) + " |")
    return "\n".join(lines)
