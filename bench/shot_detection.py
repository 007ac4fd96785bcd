"""Shot detection frames/s: movielib's fast detector vs PySceneDetect's ContentDetector (defaults, its own
SceneManager and OpenCV decode), on the same 1080p and 480p files, with the cut lists compared, and the
detector's decode alone (decoder-scaled analysis frames) beside: the three run interleaved, round by round."""

from __future__ import annotations

from pathlib import Path

from bench.common import Row, Size, interleaved, sized, video
from movielib.io.decode import PyAVDecoder
from movielib.shots.fast import FastContentDetector, analysis_size

OVERHEAD = 0.10  # the detector may cost at most 10% over decoding its frames


def _pyscenedetect(path: str) -> tuple[list[int], int]:
    """PySceneDetect itself, as its users run it: (cut frames, frames decoded)."""
    from scenedetect import ContentDetector, SceneManager, open_video

    manager = SceneManager()
    manager.add_detector(ContentDetector())
    n = manager.detect_scenes(open_video(path, backend="opencv"))
    return [start.frame_num for start, _ in manager.get_scene_list()[1:]], n


def _decode_only(path: str) -> int:
    """The detector's decode alone: every frame, scaled to the analysis size inside the decoder."""
    n = 0
    with PyAVDecoder().open_stream(path) as stream:
        size = analysis_size(stream.info.width, stream.info.height)
        for frame in stream:
            frame.analysis(*size)
            n += 1
    return n


def run(folder: Path, size: Size = "full", rounds: int = 3) -> tuple[list[Row], dict]:
    rows, cuts = [], {}
    cases = {"1080p": ((1920, 1080), sized(size, 2, 1, 0)), "480p": ((854, 480), sized(size, 4, 2, 0))}
    for case, (frame, repeats) in cases.items():
        path = str(video(folder, f"detect-{case}-{repeats}.mp4", frame, repeats))
        runs = interleaved(
            {
                "pyscenedetect": lambda path=path: _pyscenedetect(path),
                "fast": lambda path=path: FastContentDetector().detect(path),
                "decode": lambda path=path: _decode_only(path),
            },
            rounds,
        )
        ref_cuts, n = runs.results["pyscenedetect"]
        fast_cuts = [s.start_frame for s in runs.results["fast"].shots[1:]]
        diff = sorted(set(ref_cuts) ^ set(fast_cuts))
        cuts[case] = {"pyscenedetect": ref_cuts, "fast": fast_cuts, "identical": not diff, "differences": diff}
        same = "same cuts" if not diff else f"cuts differ at {diff}"
        rows.append(
            runs.row(
                "shot detection",
                f"{case} fast vs PySceneDetect",
                "fast",
                "pyscenedetect",
                n,
                "frames/s",
                target=1.5,
                note=same,
            )
        )
        overhead = 100 * (runs.median("fast") / runs.median("decode") - 1)
        rows.append(
            runs.row(
                "shot detection",
                f"{case} fast vs decode only",
                "fast",
                "decode",
                n,
                "frames/s",
                target=round(1 / (1 + OVERHEAD), 3),
                note=f"detector overhead {overhead:.1f}% (median)",
            )
        )
    return rows, cuts
