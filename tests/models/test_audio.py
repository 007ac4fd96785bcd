"""Audio extraction with ffmpeg-python and the built-in log-mel statistics encoder."""

import numpy as np
import pytest

from movielib.demo.samples import Segment, generate_clip
from movielib.io.audio import extract_audio, slice_seconds
from movielib.models.audio import LogMelStats, hz_to_mel


def test_extracts_16k_mono_of_the_clip_duration(clips):
    samples = extract_audio(str(clips["three.mp4"][0]))
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert len(samples) / 16000 == pytest.approx(6.0, abs=0.1)
    # the generated track is a 440 Hz sine: its spectrum peaks there
    spectrum = np.abs(np.fft.rfft(samples[:16000]))
    assert np.fft.rfftfreq(16000, 1 / 16000)[spectrum.argmax()] == pytest.approx(440, abs=2)


def test_video_without_audio_gives_none(tmp_path):
    path = tmp_path / "silent.mp4"
    generate_clip(path, [Segment("testsrc", 1.0)], audio=False)
    assert extract_audio(str(path)) is None


def test_logmel_stats_peak_in_the_tone_band():
    enc = LogMelStats()
    t = np.arange(16000) / 16000
    emb = enc.embed(np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert emb.shape == (enc.dim,) == (128,) and emb.dtype == np.float32
    mel_edges = np.linspace(0, hz_to_mel(np.array(8000.0)), enc.n_mels + 2)
    expected_band = int(np.argmin(np.abs(mel_edges[1:-1] - hz_to_mel(np.array(1000.0)))))
    assert abs(int(emb[:64].argmax()) - expected_band) <= 1
    assert emb[64 + expected_band] < 0.5  # a steady tone: its band barely varies over time


def test_logmel_stats_of_very_short_audio():
    """Ten samples of silence are padded to one window: every band sits at the log floor, with no spread."""
    emb = LogMelStats().embed(np.zeros(10, np.float32))
    assert emb.shape == (128,) and np.allclose(emb[:64], np.log(1e-6)) and np.allclose(emb[64:], 0)
    tone = LogMelStats().embed(np.sin(np.arange(10, dtype=np.float32)))  # too short for a band, not for energy
    assert np.isfinite(tone).all() and tone[:64].max() > np.log(1e-6) + 1


def test_slice_seconds():
    s = np.arange(32000, dtype=np.float32)
    assert len(slice_seconds(s, 0.5, 1.0)) == 8000 and slice_seconds(s, 0.5, 1.0)[0] == 8000
    assert len(slice_seconds(s, 1.9, 5.0)) == 1600


def test_an_audio_decode_past_its_timeout_is_stopped_with_a_reason(clips):
    path = next(iter(clips.values()))[0]
    assert extract_audio(str(path)) is not None  # the clip has a track that takes longer than 1 ms to decode
    with pytest.raises(RuntimeError, match="took more than 0.001 s and was stopped"):
        extract_audio(str(path), timeout_s=0.001)
