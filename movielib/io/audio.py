"""Audio track extraction: ffmpeg-python decodes the first audio stream to 16 kHz mono float32."""

from __future__ import annotations

import subprocess

import ffmpeg
import numpy as np

from movielib.io.ffmpeg import ffmpeg_exe

SAMPLE_RATE = 16_000
NO_AUDIO_MARKERS = ("matches no streams", "does not contain any stream", "Output file does not contain any stream")


def extract_audio(path: str, sample_rate: int = SAMPLE_RATE, timeout_s: float = 900.0) -> np.ndarray | None:
    """The whole first audio stream as read-only float32 mono at `sample_rate`, or None when there is none.

    ffmpeg runs under `timeout_s` (killed past it: a crafted file must not hold a worker forever) and reads
    local files only."""
    proc = (
        ffmpeg.input(path, protocol_whitelist="file")
        .audio.output("pipe:", format="f32le", ac=1, ar=sample_rate)
        .run_async(cmd=ffmpeg_exe(), pipe_stdout=True, pipe_stderr=True, quiet=True)
    )
    try:
        out, err_bytes = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"audio extraction took more than {timeout_s:g} s and was stopped") from None
    if proc.returncode != 0:
        err = err_bytes.decode(errors="replace") if err_bytes else ""
        if any(m in err for m in NO_AUDIO_MARKERS):
            return None
        raise RuntimeError(f"audio extraction failed: {err.strip()[-500:]}")
    samples = np.frombuffer(out, np.float32)  # read-only, no copy: the track is held once (230 MB an hour)
    return samples if samples.size else None


def slice_seconds(samples: np.ndarray, start_s: float, end_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    a = max(0, int(round(start_s * sample_rate)))
    b = max(a, min(len(samples), int(round(end_s * sample_rate))))
    return samples[a:b]
