"""One decode pass feeds the shot detector and the frame sampler (frame-fed, PySceneDetect-style).

Frames wait in a short queue until the detector can no longer make them a shot start (its `lag`);
then they go to the sampler, which picks each shot's frames at 4 per real second. Samples are
handed out as soon as they are decided, so the caller converts only those frames (full-resolution
RGB) and the decoder's frames are released: memory stays at `lag` frames plus one shot's samples.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from movielib.io.decode import DecodedFrame, DecodedStream, Decoder, PyAVDecoder, VideoInfo
from movielib.shots.sampling import ShotSampler
from movielib.shots.types import DetectedVideo, Shot, ShotDetector


@dataclass(frozen=True)
class Sample:
    shot_idx: int
    k: int  # which sample time of the shot (0, 1, ...)
    frame: DecodedFrame


class OnePass:
    """Runs one video's frames through a detector and (optionally) a sampler; yields Samples and Shots."""

    def __init__(self, detector: ShotDetector, rate: float | None = 4.0):
        self.detector = detector
        self.rate = rate
        self.info: VideoInfo | None = None  # the stream's facts; with the counts below, known once `run` is done
        self.n_frames = 0
        self.n_shots = 0
        self.duration_s = 0.0

    def run(self, stream: DecodedStream) -> Iterator[Sample | Shot]:
        cutter = self.detector.cutter(stream.info)
        sampler = ShotSampler(self.rate) if self.rate else None
        starts: set[int] = set()
        pending: deque[DecodedFrame] = deque()
        state = {"idx": -1, "start": None}
        last = None

        def advance(frame: DecodedFrame) -> Iterator[Sample | Shot]:
            if frame.index == 0 or frame.index in starts:
                if state["start"] is not None:
                    yield from close(frame.index, frame.pts_s)
                state["idx"] += 1
                state["start"] = frame
                picks = sampler.start(frame) if sampler else []
            else:
                picks = sampler.push(frame) if sampler else []
            yield from (Sample(state["idx"], k, f) for k, f in picks)

        def close(end_frame: int, end_s: float) -> Iterator[Sample | Shot]:
            if sampler:
                yield from (Sample(state["idx"], k, f) for k, f in sampler.end(end_s))
            start = state["start"]
            yield Shot(state["idx"], start.index, end_frame, start.pts_s, end_s)

        def decided(cuts: list[int]) -> None:
            for c in cuts:
                if pending and c < pending[0].index:
                    raise RuntimeError(
                        f"{self.detector.name}: cut at frame {c} decided after the frame left its "
                        f"{cutter.lag}-frame window (its lag is too small)"
                    )
                starts.add(c)

        lag = cutter.lag
        for frame in stream:  # per frame: its cost is the detector's overhead over decoding (bench: detect)
            pending.append(frame)
            cuts = cutter.push(frame)
            if cuts:
                decided(cuts)
            while pending[0].index <= frame.index - lag:  # the frame just pushed always stays
                oldest = pending.popleft()
                if sampler or oldest.index == 0 or oldest.index in starts:  # else advance() has nothing to do
                    yield from advance(oldest)
            last = frame
        decided(cutter.finish())
        while pending:
            yield from advance(pending.popleft())
        self.info = stream.info
        if last is not None:
            self.n_frames = last.index + 1
            self.duration_s = last.pts_s + (1.0 / self.info.fps if self.info.fps > 0 else 0.0)
            yield from close(self.n_frames, self.duration_s)
            self.n_shots = state["idx"] + 1


def detect(path: str, detector: ShotDetector, decoder: Decoder | None = None) -> DetectedVideo:
    """A whole video's shots (no sampling): one decode pass through the detector."""
    onepass = OnePass(detector, rate=None)
    with (decoder or PyAVDecoder()).open_stream(path) as stream:
        shots = [e for e in onepass.run(stream) if isinstance(e, Shot)]
    info = onepass.info
    return DetectedVideo(
        fps=info.fps,
        width=info.width,
        height=info.height,
        n_frames=onepass.n_frames,
        duration_s=onepass.duration_s,
        shots=shots,
    )
