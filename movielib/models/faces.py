"""Person / face detection with OpenCV's shipped models (Haar cascades, HOG people detector).

Closeups defeat CLIP (MovieCLIP §4.3: 80% of disagreements are medium-to-extreme closeups),
so the tagger records per shot how many faces it sees and how much of the frame the largest
covers: a shot-scale proxy users can filter on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class PeopleInFrame:
    faces: list[tuple[int, int, int, int]]  # x, y, w, h in the frame's pixels
    largest_face_frac: float  # area of the largest face / frame area
    person: bool  # a face, or a HOG person detection above the weight threshold


CASCADE_WINDOW = 24  # the frontal cascade's window (the profile one is 20 x 20)
HOG_WINDOW = (64, 128)  # width, height of the default people detector's window


@functools.lru_cache(maxsize=1)
def _cascades() -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
    root = cv2.data.haarcascades
    frontal = cv2.CascadeClassifier(root + "haarcascade_frontalface_default.xml")
    profile = cv2.CascadeClassifier(root + "haarcascade_profileface.xml")
    if frontal.empty() or profile.empty():
        raise RuntimeError(f"OpenCV Haar cascades missing under {root}: install opencv-python-headless<5")
    return frontal, profile


@functools.lru_cache(maxsize=1)
def _hog() -> cv2.HOGDescriptor:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


@dataclass(frozen=True)
class PersonFaceDetector:
    """Frontal + profile (both directions) Haar cascades, merged; HOG people for bodies without faces.

    Frames larger than `max_side` are downscaled first (faces are reported in the original
    frame's pixels), which bounds the cost per frame.
    """

    min_neighbors: int = 6  # fewer false faces on noise and texture; still finds skimage's astronaut and camera
    min_face_px: int = 24
    scale_factor: float = (
        1.2  # cascade pyramid step: 1.2 finds the test portraits at ~2/3 the cost of 1.1, fewer false faces
    )
    hog_min_weight: float = 0.8
    max_side: int = 640

    def detect(self, rgb: np.ndarray) -> PeopleInFrame:
        h, w = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = (
            cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        )
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        boxes: list[tuple[int, int, int, int]] = []
        # OpenCV's detectors read past the image (and crash the process) on frames smaller than their window
        if min(gray.shape) >= max(self.min_face_px, CASCADE_WINDOW):
            frontal, profile = _cascades()
            args = dict(
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                minSize=(self.min_face_px, self.min_face_px),
            )
            boxes += [tuple(map(int, b)) for b in frontal.detectMultiScale(gray, **args)]
            boxes += [tuple(map(int, b)) for b in profile.detectMultiScale(gray, **args)]
            sw = gray.shape[1]
            boxes += [(sw - x - bw, y, bw, bh) for x, y, bw, bh in profile.detectMultiScale(cv2.flip(gray, 1), **args)]
        faces: list[tuple[int, int, int, int]] = []
        for box in sorted(boxes, key=lambda b: -b[2] * b[3]):
            if all(_iou(box, kept) <= 0.3 for kept in faces):
                faces.append(box)
        faces = [tuple(round(v / scale) for v in box) for box in faces]
        largest = max((bw * bh for _, _, bw, bh in faces), default=0) / float(h * w)
        person = bool(faces)
        hog_w, hog_h = HOG_WINDOW
        if not person and small.shape[1] >= hog_w and small.shape[0] >= hog_h:
            _, weights = _hog().detectMultiScale(small, winStride=(8, 8), padding=(8, 8), scale=1.05)
            person = bool(len(weights)) and float(np.max(weights)) >= self.hog_min_weight
        return PeopleInFrame(faces=faces, largest_face_frac=min(1.0, largest), person=person)
