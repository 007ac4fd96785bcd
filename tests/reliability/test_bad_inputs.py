"""One catalog of every kind of bad or odd input, on S3: each yields correct rows or one readable error row."""

import os
import shutil
import struct
import subprocess

import pytest
from conftest import TINY, assert_each_key_once

from movielib.io.ffmpeg import ffmpeg_exe
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


def _clip(path, size="160x96", seconds=2.0, fps=25, source="testsrc", audio=True, out=()):
    """A real encoded file: lavfi video (+ a sine tone), codecs chosen by the container unless `out` says."""
    args = ["-f", "lavfi", "-i", f"{source}=size={size}:rate={fps}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"]
    codecs = list(out) or ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"] + (
        ["-c:a", "aac"] if audio else []
    )
    _ffmpeg(*args, "-t", str(seconds), *codecs, "-shortest", str(path))


def _rotate_90(path) -> None:
    """Set the video track's display matrix to a quarter turn, as phones do (ffmpeg 5 cannot write one)."""
    data = bytearray(path.read_bytes())
    matrix = data.index(b"tkhd") + 4 + 40  # version 0 track header: the matrix follows 40 bytes of fields
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def bad_catalog(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    files = {}  # key -> "error: <text in the reason>", or the displayed (width, height) when it works

    def case(key, expect):
        files[key] = expect
        return d / key.replace("/", "__")

    case("zero-bytes.mp4", "error: object is empty (0 bytes)").write_bytes(b"")
    _clip(
        d / "whole.mp4",
        seconds=3,
        out=["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    )  # moov at the end: cut short, it cannot be opened
    case("truncated.mp4", "error: cannot open video").write_bytes((d / "whole.mp4").read_bytes()[:20_000])
    case("random-bytes.mp4", "error: cannot open video").write_bytes(os.urandom(64_000))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=1", "-frames:v", "1", str(d / "image.png"))
    os.replace(d / "image.png", case("image-as-video.mp4", (64, 64)))  # a PNG named .mp4
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440",
        "-t",
        "2",
        "-c:a",
        "aac",
        str(case("audio-only.mp4", "error: no video stream")),
    )
    _clip(case("one-frame.mp4", (160, 96)), out=["-frames:v", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
    _clip(case("no-audio.mp4", (160, 96)), audio=False)
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x96:rate=25",
        "-t",
        "3",
        "-vf",
        "setpts='if(lt(N,25),N/25,1+(N-25)/10)/TB'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        str(case("variable-frame-rate.mp4", (160, 96))),
    )
    _clip(case("rotated.mp4", (96, 160)))
    _rotate_90(d / "rotated.mp4")
    _clip(case("uhd-3840x2160.mp4", (3840, 2160)), size="3840x2160", seconds=1, fps=10)
    _clip(case("odd-98x56.mp4", (98, 56)), size="98x56")
    _clip(case("tiny-16x16.mp4", (16, 16)), size="16x16")
    _clip(case("formats/clip.mkv", (160, 96)))
    _clip(case("formats/clip.webm", (160, 96)), out=["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"])
    _clip(case("formats/clip.mov", (160, 96)))
    _clip(case("long-single-shot.mp4", (160, 96)), source="smptebars", seconds=40, fps=10, audio=False)
    for key in ("nested/deeper/with space.mp4", "nested/ünïcödé 日本.mp4", "names/take#2.mp4", "names/100% done.mp4"):
        shutil.copy(d / "no-audio.mp4", case(key, (160, 96)))
    return d, files


def test_every_bad_input_is_correct_rows_or_one_readable_error(ray_local, s3_server, bucket, bad_catalog):
    folder, files = bad_catalog
    client = s3_server.client()
    for key in files:
        client.upload_file(str(folder / key.replace("/", "__")), bucket, f"catalog/{key}")
    cfg = load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            "s3.endpoint_url": s3_server.endpoint_url,
            "output.rows_per_file": 8,
        },
    )
    summary = run_tagging(plan_tagging(cfg, f"s3://{bucket}/catalog/", f"s3://{bucket}/out"))

    store = CatalogStore(f"s3://{bucket}/out", S3Options.from_env(s3_server.endpoint_url))
    videos = {v["uri"].split("/catalog/", 1)[1]: v for v in store.read_table("videos").to_pylist()}
    assert set(videos) == set(files)  # every key round-trips: spaces, non-ASCII, '#', '%', nested prefixes
    errors = {k: e for k, e in files.items() if isinstance(e, str)}
    assert (summary.videos_ok, summary.videos_error, summary.videos_retryable) == (
        len(files) - len(errors),
        len(errors),
        0,
    )
    for key, expect in files.items():
        v = videos[key]
        if isinstance(expect, str):
            assert v["status"] == "error" and expect.removeprefix("error: ") in v["error"], (key, v)
        else:
            assert v["status"] == "ok" and (v["width"], v["height"]) == expect, (key, v)
            assert v["n_frames"] >= 1 and v["duration_s"] >= 0, (key, v)

    shots = store.read_table("shots").to_pylist()
    by_video: dict = {}
    for s in shots:
        by_video.setdefault(s["video_id"], []).append(s)
    for key, v in videos.items():
        got = sorted(by_video.get(v["video_id"], []), key=lambda s: s["shot_idx"])
        if v["status"] == "error":
            assert got == [], key
            continue
        # shots tile the video: they start at frame 0, follow each other, and end at its last frame
        assert got[0]["start_frame"] == 0 and got[-1]["end_frame"] == v["n_frames"], (key, got)  # end: exclusive
        assert all(a["end_frame"] == b["start_frame"] for a, b in zip(got, got[1:])), key
        assert all(len(s["keyframes"]) >= 1 for s in got), key
    for key in ("one-frame.mp4", "image-as-video.mp4"):
        assert videos[key]["n_frames"] == 1
    long = videos["long-single-shot.mp4"]
    assert len(by_video[long["video_id"]]) == 1 and long["duration_s"] == pytest.approx(39.9, abs=0.2)
    vfr = videos["variable-frame-rate.mp4"]  # 25 frames in the first second, then 10 a second: 3 s, 45 frames
    assert vfr["n_frames"] == 45 and vfr["duration_s"] == pytest.approx(3.0, abs=0.15)
    vfr_times = by_video[vfr["video_id"]][0]["keyframe_s"]
    assert vfr_times[-1] == pytest.approx(3.0, abs=0.3)  # real seconds, not frame / nominal fps

    audio = {r["video_id"]: r["embedding"] for r in store.read_table("features/audio").to_pylist()}
    assert audio[videos["no-audio.mp4"]["video_id"]] is None and audio[videos["rotated.mp4"]["video_id"]] is not None
    assert_each_key_once(store, len(files), len(shots))
