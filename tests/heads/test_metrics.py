"""Every head metric on cases worked by hand (where a swapped average or a dropped label shows), and equal to
scikit-learn's (scipy's for Pearson) on random and edge-case inputs."""

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score, mean_squared_error, precision_recall_fscore_support

from movielib import metrics as m


def _multilabel(rng, n=200, k=7):
    y = (rng.random((n, k)) < 0.3).astype(int)
    return y, np.clip(y * 0.3 + rng.random((n, k)) * 0.8, 0, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_metrics_equal_sklearn(seed):
    y, s = _multilabel(np.random.default_rng(seed))
    for average in ("micro", "macro", "weighted"):
        assert m.auprc(y, s, average) == pytest.approx(average_precision_score(y, s, average=average), abs=1e-6)
    assert m.mean_average_precision(y, s) == pytest.approx(average_precision_score(y, s, average="macro"), abs=1e-6)
    p, r, f, _ = precision_recall_fscore_support(y, s >= 0.4, average="weighted", zero_division=0)
    assert m.weighted_prf(y, s, 0.4) == pytest.approx((p, r, f), abs=1e-6)


def test_a_label_with_no_positives_is_left_out_not_a_crash():
    rng = np.random.default_rng(3)
    y, s = _multilabel(rng)
    y[:, 2] = 0  # nobody has label 2 in this split
    keep = [j for j in range(y.shape[1]) if j != 2]
    assert m.mean_average_precision(y, s) == pytest.approx(
        average_precision_score(y[:, keep], s[:, keep], average="macro"), abs=1e-6
    )
    assert m.auprc(y, s, "micro") == pytest.approx(average_precision_score(y, s, average="micro"), abs=1e-6)
    assert m.labels_scored(y) == y.shape[1] - 1
    assert np.isnan(m.mean_average_precision(np.zeros_like(y), s))  # no positive at all: undefined, said so
    p, r, f = m.weighted_prf(np.zeros_like(y), s)
    assert (p, r, f) == (0.0, 0.0, 0.0)


def test_single_label_and_regression_metrics_equal_sklearn_and_scipy():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 5, 300)
    scores = rng.random((300, 5))
    assert m.top1_accuracy(y, scores) == pytest.approx(float((scores.argmax(1) == y).mean()), abs=1e-6)
    assert m.top1_accuracy(np.array([0, 0, 0]), np.eye(5)[[0, 1, 0]]) == pytest.approx(2 / 3)  # classes 2-4 absent
    t, p = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    assert m.mse(t, p) == pytest.approx(mean_squared_error(t, p), abs=1e-6)
    assert m.mean_pearson(t, p) == pytest.approx(np.mean([pearsonr(a, b).statistic for a, b in zip(t, p)]), abs=1e-6)
    t[0] = 1.0  # a constant sample has no correlation: left out
    assert m.mean_pearson(t, p) == pytest.approx(
        np.mean([pearsonr(a, b).statistic for a, b in zip(t[1:], p[1:])]), abs=1e-6
    )
    assert np.isnan(m.mean_pearson(np.ones((3, 4)), p[:3]))


def test_evaluate_picks_the_tasks_metrics():
    rng = np.random.default_rng(5)
    y, s = _multilabel(rng)
    assert {"map", "auprc_micro", "f1_weighted"} <= set(m.evaluate("multilabel", y, s))
    assert set(m.evaluate("single", rng.integers(0, 3, 10), rng.random((10, 3)))) == {"top1"}
    with pytest.raises(ValueError, match="task must be"):
        m.evaluate("ranking", y, s)


