"""Which frames of a shot are scored: MovieCLIP samples each shot at 4 fps (§5.2), in real time.

Samples sit at the shot's start time + (k + 0.5) / rate seconds, k = 0, 1, ... while inside the
shot; each is the frame on screen at that moment (the last frame whose presentation time is not
after it). So a 1 s shot at 4 fps gives the frames at 0.125, 0.375, 0.625 and 0.875 s, a
variable-frame-rate file is sampled 4 times per real second, and a shot shorter than 0.5 / rate
seconds gets its middle frame: at least one frame per shot. The choice is made as frames stream
by, holding at most the frames of one shot's first 0.5 / rate seconds.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from movielib.io.decode import DecodedFrame

EPS = 1e-6
T = TypeVar("T")


class ShotSampler:
    """Streaming sampler for one shot at a time: start(frame), push(frame)..., end(end_s)."""

    def __init__(self, rate: float = 4.0):
        if rate <= 0:
            raise ValueError(f"sampling rate must be > 0, got {rate}")
        self.rate = rate
        self._prev: DecodedFrame | None = None

    def _time(self, k: int) -> float:
        return self._t0 + (k + 0.5) / self.rate

    def start(self, frame: DecodedFrame) -> list[tuple[int, DecodedFrame]]:
        self._t0, self._k, self._taken, self._early = frame.pts_s, 0, -1, []
        self._prev = None
        return self.push(frame)

    def _take(self, out: list) -> None:
        if self._prev.index != self._taken:  # a frame shown across two sample times is scored once
            out.append((self._k, self._prev))
            self._taken = self._prev.index
        self._k += 1

    def push(self, frame: DecodedFrame) -> list[tuple[int, DecodedFrame]]:
        """Feed the shot's next frame; returns (k, frame) for the samples decided by it."""
        out: list = []
        while self._prev is not None and frame.pts_s > self._time(self._k) + EPS:
            self._take(out)
        if self._taken < 0:
            self._early.append(frame)  # only until the first sample: <= 0.5 / rate seconds of frames
        else:
            self._early = []
        self._prev = frame
        return out

    def end(self, end_s: float) -> list[tuple[int, DecodedFrame]]:
        """The shot ended at `end_s` (the next shot's start, or the video's end): its last samples."""
        out: list = []
        while self._prev is not None and self._time(self._k) < end_s - EPS:
            self._take(out)
        if self._taken < 0 and self._early:
            out.append((0, self._early[len(self._early) // 2]))
        self._early, self._prev = [], None
        return out


def sample_times(start_s: float, end_s: float, rate: float = 4.0) -> list[float]:
    """The sample times of a shot [start_s, end_s) (none when it is shorter than 0.5 / rate s)."""
    out, k = [], 0
    while start_s + (k + 0.5) / rate < end_s - EPS:
        out.append(start_s + (k + 0.5) / rate)
        k += 1
    return out


class ThinnedSamples(Generic[T]):
    """At most `max_items` of a shot's samples, evenly spread: past the cap every other one is dropped
    and only every 2^j-th sample is taken from then on, so memory is bounded on any shot length."""

    def __init__(self, max_items: int):
        self.max_items = max_items
        self.stride = 1
        self.items: dict[int, T] = {}

    def wants(self, k: int) -> bool:
        return k % self.stride == 0

    def add(self, k: int, item: T) -> None:
        self.items[k] = item
        while len(self.items) > self.max_items:
            self.stride *= 2
            self.items = {j: v for j, v in self.items.items() if j % self.stride == 0}

    def values(self) -> list[T]:
        return [self.items[k] for k in sorted(self.items)]
