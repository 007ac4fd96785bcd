"""CLIPSceneScore on embeddings whose answer is known, and the clean / multi-label boundaries."""

import math

import numpy as np
import pytest
import torch

from movielib.tagging.scene_score import CleanRules, clip_scene_score


def _softmax(x):
    e = [math.exp(v - max(x)) for v in x]
    return [v / sum(e) for v in e]


def test_scene_score_is_mean_of_per_frame_softmax_of_100_cosine():
    # 3 labels along the axes; frame embeddings at known angles (cosines are then known exactly)
    text = torch.eye(3)
    a, b = 0.6, 0.8  # cos to label 0 and 1 for frame 2
    frames = torch.tensor(
        [
            [2.0, 0.0, 0.0],  # shot 0: exactly label 0 (norm must not matter)
            [a, b, 0.0],  # shot 1, frame 1
            [0.0, 0.0, 5.0],
        ]
    )  # shot 1, frame 2: exactly label 2
    scores = clip_scene_score(frames, text, [1, 2]).numpy()
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores[0], _softmax([100.0, 0.0, 0.0]), rtol=1e-6, atol=1e-30)
    f1, f2 = _softmax([100 * a, 100 * b, 0.0]), _softmax([0.0, 0.0, 100.0])
    np.testing.assert_allclose(scores[1], [(x + y) / 2 for x, y in zip(f1, f2)], rtol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-6)


def test_scene_score_with_soft_similarities():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(5, 8)), rng.normal(size=(4, 8))
    cos = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
    expected = np.stack(
        [np.mean([_softmax(list(100 * c)) for c in cos[s]], axis=0) for s in (slice(0, 2), slice(2, 5))]
    )
    got = clip_scene_score(torch.tensor(img), torch.tensor(txt), [2, 3]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_scene_score_checks_frame_counts():
    with pytest.raises(ValueError):
        clip_scene_score(torch.zeros(3, 4), torch.eye(4), [1, 1])
    with pytest.raises(ValueError):
        clip_scene_score(torch.zeros(2, 4), torch.eye(4), [2, 0])


LABELS = ("beach", "forest", "street", "office", "kitchen", "desert")


def _scores(*top):
    """A score vector whose first entries are `top` (labels 0..), rest spread evenly."""
    rest = (1.0 - sum(top)) / (len(LABELS) - len(top))
    return np.array(list(top) + [rest] * (len(LABELS) - len(top)), dtype=np.float32)


def test_clean_at_exactly_0_4_and_not_below():
    rules = CleanRules()
    assert rules.apply(_scores(0.4, 0.3), LABELS).clean
    below = rules.apply(_scores(np.nextafter(np.float32(0.4), np.float32(0)), 0.3), LABELS)
    assert not below.clean and below.labels_multi == []


def test_multi_labels_need_more_than_0_1():
    tags = CleanRules().apply(_scores(0.5, 0.2, 0.1, 0.1000001, 0.05), LABELS)
    assert tags.clean
    assert tags.labels[:4] == ["beach", "forest", "office", "street"]
    assert tags.labels_multi == ["beach", "forest", "office"]  # 0.1 exactly stays out
    assert tags.scores == sorted(tags.scores, reverse=True) and len(tags.scores) == 5


def test_top_k_order_and_size():
    s = np.array([0.05, 0.5, 0.1, 0.2, 0.15, 0.0], dtype=np.float32)
    tags = CleanRules(top_k=3).apply(s, LABELS)
    assert tags.labels == ["forest", "office", "kitchen"]
    assert tags.scores == pytest.approx([0.5, 0.2, 0.15])
    assert tags.labels_multi == ["forest", "office", "kitchen"]
