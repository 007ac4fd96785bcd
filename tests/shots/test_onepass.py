"""One decode pass feeds the detector and the sampler: same frames, one numbering, real time, bounded work."""

import contextlib

import cv2
import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import TINY

from movielib.io.decode import PyAVDecoder, read_frames
from movielib.io.ffmpeg import run_ffmpeg
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.pipeline.stages import DecodeAndDetect, tensor_column
from movielib.shots import make_detector
from movielib.shots.transnet import HEIGHT, WIDTH, _model

PRE = FramePreprocess.for_spec(ClipSpec(TINY, random_weights=True))


class CountingDecoder:
    """PyAV, counting what is decoded and which pixels anyone asks for."""

    name = "counting"

    def __init__(self):
        self.opened = self.decoded = self.analysis = self.rgb = 0

    @contextlib.contextmanager
    def open_stream(self, path):
        self.opened += 1
        with PyAVDecoder().open_stream(path) as stream:
            yield _Counted(stream, self)


class _Counted:
    def __init__(self, stream, counts):
        self.stream, self.counts, self.info = stream, counts, stream.info

    def __iter__(self):
        for frame in self.stream:
            self.counts.decoded += 1
            yield _CountedFrame(frame, self.counts)


class _CountedFrame:
    def __init__(self, frame, counts):
        self.frame, self.counts, self.index, self.pts_s = frame, counts, frame.index, frame.pts_s

    def analysis(self, *args, **kwargs):
        self.counts.analysis += 1
        return self.frame.analysis(*args, **kwargs)

    def rgb(self):
        self.counts.rgb += 1
        return self.frame.rgb()

    def bgr(self):
        return self.frame.bgr()


def _run(path, decoder=None, **kwargs) -> pa.Table:
    stage = DecodeAndDetect(make_detector(kwargs.pop("detector", "fast")), PRE, decoder=decoder or "pyav", **kwargs)
    return pa.concat_tables(stage.process("v", str(path)))


def _opencv_frames(path) -> list[np.ndarray]:
    cap, out = cv2.VideoCapture(str(path)), []
    while (got := cap.read())[0]:
        out.append(cv2.cvtColor(got[1], cv2.COLOR_BGR2RGB))
    return out


@pytest.mark.parametrize("detector", ["fast", "content"])
def test_detector_and_sampler_share_one_decode(clips, detector):
    path, cuts = clips["four.mp4"]
    counts = CountingDecoder()
    table = _run(path, counts, detector=detector, shots_per_block=2)
    rows = table.drop_columns(["frames"]).to_pylist()
    n = rows[-1]["n_frames"]
    sampled = sum(len(r["keyframes"]) for r in rows)
    assert counts.opened == 1 and counts.decoded == n  # one pass, every frame decoded once
    if detector == "fast":
        assert counts.analysis == n  # the detector saw every frame, at its analysis size
    assert counts.rgb == sampled  # full-resolution pixels only for the sampled frames
    assert [r["start_frame"] for r in rows][1:] == cuts and rows[-1]["end_frame"] == n


def test_sampled_frames_equal_a_reference_decode(clips):
    path, _ = clips["three.mp4"]
    table = _run(path)
    reference = _opencv_frames(path)  # an independent decoder (OpenCV) of the same file
    for row, crops in zip(table.drop_columns(["frames"]).to_pylist(), tensor_column(table, "frames")):
        expected = PRE.crop([reference[i] for i in row["keyframes"]])
        assert np.array_equal(crops, expected)
        # 4 per second, from each shot's own start
        assert row["keyframe_s"] == pytest.approx(
            [row["start_s"] + (k + 0.5) / 4 - 0.02 for k in range(len(crops))], abs=0.021
        )
    assert [i for i, _ in read_frames(str(path), [3, 70])] == [3, 70]


