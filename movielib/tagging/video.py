"""VideoCutter: one video in, its shots out with what tagging them needs, from a single decode pass.

The tagging core both shells share: the batch job's Ray Data stage (`pipeline.stages.decode`) turns
its blocks into Arrow rows, and the Serve tagger hands their crops straight to `SceneTagger`, so a
clip tagged online is cut and sampled exactly as the batch job cuts and samples it. A video that
cannot be read raises `VideoReadError`; anything else that goes wrong raises as it is. Ray, the
store and retry policy are the shells' business.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from movielib.devices import torch_device
from movielib.io.audio import extract_audio, slice_seconds
from movielib.io.decode import Decoder, make_decoder
from movielib.io.subtitles import Cue, cues_starting_in, sidecar_subtitles, text_between
from movielib.io.uri import S3Options
from movielib.io.video import VideoReadError
from movielib.models.clip import FramePreprocess
from movielib.shots.detect import Shot, ShotDetector
from movielib.shots.onepass import OnePass, Sample
from movielib.shots.sampling import ThinnedSamples

__all__ = ["CutShot", "ShotBlock", "VideoCutter", "VideoFacts", "VideoReadError"]


@dataclass(frozen=True)
class CutShot:
    """One shot with its inputs: sampled frames as model-size crops, people-detector frames, audio, subtitle."""

    shot: Shot
    frames: list[tuple[int, float]]  # (frame index, presentation time) of each sampled frame
    crops: np.ndarray  # (n, S, S, 3) uint8: open_clip's eval resize + crop of each sampled frame
    people: list[np.ndarray]  # small RGB copies for the people detector ([] when it is off)
    audio: np.ndarray | None  # 16 kHz mono samples of the shot (None: audio off or no track)
    subtitle: str | None  # the sidecar subtitles' text while the shot is on screen
    # (index, cue) of the sidecar cues that start in this shot (cues on)
    cues: list[tuple[int, Cue]] = field(default_factory=list)


@dataclass(frozen=True)
class VideoFacts:
    """What the whole pass tells about the video (known once its last frame is decoded)."""

    fps: float
    width: int
    height: int
    n_frames: int
    duration_s: float
    n_shots: int


@dataclass(frozen=True)
class ShotBlock:
    shots: list[CutShot]
    video: VideoFacts | None  # on the last block of a video only
    has_audio: bool


def spread(items: list, k: int) -> list:
    """At most k items, evenly spaced, first and last included when k >= 2."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[len(items) // 2]]
    return [items[round(j * (len(items) - 1) / (k - 1))] for j in range(k)]


def shrink(frame: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    scale = max_side / max(h, w)
    return (
        frame if scale >= 1 else cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    )


@dataclass
class VideoCutter:
    """Cut one local video file into shots and gather what tagging needs per shot.

    One decode pass feeds the detector and the 4 fps sampler (movielib.shots.onepass). Each sampled
    frame becomes a model-size crop for CLIP on a thread pool while decoding goes on, and, for
    `people_frames_per_shot` of them (evenly spread), a copy at most `people_max_side` pixels for the
    people detector. A shot keeps at most `max_frames_per_shot` samples (evenly thinned past that).
    Audio is extracted once per video and cut per shot; sidecar subtitles are cut the same way.
    Blocks of `shots_per_block` shots come out as they complete, so memory stays bounded.
    """

    detector: ShotDetector
    preprocess: FramePreprocess
    sampling_fps: float = 4.0
    s3: S3Options | None = None  # reaches sidecar subtitles next to an s3:// video
    shots_per_block: int = 16
    people_max_side: int | None = None  # None: no people detector frames
    audio: bool = False
    subtitles: bool = False
    cues: bool = False  # each shot also carries the cues that start in it (every cue once per video)
    prepare_threads: int = 2
    people_frames_per_shot: int = 3
    max_frames_per_shot: int = 512
    decoder: str | Decoder = "auto"  # auto | pyav | nvdec, or a Decoder object

    def blocks(self, path: str, uri: str) -> Iterator[ShotBlock]:
        """The shots of the video at local `path` (`uri` names it and finds its sidecar subtitles)."""
        onepass = OnePass(self.detector, self.sampling_fps)
        done: list[tuple[Shot, list[tuple[int, float, Future]], list[Future]]] = []
        frames, people = self._new_shot()
        decoder = (
            self.decoder
            if not isinstance(self.decoder, str)
            else make_decoder(self.decoder, gpu_reserved=torch_device() == "cuda")
        )
        with ThreadPoolExecutor(self.prepare_threads) as pool, decoder.open_stream(path) as stream:
            # the container opened as a video: now its audio track and sidecar subtitles
            samples = extract_audio(path) if self.audio else None
            cues = sidecar_subtitles(uri, self.s3) if self.subtitles or self.cues else None
            for event in onepass.run(stream):
                if isinstance(event, Sample):
                    if frames.wants(event.k):
                        # crop (PIL releases the GIL) while the decoder moves on to the next frames
                        for_people = bool(self.people_max_side) and people.wants(event.k)
                        prepared = pool.submit(self._prepare, event.frame, for_people)
                        frames.add(event.k, (event.frame.index, event.frame.pts_s, prepared))
                        if for_people:
                            people.add(event.k, prepared)
                    continue
                done.append((event, frames.values(), people.values()))
                frames, people = self._new_shot()
                if len(done) > self.shots_per_block:  # the last block waits for the pass's end (and its counts)
                    yield self._block(done[: self.shots_per_block], samples, cues, None)
                    done = done[self.shots_per_block :]
            if done:
                yield self._block(
                    done,
                    samples,
                    cues,
                    VideoFacts(
                        fps=onepass.info.fps,
                        width=onepass.info.width,
                        height=onepass.info.height,
                        n_frames=onepass.n_frames,
                        duration_s=onepass.duration_s,
                        n_shots=onepass.n_shots,
                    ),
                )

    def _new_shot(self) -> tuple[ThinnedSamples[tuple[int, float, Future]], ThinnedSamples[Future]]:
        """A shot's sampled frames (index, time, prepared crop) and its people-detector candidates, both bounded."""
        return ThinnedSamples(self.max_frames_per_shot), ThinnedSamples(4 * self.people_frames_per_shot)

    def _block(self, done, samples, cues, video: VideoFacts | None) -> ShotBlock:
        last = done[-1][0].idx if video is not None else None  # the video's last shot, in its last block
        shots = [
            CutShot(
                shot=shot,
                frames=[(i, t) for i, t, _ in sampled],
                crops=np.stack([c.result()[0] for _, _, c in sampled]),
                people=[p.result()[1] for p in spread(people, self.people_frames_per_shot)],
                audio=slice_seconds(samples, shot.start_s, shot.end_s) if samples is not None else None,
                subtitle=text_between(cues, shot.start_s, shot.end_s) if cues and self.subtitles else None,
                cues=cues_starting_in(cues, shot.start_s, shot.end_s, shot.idx == 0, shot.idx == last)
                if cues and self.cues
                else [],
            )
            for shot, sampled, people in done
        ]
        return ShotBlock(shots, video, has_audio=samples is not None)

    def _prepare(self, frame, for_people: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """One sampled frame -> its CLIP crop and, for the people detector's frames, a small copy."""
        rgb = frame.rgb()
        return self.preprocess.crop([rgb])[0], shrink(rgb, self.people_max_side) if for_people else None
