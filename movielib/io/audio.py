"""Audio track extraction: ffmpeg-python decodes the first audio stream to 16 kHz mono float32."""

from __future__ import annotations

import ffmpeg
import numpy as np

from movielib.io.ffmpeg import ffmpeg_exe

SAMPLE_RATE = 16_000
NO_AUDIO_MARKERS = ("matches no streams", "does not contain any stream", "Output file does not contain any stream")


def extract_audio(path: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The whole first audio stream as read-only float32 mono at `sample_rate`, or None when there is none."""
    try:
        out, _ = (
            ffmpeg.input(path)
            .audio.output("pipe:", format="f32le", ac=1, ar=sample_rate)
            .run(cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True, quiet=True)
        )
    except ffmpeg.Error as exc:
        err = exc.stderr.decode(errors="replace") if exc.stderr else ""
        if any(m in err for m in NO_AUDIO_MARKERS):
            return None
        raise RuntimeError(f"audio extraction failed: {err.strip()[-500:]}") from exc
    samples = np.frombuffer(out, np.float32)  # read-only, no copy: the track is held once (230 MB an hour)
    return samples if samples.size else None


def slice_seconds(samples: np.ndarray, start_s: float, end_s: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    a = max(0, int(round(start_s * sample_rate)))
    b = max(a, min(len(samples), int(round(end_s * sample_rate))))
    return samples[a:b]
