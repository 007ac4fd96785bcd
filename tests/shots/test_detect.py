"""Shot detection on real encoded videos whose cuts are known, and 4 fps sampling in real time."""

from dataclasses import dataclass

import pytest

from movielib.io.video import VideoReadError
from movielib.shots import make_detector
from movielib.shots.sampling import ShotSampler, ThinnedSamples, sample_times


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


@pytest.mark.parametrize("kind", ["fast", "content", "transnetv2"])
def test_detector_rejects_non_video(tmp_path, kind):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all")
    with pytest.raises(VideoReadError, match="cannot open video"):
        make_detector(kind).detect(str(bad))


@dataclass
class F:
    index: int
    pts_s: float


def _sample(times: list[float], starts: set[int], end_s: float, rate: float = 4.0) -> list[list[int]]:
    """Run the streaming sampler over frames at `times`, shots starting at `starts`: frame indices per shot."""
    sampler, shots = ShotSampler(rate), []
    for i, t in enumerate(times):
        if i == 0 or i in starts:
            if shots:
                shots[-1] += [f.index for _, f in sampler.end(t)]
            shots.append([f.index for _, f in sampler.start(F(i, t))])
        else:
            shots[-1] += [f.index for _, f in sampler.push(F(i, t))]
    shots[-1] += [f.index for _, f in sampler.end(end_s)]
    return shots


def test_sampling_at_4fps_centres_in_real_time():
    times = [i / 25 for i in range(50)]  # 2 s at 25 fps, a cut at 1 s
    assert _sample(times, {25}, 2.0) == [[3, 9, 15, 21], [28, 34, 40, 46]]
    assert sample_times(0.0, 1.0) == [0.125, 0.375, 0.625, 0.875]


def test_sampling_keeps_one_frame_for_short_shots():
    times = [i / 25 for i in range(40)]  # shots [0, 10), [10, 13) = 0.12 s, [13, 40)
    shots = _sample(times, {10, 13}, 40 / 25)
    assert shots[1] == [11]  # its middle frame
    assert all(shots) and all(a < b for s in shots for a, b in zip(s, s[1:]))


def test_sampling_follows_real_time_on_variable_frame_rates():
    # 1 s at 10 fps, then 1 s at 50 fps: samples stay 0.25 s apart
    times = [i / 10 for i in range(10)] + [1 + i / 50 for i in range(50)]
    (shot,) = _sample(times, set(), 2.0)
    assert [round(times[i], 2) for i in shot] == [0.1, 0.3, 0.6, 0.8, 1.12, 1.36, 1.62, 1.86]
    assert len(shot) == 8  # 4 per real second, not per 'nominal' frame count


def test_sampling_scores_a_frame_shown_across_sample_times_once():
    times = [0.0, 0.9, 1.0]  # frame 0 is on screen for 0.9 s
    assert _sample(times, set(), 1.2) == [[0, 2]]  # 0.125..0.875 all show frame 0; 1.125 shows frame 2


def test_thinning_bounds_samples_and_keeps_them_even():
    thin = ThinnedSamples(8)
    kept = [k for k in range(100) if thin.wants(k) and thin.add(k, k) is None]
    assert len(thin.values()) <= 8 and thin.values() == sorted(thin.values())
    gaps = {b - a for a, b in zip(thin.values(), thin.values()[1:])}
    assert gaps == {thin.stride} and thin.values()[0] == 0 and len(kept) < 100
