"""Audio encoders by name or path: log-mel statistics built in, any TorchScript encoder by path/URI.

No pretrained audio embedding model ships in a package (VGGish, PANNs need downloads), so
the default is a transparent signal feature: the mean and standard deviation over time of
a 64-band log-mel spectrogram (25 ms windows, 10 ms hop) -> 128 floats per shot.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch

from movielib.io.audio import SAMPLE_RATE


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


@functools.lru_cache(maxsize=4)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular HTK-mel filters."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(sample_rate / 2)), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    fb = np.maximum(0, np.minimum((freqs - lower) / (centre - lower), (upper - freqs) / (upper - centre)))
    return torch.from_numpy(fb.astype(np.float32))


@dataclass(frozen=True)
class LogMelStats:
    n_mels: int = 64
    n_fft: int = 400
    hop: int = 160
    sample_rate: int = SAMPLE_RATE

    name = "logmel-stats"

    @property
    def version(self) -> str:
        return f"{self.n_mels}mel-{self.n_fft}fft-{self.hop}hop"

    @property
    def dim(self) -> int:
        return 2 * self.n_mels

    def embed(self, samples: np.ndarray) -> np.ndarray:
        # a writable copy only when needed: Arrow hands the stage read-only views (torch warns on those)
        x = torch.from_numpy(np.require(samples, np.float32, ["C", "W"]))
        if x.numel() < self.n_fft:
            x = torch.nn.functional.pad(x, (0, self.n_fft - x.numel()))
        spec = torch.stft(x, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), return_complex=True).abs() ** 2
        logmel = torch.log(mel_filterbank(self.n_mels, self.n_fft, self.sample_rate) @ spec + 1e-6)
        return torch.cat([logmel.mean(dim=1), logmel.std(dim=1, unbiased=False)]).numpy()


@dataclass(frozen=True)
class TorchScriptAudioEncoder:
    """A TorchScript module mapping a (1, samples) 16 kHz waveform to a (1, dim) embedding."""

    path: str

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]

    version = "torchscript"

    @functools.cached_property
    def module(self) -> torch.jit.ScriptModule:
        return torch.jit.load(self.path, map_location="cpu").eval()

    def embed(self, samples: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(np.require(samples, np.float32, ["C", "W"]))[None])
        return out.reshape(-1).float().numpy()
