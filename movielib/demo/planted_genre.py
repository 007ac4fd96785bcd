"""A tagged catalog with planted genres (tests, the genre demo): each genre shows only in a pair of experts, a
look in the image features and a sound in the audio features, shared with one other genre each (genre k: look
LOOK[k], sound SOUND[k]), so either expert alone confuses a genre with its twin; the scene and motion experts are
noise. A trailer has one or two genres and each of its clips (shots) shows one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movielib.demo.planted import commit, shot_row, video_row

GENRES = ("action", "comedy", "drama", "horror")
LOOK, SOUND = (0, 0, 1, 1), (0, 1, 0, 1)
DIMS = {"image": 16, "audio": 12, "scene": 10, "motion": 8}
TABLES = {"image": "features/image", "audio": "features/audio", "scene": "features/scores", "motion": "features/motion"}


def trailer_genres(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, genres) 0/1: one or two genres a trailer."""
    y = np.zeros((n, len(GENRES)), np.float32)
    for i in range(n):
        y[i, rng.choice(len(GENRES), rng.integers(1, 3), replace=False)] = 1
    return y


def clip_features(y: np.ndarray, clips: int, rng: np.random.Generator, protos: dict, noise: float) -> dict:
    """Per expert (n, clips, dim) features of trailers with genres `y`: each clip shows one of its trailer's genres."""
    genre = np.array([[rng.choice(np.flatnonzero(row)) for _ in range(clips)] for row in y])
    mean = {
        "image": protos["image"][np.array(LOOK)[genre]],
        "audio": protos["audio"][np.array(SOUND)[genre]],
        "scene": np.zeros((*genre.shape, DIMS["scene"])),
        "motion": np.zeros((*genre.shape, DIMS["motion"])),
    }
    return {e: (m + noise * rng.normal(size=m.shape)).astype(np.float32) for e, m in mean.items()}


def prototypes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {e: rng.normal(size=(2, d)) for e, d in DIMS.items()}


@dataclass
class PlantedGenres:
    dest: str
    genres_file: str  # movie (video_id), genres ("a|b")
    genres: dict[str, list[str]]


def build(dest: str, videos: int = 48, shots: int = 12, noise: float = 1.0, seed: int = 0) -> PlantedGenres:
    rng = np.random.default_rng(seed)
    protos = prototypes(rng)
    y = trailer_genres(videos, rng)
    feats = clip_features(y, shots, rng, protos, noise)
    tables: dict[str, list[dict]] = {"videos": [], "shots": [], **{t: [] for t in TABLES.values()}}
    genres = {}
    for v in range(videos):
        vid = f"trailer-{v:03d}"
        genres[vid] = [GENRES[g] for g in np.flatnonzero(y[v])]
        tables["videos"].append(video_row(vid, shots))
        for s in range(shots):
            tables["shots"].append(shot_row(vid, s))
            for expert, table in TABLES.items():
                tables[table].append(
                    {
                        "video_id": vid,
                        "shot_idx": s,
                        "model": f"planted-{expert}",
                        "model_version": "1",
                        "embedding": feats[expert][v, s].tolist(),
                    }
                )
    commit(dest, tables)
    path = Path(dest).parent / f"{Path(dest).name}-genres.csv"
    path.write_text("movie,genres\n" + "".join(f"{v},{'|'.join(g)}\n" for v, g in genres.items()))
    return PlantedGenres(dest, str(path), genres)
