"""Shot detection frames/s: movielib's fast detector vs PySceneDetect's ContentDetector (defaults, its own
SceneManager and OpenCV decode), on the same 1080p and 480p files, with the cut lists compared, and the
detector's decode alone (decoder-scaled analysis frames) beside."""

from __future__ import annotations

from pathlib import Path

from bench.common import Row, best_of, video
from movielib.io.decode import PyAVDecoder
from movielib.shots.fast import FastContentDetector, analysis_size


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


def run(folder: Path, quick: bool = False) -> tuple[list[Row], dict]:
    rows, cuts = [], {}
    cases = {"1080p": ((1920, 1080), 1 if quick else 2), "480p": ((854, 480), 1 if quick else 4)}
    for case, (size, repeats) in cases.items():
        path = str(video(folder, f"detect-{case}-{repeats}.mp4", size, repeats))
        t_ref, ref = best_of(2, lambda path=path: _pyscenedetect(path))
        t_fast, fast = best_of(2, lambda path=path: FastContentDetector().detect(path))
        t_dec, n_dec = best_of(2, lambda path=path: _decode_only(path))
        ref_cuts, fast_cuts = ref[0], [s.start_frame for s in fast.shots[1:]]
        diff = sorted(set(ref_cuts) ^ set(fast_cuts))
        cuts[case] = {
            "pyscenedetect": ref_cuts,
            "fast": fast_cuts,
            "identical": ref_cuts == fast_cuts,
            "differences": diff,
        }
        n = ref[1]
        rows.append(
            Row(
                "shot detection",
                f"{case} fast vs PySceneDetect",
                n / t_fast,
                n / t_ref,
                "frames/s",
                1.5,
                "same cuts" if not diff else f"cuts differ at {diff}",
            )
        )
        rows.append(
            Row(
                "shot detection",
                f"{case} fast vs decode only",
                n / t_fast,
                n_dec / t_dec,
                "frames/s",
                0.95,
                f"decode-only {n_dec / t_dec:.0f} frames/s: detector overhead {100 * (1 - t_dec / t_fast):.1f}%",
            )
        )
    return rows, cuts