def test_variable_frame_rate_is_sampled_four_times_per_real_second(tmp_path):
    path = tmp_path / "vfr.mp4"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=160x120:rate=8:duration=2",
            "-f",
            "lavfi",
            "-i",
            "smptebars=size=160x120:rate=48:duration=2",
            "-filter_complex",
            "[0:v]settb=1/480[a];[1:v]settb=1/480[b];[a][b]concat=n=2:v=1[v]",
            "-map",
            "[v]",
            "-fps_mode",
            "vfr",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(path),
        ]
    )
    rows = _run(path).drop_columns(["frames"]).to_pylist()
    assert [r["start_s"] for r in rows] == pytest.approx([0.0, 2.0], abs=0.01) and rows[0]["n_frames"] == 16 + 96
    for r, frame_s in zip(rows, (1 / 8, 1 / 48)):
        assert len(r["keyframes"]) == 8  # 2 s at 4 per second, whatever the frame rate
        grid = [r["start_s"] + (k + 0.5) / 4 for k in range(8)]
        assert all(0 <= g - t < frame_s + 1e-6 for g, t in zip(grid, r["keyframe_s"]))  # the frame on screen then


def test_truncated_file_samples_only_frames_that_exist(clips, tmp_path):
    path, _ = clips["three.mp4"]
    ts = tmp_path / "whole.ts"
    run_ffmpeg(["-i", str(path), "-c", "copy", str(ts)])
    cut = tmp_path / "cut.ts"
    cut.write_bytes(ts.read_bytes()[: int(ts.stat().st_size * 0.6)])
    table = _run(cut)
    rows = table.drop_columns(["frames"]).to_pylist()
    n = rows[-1]["n_frames"]
    reference = _opencv_frames(cut)
    assert 0 < n < 150 and rows[-1]["end_frame"] == n
    assert all(0 <= k < n for r in rows for k in r["keyframes"]) and rows[-1]["keyframes"]
    last = tensor_column(table, "frames")[-1]
    assert np.array_equal(last, PRE.crop([reference[i] for i in rows[-1]["keyframes"]]))


def test_long_shot_keeps_a_bounded_evenly_spread_sample(clips):
    path, _ = clips["three.mp4"]
    rows = _run(path, max_frames_per_shot=3).drop_columns(["frames"]).to_pylist()
    for r in rows:  # 2 s shots: 8 samples at 4 fps, thinned to every 4th
        assert len(r["keyframes"]) == 2 and r["keyframe_s"][1] - r["keyframe_s"][0] == pytest.approx(1.0, abs=0.05)


def test_streamed_transnetv2_equals_the_packages_batch_prediction(clips):
    path, _ = clips["four.mp4"]
    detector = make_detector("transnetv2")
    with PyAVDecoder().open_stream(str(path)) as stream:
        cutter = detector.cutter(stream.info)
        frames = []
        for f in stream:
            frames.append(f.analysis(WIDTH, HEIGHT, fmt="rgb24", interpolation="BICUBIC"))
            cutter.push(f)
        cutter.finish()
    with torch.inference_mode():
        single, _ = _model("cpu").predict_frames(torch.from_numpy(np.stack(frames)), quiet=True)
    np.testing.assert_allclose(np.array(cutter.probs), single.float().numpy().ravel(), atol=1e-5)


def test_torchcodec_decoder_behind_the_same_interface(clips):
    """The NVDEC path's decoder (torchcodec), run on the CPU here: same frames, same cuts, same samples."""
    from movielib.io.decode import TorchCodecDecoder

    path, cuts = clips["four.mp4"]
    ours = _run(path, TorchCodecDecoder("cpu"))
    ref = _run(path, PyAVDecoder())
    assert ours.column("start_frame").to_pylist()[1:] == cuts == ref.column("start_frame").to_pylist()[1:]
    assert ours.column("keyframes").to_pylist() == ref.column("keyframes").to_pylist()
    assert all(np.array_equal(a, b) for a, b in zip(tensor_column(ours, "frames"), tensor_column(ref, "frames")))


def test_a_failure_after_shots_went_downstream_ends_as_one_row_saying_so(clips):
    """Blocks stream out as shots complete; if the video fails later, the job still gets one row for it: a
    retryable one when the failure is not the video's fault (here the worker ran out of memory)."""

    class FailingDecoder(CountingDecoder):
        @contextlib.contextmanager
        def open_stream(self, path):
            with super().open_stream(path) as stream:
                yield _FailAfter(stream, 140)

    class _FailAfter(_Counted):
        def __init__(self, stream, n):
            self.stream, self.n, self.info = stream, n, stream.info

        def __iter__(self):
            for frame in self.stream:
                if frame.index == self.n:
                    raise MemoryError("simulated")
                yield frame

    path, _ = clips["four.mp4"]
    stage = DecodeAndDetect(make_detector("fast"), PRE, decoder=FailingDecoder(), shots_per_block=1)
    rows = [r for t in stage.process("v", str(path)) for r in t.drop_columns(["frames"]).to_pylist()]
    # by frame 140 the detector has settled the cuts at 40 and 70: the shots before them went out
    sent = [r["shot_idx"] for r in rows[:-1]]
    assert sent and sent == list(range(len(sent))) and len(sent) <= 2
    assert rows[-1]["shot_idx"] == -1
    assert rows[-1]["status"] == "retryable"
    assert rows[-1]["error"].startswith(f"stopped after {len(sent)} of its shots: MemoryError")


