"""The fast detector: PySceneDetect ContentDetector's cuts, from decoder-scaled analysis-size frames."""

import json
import random

import pytest
from conftest import SHARED_DATA
from scenedetect import FrameTimecode
from scenedetect.detector import FlashFilter
from scenedetect.scene_manager import compute_downscale_factor

from movielib.io.video import VideoReadError
from movielib.shots import make_detector
from movielib.shots.fast import FastContentDetector, analysis_size, flash_filter_merge

DATA = SHARED_DATA / "scenedetect"
SHARED_VIDEOS = sorted(p.name for p in DATA.iterdir() if p.suffix in (".mp4", ".mkv"))


def _reference_filter(above, min_len):
    filt = FlashFilter(FlashFilter.Mode.MERGE, min_len)
    cuts = []
    for i, a in enumerate(above):
        cuts += [tc.frame_num for tc in filt.filter(FrameTimecode(i, fps=25.0), a)]
    return cuts


@pytest.mark.parametrize("seed", range(30))
def test_flash_filter_matches_pyscenedetect(seed):
    rng = random.Random(seed)
    p = rng.choice([0.02, 0.1, 0.3, 0.6])
    above = [rng.random() < p for _ in range(rng.randint(1, 400))]
    min_len = rng.choice([0, 1, 5, 15])
    import numpy as np

    assert flash_filter_merge(np.array(above), min_len) == _reference_filter(above, min_len)


@pytest.mark.parametrize(
    "size", [(1920, 1080), (1280, 544), (854, 480), (704, 576), (480, 320), (200, 100), (256, 144)]
)
def test_analysis_size_is_pyscenedetects(size):
    w, h = size
    f = compute_downscale_factor(w)
    expected = (max(1, round(w / f)), max(1, round(h / f))) if f > 1 else (w, h)
    assert analysis_size(w, h) == expected


@pytest.mark.parametrize("video", SHARED_VIDEOS)
def test_same_cuts_as_pyscenedetect_on_real_videos(video):
    path = str(DATA / video)
    ours, ref = FastContentDetector().detect(path), make_detector("content").detect(path)
    assert ours.n_frames == ref.n_frames
    # frame numbers match on constant-frame-rate files; the VFR file is compared by timecode
    assert [round(s.start_s, 3) for s in ours.shots] == [round(s.start_s, 3) for s in ref.shots]
    if "vfr" not in video:
        assert [s.start_frame for s in ours.shots] == [s.start_frame for s in ref.shots]


def test_same_cuts_on_generated_clips(clips):
    for path, cuts in clips.values():
        assert [s.start_frame for s in FastContentDetector().detect(str(path)).shots[1:]] == cuts


def test_reproduces_content_goldens():
    expected = json.loads((DATA / "expected.json").read_text())["videos"]
    checked = 0
    for video, spec in expected.items():
        for key, golden in spec.get("golden", {}).items():
            if not spec["present_in_snapshot"] or golden["detector"] != "ContentDetector" or "vfr" in video:
                continue
            det = FastContentDetector(threshold=golden["params"].get("threshold", 27.0))
            assert [s.start_frame for s in det.detect(str(DATA / video)).shots[1:]] == golden["cuts"], (video, key)
            checked += 1
    assert checked == 6


def test_fast_is_the_default_and_rejects_bad_input(tmp_path):
    assert isinstance(make_detector(), FastContentDetector)
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"no video here")
    with pytest.raises(VideoReadError):
        FastContentDetector().detect(str(bad))


def test_torch_hsv_is_opencvs_bit_for_bit():
    import cv2
    import numpy as np
    import torch

    from movielib.shots.hsv import bgr_to_hsv

    every_colour = (
        np.stack(np.meshgrid(*[np.arange(256)] * 3, indexing="ij"), -1).reshape(4096, 4096, 3).astype(np.uint8)
    )
    assert np.array_equal(
        bgr_to_hsv(torch.from_numpy(every_colour)).numpy(), cv2.cvtColor(every_colour, cv2.COLOR_BGR2HSV)
    )


@pytest.mark.parametrize("video", ["testvideo.mp4", "goldeneye-vfr-drop3.mp4"])
def test_torch_scorer_gives_the_numpy_scores(video):
    import numpy as np

    numpy_scores = FastContentDetector(scorer="numpy").frame_scores(str(DATA / video))
    torch_scores = FastContentDetector(scorer="torch").frame_scores(str(DATA / video))
    assert len(numpy_scores) == make_detector("content").detect(str(DATA / video)).n_frames
    np.testing.assert_allclose(torch_scores, numpy_scores, rtol=0, atol=1e-9)
