"""Decode + detect + sample per video: the one pass (movielib.shots.onepass) vs the two passes it replaced.

Baseline, the pre-issue-8 read path: pass 1 decodes every frame for the shot detector; pass 2
decodes the file again with OpenCV to fetch the sampled frames. Ours: one decode feeds both.
Both cut with the fast detector and crop the same frames (the ones the one pass sampled), so the
cuts and the samples are identical by construction, and checked.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from bench.common import Row, Size, best_of, sized, video
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.pipeline.stages import DecodeAndDetect, tensor_column
from movielib.shots.fast import FastContentDetector

PRE = FramePreprocess.for_spec(ClipSpec("ViT-B-32-quickgelu", random_weights=True))


def one_pass(path: str) -> tuple[list[int], list[list[int]], list[np.ndarray], int]:
    """(shot starts, sampled frame numbers per shot, crops per shot, frames decoded)."""
    stage = DecodeAndDetect(FastContentDetector(), PRE, decoder="pyav")
    tables = list(stage.process("v", path))
    rows = [r for t in tables for r in t.drop_columns(["frames"]).to_pylist()]
    crops = [c for t in tables for c in tensor_column(t, "frames")]
    return [r["start_frame"] for r in rows], [r["keyframes"] for r in rows], crops, rows[-1]["n_frames"]


def opencv_read(path: str, indices: list[int]):
    """The old second pass: OpenCV decodes front to back, converting only the wanted frames."""
    cap = cv2.VideoCapture(path)
    pos = 0
    for idx in sorted(indices):
        while pos < idx:
            cap.grab()
            pos += 1
        ok, bgr = cap.read()
        pos += 1
        yield idx, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    cap.release()


def two_passes(path: str, keyframes: list[list[int]]) -> tuple[list[int], list[np.ndarray]]:
    detected = FastContentDetector().detect(path)
    frames = dict(opencv_read(path, [i for k in keyframes for i in k]))
    return [s.start_frame for s in detected.shots], [PRE.crop([frames[i] for i in k]) for k in keyframes]


def run(folder: Path, size: Size = "full") -> list[Row]:
    rows, repeats = [], sized(size, 2, 1, 0)
    for case, frame in (("1080p", (1920, 1080)), ("480p", (854, 480))):
        path = str(video(folder, f"onepass-{case}-{repeats}.mp4", frame, repeats))
        t_one, (starts, keyframes, crops, n) = best_of(2, lambda path=path: one_pass(path))
        t_two, (starts2, crops2) = best_of(2, lambda path=path, keyframes=keyframes: two_passes(path, keyframes))
        same = starts == starts2 and all(np.array_equal(a, b) for a, b in zip(crops, crops2))
        rows.append(
            Row(
                "decode+detect+sample",
                f"{case}: one decode pass vs detect pass + OpenCV sample pass",
                n / t_one,
                n / t_two,
                "video frames/s",
                None,
                ("same cuts, same samples" if same else "DIFFERENT cuts or samples")
                + f"; {sum(map(len, keyframes))} samples, {len(starts)} shots",
            )
        )
    return rows
