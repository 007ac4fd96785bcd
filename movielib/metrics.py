"""Metrics of predictions and embeddings (heads, the genre model), computed by scikit-learn (and scipy for Pearson),
never re-derived here.

Shapes: multi-label targets are (n, labels) 0/1 with scores (n, labels); single-label targets are (n,)
class ids with scores (n, classes); regression targets and predictions are (n,) or (n, outputs).

Labels with no positive in `y_true` (common in small held-out splits): average precision is undefined
for them, so mAP and macro / weighted AU-PRC leave them out and average over the labels that have
positives (`labels_scored` says how many); micro AU-PRC pools every label. With no positive at all
these are nan. Precision / recall / F1 count 0 for a label with no predicted or no true positive
(scikit-learn's zero_division=0). Pearson is per sample across its outputs; samples whose target or
prediction is constant have none and are left out (nan when none is left).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    mean_squared_error,
    precision_recall_fscore_support,
    silhouette_score,
)


def _scored(y_true: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(y_true).sum(axis=0) > 0)


def auprc(y_true: np.ndarray, y_score: np.ndarray, average: str = "macro") -> float:
    """Area under the precision-recall curve (average precision): micro, macro or weighted over labels."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    keep = _scored(y_true)
    if keep.size == 0:
        return float("nan")
    if average != "micro":
        y_true, y_score = y_true[:, keep], y_score[:, keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(average_precision_score(y_true, y_score, average=average))


def mean_average_precision(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """mAP: macro average precision over the labels with positives (MovieNet place tagging, LVU)."""
    return auprc(y_true, y_score, "macro")


def weighted_prf(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float]:
    """Weighted precision, recall and F1 of multi-label predictions `y_score >= threshold`."""
    p, r, f, _ = precision_recall_fscore_support(
        np.asarray(y_true), np.asarray(y_score) >= threshold, average="weighted", zero_division=0
    )
    return float(p), float(r), float(f)


def top1_accuracy(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Share of samples whose highest score is their class (single-label); defined whatever classes the split
    holds (one class, two), undefined (nan) on no sample."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    return float(accuracy_score(y_true, y_score.argmax(axis=1))) if len(y_true) else float("nan")


def top1_hits(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Multilabel precision at 1: the share of samples whose highest-scored label is one of theirs (a trailer's
    most probable genre is a genre of its); undefined (nan) on no sample."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    return float(np.mean(y_true[np.arange(len(y_true)), y_score.argmax(axis=1)] > 0)) if len(y_true) else float("nan")


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(mean_squared_error(np.asarray(y_true), np.asarray(y_pred)))


def mean_pearson(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean over samples of the Pearson correlation between a sample's targets and its predictions."""
    from scipy.stats import pearsonr

    y_true, y_pred = np.atleast_2d(y_true), np.atleast_2d(y_pred)
    values = [pearsonr(t, p).statistic for t, p in zip(y_true, y_pred) if np.ptp(t) > 0 and np.ptp(p) > 0]
    return float(np.mean(values)) if values else float("nan")


def per_label(y_true: np.ndarray, y_score: np.ndarray, names: list[str], threshold: float = 0.5) -> dict[str, dict]:
    """Per label: its average precision (nan without a positive), F1 at the threshold, and its positives."""
    y_true, y_score = np.asarray(y_true), np.asarray(y_score)
    f1 = f1_score(y_true, y_score >= threshold, average=None, zero_division=0)
    out = {}
    for j, name in enumerate(names):
        positives = int(y_true[:, j].sum())
        ap = float(average_precision_score(y_true[:, j], y_score[:, j])) if positives else float("nan")
        out[name] = {"ap": ap, "f1": float(f1[j]), "positives": positives}
    return out


def silhouette_by_label(embeddings: np.ndarray, labels: list[str]) -> float:
    """Silhouette score (cosine) of embeddings grouped by a label each (e.g. a title's genre set): how well the
    groups separate, -1..1 (mmx_trailer20_genre.txt Fig. 6's measure); nan with fewer than 2 groups."""
    if len(set(labels)) < 2 or len(set(labels)) >= len(labels):
        return float("nan")
    return float(silhouette_score(np.asarray(embeddings), np.asarray(labels), metric="cosine"))


def nearest_neighbour_hits(queries: np.ndarray, keys: np.ndarray) -> float:
    """Cosine retrieval: the share of queries whose nearest key is their own (query i's match is key i)."""
    q = np.asarray(queries, np.float64)
    k = np.asarray(keys, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    k = k / np.maximum(np.linalg.norm(k, axis=1, keepdims=True), 1e-12)
    return float(np.mean(np.argmax(q @ k.T, axis=1) == np.arange(len(q)))) if len(q) else float("nan")


def labels_scored(y_true: np.ndarray) -> int:
    return int(_scored(y_true).size)


def evaluate(task: str, y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every metric that fits the task (multilabel: scores are probabilities; single: class scores;
    regression: predictions)."""
    if task == "multilabel":
        p, r, f = weighted_prf(y_true, y_score, threshold)
        return {
            "map": mean_average_precision(y_true, y_score),
            "auprc_micro": auprc(y_true, y_score, "micro"),
            "auprc_macro": auprc(y_true, y_score, "macro"),
            "auprc_weighted": auprc(y_true, y_score, "weighted"),
            "precision_weighted": p,
            "recall_weighted": r,
            "f1_weighted": f,
            "top1": top1_hits(y_true, y_score),
            "pearson_per_sample": mean_pearson(y_true, y_score),  # MovieCLIP's per-sample correlation
            "labels_scored": labels_scored(y_true),
        }
    if task == "single":
        return {"top1": top1_accuracy(y_true, y_score)}
    if task == "regression":
        return {"mse": mse(y_true, y_score), "pearson": mean_pearson(y_true, y_score)}
    raise ValueError(f"task must be multilabel, single or regression, got {task!r}")
