"""Movie similarity as data (Movies2Scenes §4.1): which movies count as similar, from one of three sources.

  genres    movies with the same genre set (or, with min_jaccard < 1, genre sets that overlap that much);
            each movie gets `per_movie` of them at random
  synopsis  nearest neighbours of all-MiniLM-L6-v2 synopsis embeddings (inner product)
  pairs     a co-watch / more-like-this table, taken as it is

About three similar movies per movie, as in the paper. Movies are named by `uri` or `video_id`,
whichever the file uses. File formats (CSV or Parquet, one row per movie or pair):
  genres:   movie, genres      ("Drama|Romance", or a list column)
  synopsis: movie, synopsis
  pairs:    movie, similar
Dissimilar pairs for the similarity model's negatives are drawn from movies that are not similar, and for
genres from movies that share no genre at all (a pair of two dramas is no negative).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

import numpy as np
import pyarrow as pa

from movielib.errors import ConfigError
from movielib.train.tables import genre_sets, read_genres

Pair = tuple[str, str]  # (a, b) with a < b: similarity is symmetric


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def jaccard(a: frozenset, b: frozenset) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def from_genres(
    genres: Mapping[str, Iterable[str]], per_movie: int = 3, seed: int = 0, min_jaccard: float = 1.0
) -> set[Pair]:
    """Each movie is paired with up to `per_movie` random movies whose genre set overlaps its own by at least
    `min_jaccard` (1.0: exactly its genre set). Distinct genre sets are compared, not movies, so a catalog of
    tens of thousands of movies costs (distinct sets)^2."""
    rng = random.Random(seed)
    groups: dict[frozenset, list[str]] = defaultdict(list)
    for movie, gs in genre_sets(genres).items():
        groups[gs].append(movie)
    sets = [s for s in groups if s]
    close = {s: [t for t in sets if jaccard(s, t) >= min_jaccard] for s in sets}
    pairs: set[Pair] = set()
    for s in sets:
        pool = [m for t in close[s] for m in groups[t]]
        for m in groups[s]:
            others = [o for o in pool if o != m]
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


def dissimilar(
    similar: set[Pair], movies: list[str], n: int, seed: int = 0, genres: Mapping[str, frozenset] | None = None
) -> set[Pair]:
    """`n` random pairs of distinct movies that are not similar (the similarity model's negatives); with
    `genres`, only pairs that share no genre. Fewer when the catalog has fewer such pairs."""
    rng = random.Random(seed)

    def allowed(p: Pair) -> bool:
        return p not in similar and (
            genres is None or not genres.get(p[0], frozenset()) & genres.get(p[1], frozenset())
        )

    total = len(movies) * (len(movies) - 1) // 2
    if total <= 4 * n:  # small catalogs: every allowed pair is known, draw from them
        every = [p for i, a in enumerate(movies) for b in movies[i + 1 :] if allowed(p := _pair(a, b))]
        return set(rng.sample(every, min(n, len(every))))
    out: set[Pair] = set()
    for _ in range(50 * n):  # rejection sampling, bounded: a catalog may hold fewer allowed pairs than asked
        if len(out) == n:
            break
        p = _pair(*rng.sample(movies, 2))
        if allowed(p):
            out.add(p)
    return out


def _read(path: str, columns: list[str]) -> pa.Table:
    from movielib.io.uri import read_tabular

    return read_tabular(path, columns, "similarity file")


def read_similar(
    path: str, kind: str, per_movie: int = 3, seed: int = 0, model_path: str | None = None, min_jaccard: float = 1.0
) -> set[Pair]:
    """Similar pairs from a genres, synopsis or pairs file (formats in the module docstring)."""
    if kind == "genres":
        return from_genres(read_genres(path), per_movie, seed, min_jaccard)
    if kind == "synopsis":
        t = _read(path, ["movie", "synopsis"])
        return from_synopses(dict(zip(t["movie"].to_pylist(), t["synopsis"].to_pylist())), per_movie, model_path)
    if kind == "pairs":
        t = _read(path, ["movie", "similar"])
        return from_pairs(zip(t["movie"].to_pylist(), t["similar"].to_pylist()))
    raise ConfigError(f"similarity kind must be genres, synopsis or pairs, got {kind!r}")
