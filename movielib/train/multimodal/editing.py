"""The editing-pattern tasks of long_range_multimodal_pretraining.txt §4 (AVE's protocol), on any tagged catalog:
their labels come from shot order itself.

  SSO  shot sequence ordering: 3 consecutive shots, shuffled; which of the 6 orders was applied (6-way)
  NSS  next shot selection: 4 context shots and 5 candidates (the true next and 4 other shots of the movie);
       which candidate comes next

Each task is scored twice with the same small head (scikit-learn's MLP) over the same examples: on the frozen base
features of the shots (video, audio, language concatenated per shot) and on the pretrained model's features of
the same shots passed through it as a sequence in the order the example shows them (§4: "we pass the extracted
sequence of features into our pretrained contextual and cross-modal transformers before concatenating them").
The figure is test accuracy pooled over k folds of the movies (scikit-learn's KFold, seeded): every movie is tested
once, by a head fitted on the other folds' movies. On a small catalog a single split's figure moves by 0.1 with
which few movies it tests; pooled, each task is scored on every movie's examples.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import init_ray, read_bytes, write_bytes
from movielib.store import CatalogStore
from movielib.train.multimodal.config import EvalEditingConfig
from movielib.train.multimodal.data import Sequences, catalog_movies, run_inputs
from movielib.train.multimodal.loop import EXPORT
from movielib.train.multimodal.model import MultimodalModel, load_multimodal

ORDERS = list(itertools.permutations(range(3)))  # SSO's 6 classes


@dataclass
class Movie:
    """One movie's shots in order: per modality (n, d) features and (n,) validity."""

    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.features["video"])

    def take(self, idx: list[int]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return {m: f[idx] for m, f in self.features.items()}, {m: v[idx] for m, v in self.valid.items()}


def movies_from(table: pa.Table, dims: dict[str, int]) -> list[Movie]:
    """Per-movie rows (catalog_movies) -> Movies, every modality aligned to the video's shots."""
    align = Sequences(1, dims)
    out = []
    for row in table.to_pylist():
        aligned = {m: align.aligned(row, m, row["video_shots"]) for m in dims}
        out.append(Movie({m: a[0] for m, a in aligned.items()}, {m: a[1] for m, a in aligned.items()}))
    return out


def sso_examples(movies: list[Movie], per_movie: int, rng: np.random.Generator):
    """(shot index lists in shown order, class) per example: 3 consecutive shots under one of the 6 orders."""
    out = []
    for i, movie in enumerate(movies):
        for _ in range(per_movie if len(movie) >= 3 else 0):
            start, label = int(rng.integers(0, len(movie) - 2)), int(rng.integers(len(ORDERS)))
            out.append((i, [start + j for j in ORDERS[label]], label))
    return out


def nss_examples(movies: list[Movie], per_movie: int, rng: np.random.Generator):
    """(movie, 4 context shots, 5 candidate shots, index of the true next) per example."""
    out = []
    for i, movie in enumerate(movies):
        n = len(movie)
        for _ in range(per_movie if n >= 9 else 0):
            start = int(rng.integers(0, n - 4))
            context, true = list(range(start, start + 4)), start + 4
            others = [s for s in range(n) if s not in (*context, true)]
            candidates = [true, *rng.choice(others, 4, replace=False).tolist()]
            order = rng.permutation(5)
            out.append((i, context, [candidates[j] for j in order], int(np.argmax(order == 0))))
    return out


class Featurizer:
    """Shots shown as a sequence -> one vector: their base features concatenated, or the pretrained model's
    contextual (and cross-modal video) features of that sequence concatenated. `many` featurizes examples of one
    length together, through the model in batches."""

    def __init__(self, model: MultimodalModel | None, batch: int = 256):
        self.model, self.batch = model, batch

    def __call__(self, movie: Movie, shots: list[int]) -> np.ndarray:
        return self.many([(movie, shots)])[0]

    def many(self, examples: list[tuple[Movie, list[int]]]) -> np.ndarray:
        taken = [movie.take(shots) for movie, shots in examples]
        feats = {m: np.stack([f[m] for f, _ in taken]) for m in taken[0][0]}  # (N, n, d)
        valid = {m: np.stack([v[m] for _, v in taken]) for m in taken[0][1]}  # (N, n)
        if self.model is None:
            return np.concatenate([feats[m] * valid[m][..., None] for m in feats], axis=2).reshape(len(taken), -1)
        out = []
        for i in range(0, len(taken), self.batch):
            batch = {m: torch.from_numpy(f[i : i + self.batch]).float() for m, f in feats.items()}
            batch |= {f"{m}_valid": torch.from_numpy(v[i : i + self.batch]) for m, v in valid.items()}
            with torch.no_grad():
                o = self.model(batch, mask=False)
            parts = [o.context[m] * o.valid[m][..., None] for m in o.context] + list(o.cross.values())
            out.append(torch.cat(parts, dim=2).reshape(len(batch["video"]), -1).numpy())
        return np.concatenate(out)


def _fit_head(x: np.ndarray, y: np.ndarray, seed: int):
    """The tasks' head (scikit-learn's MLP, 500 iterations) fitted on (x, y). Its iteration budget is the
    protocol's: reaching it is no news, so scikit-learn's ConvergenceWarning is not printed."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return make_pipeline(StandardScaler(), MLPClassifier((128,), max_iter=500, random_state=seed)).fit(x, y)


def sso_hits(movies, train, test, featurize: Featurizer, per_movie: int, seed: int) -> np.ndarray:
    """Per test example: whether the head fitted on the train movies' examples named its order."""
    rng = np.random.default_rng(seed)
    sets = {}
    for name, ids in (("train", train), ("test", test)):
        examples = sso_examples([movies[i] for i in ids], per_movie, rng)
        sets[name] = (
            featurize.many([(movies[ids[i]], shots) for i, shots, _ in examples]),
            np.array([label for _, _, label in examples]),
        )
    head = _fit_head(*sets["train"], seed)
    return head.predict(sets["test"][0]) == sets["test"][1]


def nss_hits(movies, train, test, featurize: Featurizer, per_movie: int, seed: int) -> np.ndarray:
    """A binary head scores each (context, candidate) sequence; per test example: whether the best-scored candidate
    is the true next shot."""
    rng = np.random.default_rng(seed)
    examples = nss_examples([movies[i] for i in train], per_movie, rng)
    x = featurize.many(
        [(movies[train[i]], [*context, c]) for i, context, candidates, _ in examples for c in candidates]
    )
    y = [int(j == answer) for _, _, candidates, answer in examples for j in range(len(candidates))]
    head = _fit_head(x, np.array(y), seed)
    tests = nss_examples([movies[i] for i in test], per_movie, rng)
    if not tests:
        return np.zeros(0, bool)
    x = featurize.many([(movies[test[i]], [*context, c]) for i, context, candidates, _ in tests for c in candidates])
    scores = head.predict_proba(x)[:, 1].reshape(len(tests), -1)
    return np.array([int(np.argmax(row)) == answer for row, (*_, answer) in zip(scores, tests)], bool)


def editing_figures(
    movies: list[Movie], model: MultimodalModel, per_movie: int = 30, folds: int = 3, seed: int = 0
) -> dict[str, dict[str, float]]:
    """SSO and NSS test accuracy on base features vs the pretrained model's, pooled over `folds` folds of the
    movies (the same folds and examples for both), with each task's chance and test example count."""
    from sklearn.model_selection import KFold

    if len(movies) < 2:
        raise ConfigError(
            f"catalog: the editing tasks need 2 movies or more (a train and a test fold); found {len(movies)}"
        )
    splits = [
        (a.tolist(), b.tolist())
        for a, b in KFold(min(folds, len(movies)), shuffle=True, random_state=seed).split(movies)
    ]
    featurizers = {"base": Featurizer(None), "pretrained": Featurizer(model.eval())}
    out = {}
    for task, score, chance in (("sso", sso_hits, 1 / 6), ("nss", nss_hits, 1 / 5)):
        hits = {
            name: np.concatenate(
                [score(movies, train, test, f, per_movie, seed + i) for i, (train, test) in enumerate(splits)]
            )
            for name, f in featurizers.items()
        }
        out[task] = {name: float(h.mean()) if len(h) else float("nan") for name, h in hits.items()}
        out[task] |= {"chance": chance, "examples": len(hits["base"])}
    return out


class EditingSummary(dict):
    exit_code = 0

    def render(self) -> str:
        lines = [
            f"editing patterns on {self['movies']} movies (test accuracy over {self['folds']} folds; {self['path']}):"
        ]
        for task, f in self["tasks"].items():
            lines.append(
                f"  {task.upper()}: base features {f['base']:.3f}, pretrained {f['pretrained']:.3f}, "
                f"chance {f['chance']:.3f} ({f['examples']} test examples)"
            )
        return "\n".join(lines)


def run(cfg: EvalEditingConfig, args=None) -> EditingSummary:
    """`movielib eval editing RUN CATALOG`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    s3 = S3Options.from_config(cfg.s3)
    model, meta = load_multimodal(read_bytes(f"{cfg.run.rstrip('/')}/{EXPORT}", s3))
    rows, _, _, _ = catalog_movies(CatalogStore(cfg.catalog, s3), run_inputs(meta["inputs"]))
    table = pa.concat_tables(list(rows.limit(cfg.max_movies).iter_batches(batch_format="pyarrow", batch_size=None)))
    movies = movies_from(table.sort_by("video_id"), meta["dims"])  # the join's row order varies; the folds must not
    tasks = editing_figures(movies, model, cfg.per_movie, cfg.folds, cfg.seed)
    path = f"{cfg.run.rstrip('/')}/editing.json"
    summary = EditingSummary(
        {"run": cfg.run, "movies": len(movies), "folds": min(cfg.folds, len(movies)), "tasks": tasks, "path": path}
    )
    write_bytes(path, json.dumps(summary, indent=2).encode(), s3)
    return summary
