"""A tagged catalog with planted genres (the genre tests): each genre shows only in a pair of experts, a
look in the image features and a sound in the audio features, shared with one other genre each (genre k: look
LOOK[k], sound SOUND[k]), so either expert alone confuses a genre with its twin; the scene and motion experts are
noise. A trailer has one or two genres and each of its clips (shots) shows one of them. With `unreliable` > 0 the
look and the sound are each, on that share of clips, replaced by loud noise (a black frame, a music-only
soundtrack): the case collaborative gating is for (§3.1: robustness to noise in the features). With styles, each
trailer also has one of STYLES contents in its scene and motion experts (deserts and orchestral scores, large
battles: shared across genres, in every clip of the trailer), what the fine-grained stage (§4.4) is to find.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from movielib.demo.planted import commit, shot_row, video_row

GENRES = ("action", "comedy", "drama", "horror")
LOOK, SOUND = (0, 0, 1, 1), (0, 1, 0, 1)
STYLES = 8  # trailer contents (`content`), shared across genres
DIMS = {"image": 16, "audio": 12, "scene": 10, "motion": 8}
TABLES = {"image": "features/image", "audio": "features/audio", "scene": "features/scores", "motion": "features/motion"}


def trailer_genres(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, genres) 0/1: one or two genres a trailer."""
    y = np.zeros((n, len(GENRES)), np.float32)
    for i in range(n):
        y[i, rng.choice(len(GENRES), rng.integers(1, 3), replace=False)] = 1
    return y


def clip_features(
    y: np.ndarray,
    clips: int,
    rng: np.random.Generator,
    protos: dict,
    noise: float,
    unreliable: float = 0.0,
    loud: float = 4.0,
    style: np.ndarray | None = None,
    content: float = 2.0,
) -> dict:
    """Per expert (n, clips, dim) features of trailers with genres `y`: each clip shows one of its trailer's genres;
    on a share `unreliable` of clips the image (and, independently, the audio) is noise `loud` times the signal;
    with `style` (n,) in [0, STYLES), each trailer's scene and motion clips show its style's content (scale
    `content`)."""
    genre = np.array([[rng.choice(np.flatnonzero(row)) for _ in range(clips)] for row in y])
    mean = {
        "image": protos["image"][np.array(LOOK)[genre]],
        "audio": protos["audio"][np.array(SOUND)[genre]],
        "scene": np.zeros((*genre.shape, DIMS["scene"])),
        "motion": np.zeros((*genre.shape, DIMS["motion"])),
    }
    for e in ("scene", "motion") if style is not None else ():
        mean[e] = mean[e] + content * protos[e][style][:, None]
    feats = {e: m + noise * rng.normal(size=m.shape) for e, m in mean.items()}
    for e in ("image", "audio") if unreliable else ():
        lost = rng.random(genre.shape) < unreliable
        feats[e] = np.where(lost[..., None], loud * rng.normal(size=feats[e].shape), feats[e])
    return {e: f.astype(np.float32) for e, f in feats.items()}


def prototypes(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The two looks, the two sounds, and the STYLES scene and motion contents."""
    return {e: rng.normal(size=(2 if e in ("image", "audio") else STYLES, d)) for e, d in DIMS.items()}


@dataclass
class PlantedGenres:
    dest: str
    genres_file: str  # movie (video_id), genres ("a|b")
    genres: dict[str, list[str]]


def build(
    dest: str, videos: int = 48, shots: int = 12, noise: float = 1.0, seed: int = 0, styles: bool = True
) -> PlantedGenres:
    """The catalog at `dest` (videos, shots and the four experts' tables) and its genres file beside it; with
    `styles`, each trailer's scene and motion show one of STYLES contents."""
    rng = np.random.default_rng(seed)
    protos = prototypes(rng)
    y = trailer_genres(videos, rng)
    style = rng.integers(0, STYLES, videos) if styles else None
    feats = clip_features(y, shots, rng, protos, noise, style=style, content=1.0)
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
