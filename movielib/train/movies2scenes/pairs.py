"""Scene-pair selection (Movies2Scenes supp. §1b): which scenes of two similar movies look alike.

All shots of both movies (no 1024 cut) go through E_learnable; every `window` x `window` block of
the shot adjacency A (stride 1) is a candidate scene pair scored by its mean. The candidates are
walked best first, and a pair is taken when neither of its scenes overlaps a scene already taken
in the same movie; of those non-overlapping pairs, the best `keep` share (the top 50%) is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ScenePair:
    first: int  # first shot of the scene in movie 1 (the scene is shots [first, first + window))
    second: int  # first shot of the scene in movie 2
    score: float  # mean adjacency over the window


def window_means(a: torch.Tensor, window: int = 9) -> torch.Tensor:
    """(M - window + 1, N - window + 1): the mean of every window x window block of A, stride 1."""
    return F.avg_pool2d(a[None, None].float(), kernel_size=window, stride=1)[0, 0]


def select_scene_pairs(a: torch.Tensor, window: int = 9, keep: float = 0.5) -> list[ScenePair]:
    """The best `keep` share (at least one) of the non-overlapping scene pairs walked from the window means, best
    first."""
    if min(a.shape) < window:
        return []
    means = window_means(a, window).numpy()
    cols = means.shape[1]
    order = np.argsort(-means, axis=None, kind="stable")
    used1, used2 = np.zeros(a.shape[0], bool), np.zeros(a.shape[1], bool)
    most = min(a.shape[0], a.shape[1]) // window  # no more pairs than this can be disjoint
    pairs: list[ScenePair] = []
    for flat in order:
        i, j = divmod(int(flat), cols)
        if used1[i : i + window].any() or used2[j : j + window].any():
            continue
        used1[i : i + window] = used2[j : j + window] = True
        pairs.append(ScenePair(i, j, float(means[i, j])))
        if len(pairs) == most:
            break
    return pairs[: max(1, int(np.ceil(keep * len(pairs))))]


SCENE_PAIRS = pa.schema(
    [
        ("movie_a", pa.string()),
        ("a_first", pa.int32()),
        ("a_last", pa.int32()),
        ("movie_b", pa.string()),
        ("b_first", pa.int32()),
        ("b_last", pa.int32()),
        ("score", pa.float32()),
    ]
)


@torch.no_grad()
def scene_pairs_table(
    embed: Callable[[torch.Tensor], torch.Tensor],
    movies: Mapping[str, torch.Tensor],
    similar: Iterable[tuple[str, str]],
    window: int = 9,
    keep: float = 0.5,
) -> pa.Table:
    """Step 2 over every similar movie pair: all shots of both movies (no 1024 cut) through `embed` (the learned
    space), then `select_scene_pairs`. One row per scene pair; first/last shots inclusive."""
    rows = []
    for a, b in similar:
        if a not in movies or b not in movies:
            continue
        adjacency = embed(movies[a]) @ embed(movies[b]).T
        for p in select_scene_pairs(adjacency, window, keep):
            rows.append(
                {
                    "movie_a": a,
                    "a_first": p.first,
                    "a_last": p.first + window - 1,
                    "movie_b": b,
                    "b_first": p.second,
                    "b_last": p.second + window - 1,
                    "score": p.score,
                }
            )
    return pa.Table.from_pylist(rows, schema=SCENE_PAIRS)
