"""The person/face detector on real photographs with known faces (scikit-image), and on empty frames."""

import numpy as np
import pytest
import skimage.data

from movielib.models.faces import PersonFaceDetector


def _rgb(name):
    img = getattr(skimage.data, name)()
    return np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_one_face_in_portraits(name):
    found = PersonFaceDetector().detect(_rgb(name))
    assert len(found.faces) == 1 and found.person
    x, y, w, h = found.faces[0]
    assert found.largest_face_frac == pytest.approx(w * h / (512 * 512))
    assert 0.01 < found.largest_face_frac < 0.1


def test_face_boxes_are_in_original_pixels_when_downscaled():
    img = _rgb("astronaut")
    full = PersonFaceDetector(max_side=1024).detect(img)
    half = PersonFaceDetector(max_side=256).detect(img)
    assert len(half.faces) == len(full.faces) == 1
    (fx, fy, fw, fh), (hx, hy, hw, hh) = full.faces[0], half.faces[0]
    assert abs((fx + fw / 2) - (hx + hw / 2)) < 10 and abs((fy + fh / 2) - (hy + hh / 2)) < 10
    assert hw == pytest.approx(fw, rel=0.2)


@pytest.mark.parametrize("frame", [np.zeros((360, 640, 3), np.uint8), np.full((240, 320, 3), 200, np.uint8)])
def test_blank_frames_have_no_people(frame):
    found = PersonFaceDetector().detect(frame)
    assert found.faces == [] and found.largest_face_frac == 0.0 and not found.person


def test_no_face_in_a_cup_of_coffee():
    assert PersonFaceDetector().detect(_rgb("coffee")).faces == []


def test_frames_smaller_than_the_detectors_windows_do_not_crash_the_process():
    """OpenCV's HOG and cascades crash the process (SIGSEGV / heap corruption) on frames smaller than their
    windows: 98x56 and 16x16 videos did that to whole workers. Run in a subprocess so a crash fails this test."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from movielib.models.faces import PersonFaceDetector\n"
        "d = PersonFaceDetector()\n"
        "for h, w in [(56, 98), (16, 16), (64, 64), (8, 200), (1, 1), (127, 63), (128, 64), (23, 500)]:\n"
        "    img = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)\n"
        "    r = d.detect(img)\n"
        "    assert r.faces == [] and r.largest_face_frac == 0.0\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-500:])
