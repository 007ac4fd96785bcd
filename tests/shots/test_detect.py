"""Shot detection on real encoded videos whose cuts are known, and frame sampling."""

import pytest

from movielib.io.video import VideoReadError
from movielib.shots import make_detector
from movielib.shots.sampling import sample_frame_indices


@pytest.mark.parametrize("name", ["three.mp4", "four.mp4", "two_30fps.mp4"])
def test_content_detector_finds_known_cuts(clips, name):
    path, cuts = clips[name]
    video = make_detector("content").detect(str(path))
    found = [s.start_frame for s in video.shots[1:]]
    assert len(found) == len(cuts), (found, cuts)
    assert all(abs(f - c) <= 1 for f, c in zip(found, cuts)), (found, cuts)
    # shots tile the video: 0-based, end exclusive, no gaps
    assert video.shots[0].start_frame == 0 and video.shots[-1].end_frame == video.n_frames
    assert all(a.end_frame == b.start_frame for a, b in zip(video.shots, video.shots[1:]))
    assert video.shots[1].start_s == pytest.approx(video.shots[1].start_frame / video.fps)


def test_detector_rejects_non_video(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all")
    with pytest.raises(VideoReadError, match="cannot open video"):
        make_detector("content").detect(str(bad))


def test_sampling_at_4fps_centres():
    # a 1 s shot at 25 fps: 4 samples at interval centres
    assert sample_frame_indices(0, 25, 25.0, 4.0) == [3, 9, 15, 21]
    # offsets follow the shot start
    assert sample_frame_indices(100, 125, 25.0, 4.0) == [103, 109, 115, 121]


def test_sampling_keeps_one_frame_for_short_shots():
    assert sample_frame_indices(10, 13, 25.0, 4.0) == [11]
    assert sample_frame_indices(7, 8, 25.0, 4.0) == [7]


def test_sampling_stays_inside_the_shot():
    for start, end, fps in [(0, 1000, 23.976), (5, 17, 30.0), (3, 4, 60.0)]:
        idx = sample_frame_indices(start, end, fps)
        assert idx == sorted(set(idx)) and start <= idx[0] and idx[-1] < end
        assert len(idx) == max(1, int((end - start) / fps * 4))


def test_sampling_rejects_empty_shot():
    with pytest.raises(ValueError):
        sample_frame_indices(5, 5, 25.0)
