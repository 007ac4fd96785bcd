"""Decode workers stream frames: their peak RSS on a video ten times as long is within a small ratio of their peak
on the short one (the frames of the long one, decoded, are larger than the short run's whole peak). The absolute
figure for a 10-minute 640x360 video is the README's ("Reliability"), measured, not asserted here."""

import json
import subprocess

import pytest
from conftest import TINY, movielib_cli

from movielib.io.ffmpeg import ffmpeg_exe

pytestmark = pytest.mark.slow
SHORT_S, LONG_S = 30, 300  # 4,500 frames of 320x180 for the long one: 780 MB decoded
GROWTH = 1.25  # long / short peak: the audio track (17 MB more at 16 kHz) and allocator noise, never frames


def _video(path, seconds):
    """One long shot of 320x180 at 15 fps with a tone."""
    subprocess.run(
        [
            ffmpeg_exe(),
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x180:rate=15",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            str(seconds),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(path),
        ],
        check=True,
    )
    return path


def test_decode_memory_does_not_grow_with_the_video(tmp_path):
    """Each run on a Ray of its own: fresh decode workers, as a job on a cluster gets (a worker this test
    session reused for a hundred other tests carries what they loaded)."""
    peaks = {}
    for seconds in (SHORT_S, LONG_S):
        video = _video(tmp_path / f"{seconds}s.mp4", seconds)
        dest = tmp_path / f"out-{seconds}"
        proc = movielib_cli(
            "tag",
            str(video),
            str(dest),
            "--model",
            TINY,
            "--random-weights",
            join_ray=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:]
        (summary,) = (dest / "_movielib" / "runs").glob("*.json")
        report = json.loads(summary.read_text())
        assert report["videos_ok"] == 1
        peaks[seconds] = report["decode_peak_rss_mb"]
    print("decode worker peak RSS (MB):", peaks, "ratio", round(peaks[LONG_S] / peaks[SHORT_S], 3))
    assert peaks[SHORT_S] > 0 and peaks[LONG_S] / peaks[SHORT_S] < GROWTH, peaks