def test_per_label_ap_and_f1_silhouette_and_nearest_neighbour_retrieval():
    from sklearn.metrics import f1_score, silhouette_score

    rng = np.random.default_rng(6)
    y, s = _multilabel(rng, k=3)
    y[:, 1] = 0
    per = m.per_label(y, s, ["a", "b", "c"], threshold=0.3)
    assert per["a"]["ap"] == pytest.approx(average_precision_score(y[:, 0], s[:, 0]), abs=1e-9)
    assert np.isnan(per["b"]["ap"]) and per["b"]["positives"] == 0  # no positive: undefined, said so
    assert per["c"]["f1"] == pytest.approx(f1_score(y[:, 2], s[:, 2] >= 0.3), abs=1e-9)
    # two tight groups far apart score near 1; the same points under shuffled labels near 0
    x = np.concatenate([rng.normal([5, 0], 0.1, (20, 2)), rng.normal([0, 5], 0.1, (20, 2))])
    groups = ["drama"] * 20 + ["comedy"] * 20
    assert m.silhouette_by_label(x, groups) == pytest.approx(silhouette_score(x, groups, metric="cosine"))
    assert m.silhouette_by_label(x, groups) > 0.9 > 0.2 > abs(m.silhouette_by_label(x, list(rng.permutation(groups))))
    assert np.isnan(m.silhouette_by_label(x, ["one"] * 40))
    keys = rng.normal(size=(10, 4))
    assert m.nearest_neighbour_hits(keys + 0.01 * rng.normal(size=(10, 4)), keys) == 1.0
    assert m.nearest_neighbour_hits(keys, keys[::-1]) <= 0.2


# Worked by hand (average precision as sklearn and the papers define it: sum over thresholds of (R_n - R_n-1) P_n).
# Label 0: positives at ranks 1 and 3 -> 1/2 * 1 + 1/2 * 2/3 = 5/6 (2 positives).
# Label 1: positives at ranks 1, 2, 4 -> 1/3 + 1/3 + 1/3 * 3/4 = 11/12 (3 positives).
# Micro: the 8 pairs pooled (5 positives; the tie at 0.1 is one threshold) -> (1 + 2/3 + 3/4 + 4/5 + 5/8) / 5.
Y = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])
S = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.1]])


def test_auprc_micro_macro_weighted_on_a_case_worked_by_hand():
    assert m.auprc(Y, S, "macro") == pytest.approx((5 / 6 + 11 / 12) / 2)  # 0.875
    assert m.auprc(Y, S, "weighted") == pytest.approx((2 * 5 / 6 + 3 * 11 / 12) / 5)  # 0.8833: by support
    assert m.auprc(Y, S, "micro") == pytest.approx(461 / 600)  # 0.7683
    assert m.mean_average_precision(Y, S) == pytest.approx(0.875)
    # a label nobody has is left out, not counted as 0: the mean is over the two scored labels
    three = np.concatenate([Y, np.zeros((4, 1), int)], axis=1), np.concatenate([S, np.full((4, 1), 0.5)], axis=1)
    assert m.mean_average_precision(*three) == pytest.approx(0.875) and m.labels_scored(three[0]) == 2
    # ... but micro pools every decision: its four negatives at 0.5 rank above two positives
    # (1 + 2/3 + 3/4 + 4/9 + 5/12) / 5
    assert m.auprc(*three, "micro") == pytest.approx(59 / 90)


def test_weighted_precision_recall_f1_top1_mse_and_pearson_on_cases_worked_by_hand():
    # at 0.5: label 0 predicts samples 0, 1 (TP 1, FP 1, FN 1): P = R = F = 1/2; label 1 predicts 1, 2 (TP 2,
    # FN 1): P 1, R 2/3, F 0.8; weighted by support 2 and 3
    assert m.weighted_prf(Y, S, 0.5) == pytest.approx(((2 * 0.5 + 3 * 1) / 5, (2 * 0.5 + 3 * 2 / 3) / 5, 3.4 / 5))
    scores = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    assert m.top1_accuracy(np.array([0, 2, 1]), scores) == pytest.approx(2 / 3)
    # multilabel: the highest score's label is one of the sample's in samples 0 (label 0) and 1 (label 2), not 2
    labels = np.array([[1, 1, 0], [0, 0, 1], [0, 1, 1]])
    assert (
        m.top1_hits(labels, scores) == pytest.approx(2 / 3)
        and m.evaluate("multilabel", labels, scores)["top1"] == 2 / 3
    )
    assert m.mse(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([[1.0, 3.0], [3.0, 2.0]])) == pytest.approx(5 / 4)
    t = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    assert m.mean_pearson(t, np.array([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0]])) == pytest.approx(0.0)  # (1 + -1) / 2
    # [2, 4, 7]: deviations [-7/3, -1/3, 8/3] against [-1, 0, 1]: r = 5 / (sqrt(2) sqrt(114) / 3) = 15 / sqrt(228)
    assert m.mean_pearson(t, np.array([[2.0, 4.0, 6.0], [2.0, 4.0, 7.0]])) == pytest.approx((1 + 15 / 228**0.5) / 2)