@pytest.mark.parametrize("size", [(98, 56), (16, 16)])
def test_tiny_videos_go_through_decode_and_people(tmp_path, size):
    from movielib.demo.samples import Segment, generate_clip
    from movielib.models.faces import PersonFaceDetector
    from movielib.pipeline.stages import DetectPeople

    path = tmp_path / "tiny.mp4"
    generate_clip(path, [Segment("testsrc", 1.0), Segment("color:red", 1.0)], size=size, audio=False)
    table = _run(path, people_max_side=640)
    rows = DetectPeople(PersonFaceDetector())(table).drop_columns(["frames"]).to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * len(rows) and rows[-1]["width"] == size[0]
    assert all(r["face_count"] == 0 for r in rows)


def test_rotated_video_is_decoded_as_displayed_like_opencv():
    from conftest import SHARED_DATA

    path = SHARED_DATA / "scenedetect" / "issue-134-rotate.mp4"  # display matrix: -90 degrees
    with PyAVDecoder().open_stream(str(path)) as stream:
        assert (stream.info.width, stream.info.height) == (544, 1280)
        first = next(iter(stream)).rgb()
    assert np.array_equal(first, _opencv_frames(path)[0])  # OpenCV applies the rotation too


@pytest.mark.parametrize(
    "name, args, expect",
    [
        (
            "one_frame.mp4",
            ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-frames:v", "1", "-pix_fmt", "yuv420p"],
            "ok",
        ),
        (
            "clip.webm",
            ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=1", "-c:v", "libvpx-vp9", "-b:v", "200k"],
            "ok",
        ),
        ("clip.mkv", ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=1", "-pix_fmt", "yuv420p"], "ok"),
        ("clip.mov", ["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:d=1", "-pix_fmt", "yuv420p"], "ok"),
        ("odd.mp4", ["-f", "lavfi", "-i", "testsrc=size=99x57:rate=25:d=1", "-pix_fmt", "yuv444p"], "ok"),
        ("audio_only.mp4", ["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac"], "no video stream"),
        ("random.mp4", None, "Invalid data found"),
    ],
)
def test_containers_and_odd_inputs_through_the_one_pass(tmp_path, name, args, expect):
    path = tmp_path / name
    if args is None:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    else:
        run_ffmpeg([*args, str(path)])
    rows = _run(path, people_max_side=640).drop_columns(["frames"]).to_pylist()
    if expect == "ok":
        assert all(r["status"] == "ok" for r in rows) and all(r["keyframes"] for r in rows)
        assert rows[-1]["end_frame"] == rows[-1]["n_frames"] >= 1
    else:
        (row,) = rows
        assert row["status"] == "error" and expect in row["error"]


def test_a_failing_consumer_stops_the_decode_thread_before_the_container_closes(clips):
    """An error while frames are being consumed ends as one row (retryable: a bug is not the video's fault),
    and no decode thread outlives the video."""
    import threading

    class FailingCrop(FramePreprocess):
        def crop(self, frames):
            raise ValueError("simulated crop failure")

    # blocks of one shot: the failure surfaces while the frame iterator is suspended mid-video
    stage = DecodeAndDetect(make_detector("fast"), FailingCrop(size=PRE.size), decoder="pyav", shots_per_block=1)
    rows = [r for t in stage.process("v", str(clips["four.mp4"][0])) for r in t.drop_columns(["frames"]).to_pylist()]
    assert rows[-1]["status"] == "retryable" and "simulated crop failure" in rows[-1]["error"]
    assert not [t for t in threading.enumerate() if t.name == "movielib-decode"]
