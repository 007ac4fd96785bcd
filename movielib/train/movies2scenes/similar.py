"""Movie similarity as data (Movies2Scenes §4.1): which movies count as similar, from one of three sources.

  genres    movies with the same genre set; each movie gets `per_movie` of them at random
  synopsis  nearest neighbours of all-MiniLM-L6-v2 synopsis embeddings (inner product)
  pairs     a co-watch / more-like-this table, taken as it is

About three similar movies per movie, as in the paper. Movies are named by `uri` or `video_id`,
whichever the file uses. File formats (CSV or Parquet, one row per movie or pair):
  genres:   movie, genres      ("Drama|Romance", or a list column)
  synopsis: movie, synopsis
  pairs:    movie, similar
Dissimilar pairs for the similarity model's negatives are drawn from movies that are not similar.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

from movielib.errors import ConfigError

Pair = tuple[str, str]  # (a, b) with a < b: similarity is symmetric


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def from_genres(genres: Mapping[str, Iterable[str]], per_movie: int = 3, seed: int = 0) -> set[Pair]:
    """Each movie is paired with up to `per_movie` random movies of exactly its genre set."""
    rng = random.Random(seed)
    groups: dict[frozenset, list[str]] = defaultdict(list)
    for movie, gs in genres.items():
        groups[frozenset(g.strip().lower() for g in gs if g.strip())].append(movie)
    pairs: set[Pair] = set()
    for movies in groups.values():
        for m in movies:
            others = [o for o in movies if o != m]
            pairs.update(_pair(m, o) for o in rng.sample(others, min(per_movie, len(others))))
    return pairs


def from_synopses(synopses: Mapping[str, str], per_movie: int = 3, model_path: str | None = None) -> set[Pair]:
    """Each movie is paired with its `per_movie` nearest movies by synopsis embedding (inner product)."""
    from movielib.models.text import embed_texts

    movies = list(synopses)
    emb = embed_texts([synopses[m] for m in movies], model_path)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    k = min(per_movie, len(movies) - 1)
    nearest = np.argsort(-sims, axis=1)[:, :k]
    return {_pair(movies[i], movies[j]) for i in range(len(movies)) for j in nearest[i]}


def from_pairs(rows: Iterable[tuple[str, str]]) -> set[Pair]:
    """A co-watch / more-like-this table as it is (self-pairs dropped)."""
    return {_pair(a, b) for a, b in rows if a != b}


def dissimilar(similar: set[Pair], movies: list[str], n: int, seed: int = 0) -> set[Pair]:
    """`n` random pairs of distinct movies that are not similar (the similarity model's negatives)."""
    rng = random.Random(seed)
    most = len(movies) * (len(movies) - 1) // 2 - len(similar)
    out: set[Pair] = set()
    while len(out) < min(n, most):
        a, b = rng.sample(movies, 2)
        p = _pair(a, b)
        if p not in similar:
            out.add(p)
    return out


def _read(path: str, columns: list[str]) -> pa.Table:
    from movielib.io.uri import read_tabular

    return read_tabular(path, columns, "similarity file")


def read_similar(path: str, kind: str, per_movie: int = 3, seed: int = 0, model_path: str | None = None) -> set[Pair]:
    """Similar pairs from a genres, synopsis or pairs file (formats in the module docstring)."""
    if kind == "genres":
        t = _read(path, ["movie", "genres"])
        values = t["genres"].to_pylist()
        return from_genres(
            {m: g if isinstance(g, list) else str(g or "").split("|") for m, g in zip(t["movie"].to_pylist(), values)},
            per_movie,
            seed,
        )
    if kind == "synopsis":
        t = _read(path, ["movie", "synopsis"])
        return from_synopses(dict(zip(t["movie"].to_pylist(), t["synopsis"].to_pylist())), per_movie, model_path)
    if kind == "pairs":
        t = _read(path, ["movie", "similar"])
        return from_pairs(zip(t["movie"].to_pylist(), t["similar"].to_pylist()))
    raise ConfigError(f"similarity kind must be genres, synopsis or pairs, got {kind!r}")
