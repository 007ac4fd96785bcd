"""A planted-structure catalog for Movies2Scenes: the tables a tagging run with features.keyframes writes.

Genres own scene clusters; every movie is a run of scenes (`scene_len` consecutive shots of one
cluster), half from its genre's clusters and half from clusters every genre shares. A shot's
feature (features/keyframe) is its cluster's centre plus noise; its keyframe (a 64x64 JPEG) is
its cluster's grating under a random colour cast, brightness and pixel noise, which dominate what
an untrained image tower sees. Movies of one genre are similar (the genres file); `held_out`
movies per genre are in the catalog but not in the genres file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import cv2
import numpy as np

from movielib.demo.planted import commit, shot_row, video_row

GENRES = ("action", "drama", "horror")


@dataclass
class Planted:
    dest: str
    genres_file: str
    genre: dict[str, str]  # video_id -> genre
    cluster: dict[tuple[str, int], int]  # (video_id, shot_idx) -> scene cluster
    held_out: list[str] = field(default_factory=list)  # video ids not in the genres file


def grating(cluster: int, rng: np.random.Generator, side: int = 64) -> np.ndarray:
    """The cluster's pattern (orientation and frequency) under a strong random colour cast and noise."""
    y, x = np.mgrid[0:side, 0:side] / side
    theta = np.pi * (cluster % 4) / 4
    freq = 3 + 3 * (cluster // 4)
    wave = np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)))
    cast = rng.uniform(40, 215, 3)
    img = cast[None, None] + 35 * wave[..., None] + rng.normal(0, 12, (side, side, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def build(
    dest: str,
    folder,
    movies_per_genre: int = 12,
    held_out: int = 2,
    scenes: int = 8,
    scene_len: int = 6,
    dim: int = 32,
    seed: int = 0,
) -> Planted:
    rng = np.random.default_rng(seed)
    n_genre_clusters, n_common = 2, 2
    n_clusters = len(GENRES) * n_genre_clusters + n_common
    centres = rng.normal(size=(n_clusters, dim))
    tables: dict[str, list[dict]] = {"videos": [], "shots": [], "keyframes": [], "features/keyframe": []}
    planted = Planted(dest, str(folder / "genres.csv"), {}, {})
    listed = []
    for g, genre in enumerate(GENRES):
        own = [g * n_genre_clusters + i for i in range(n_genre_clusters)]
        common = list(range(len(GENRES) * n_genre_clusters, n_clusters))
        for m in range(movies_per_genre + held_out):
            vid = f"{genre}-{m:02d}"
            planted.genre[vid] = genre
            (planted.held_out if m >= movies_per_genre else listed).append(vid)
            kinds = rng.permutation(
                [own[i % 2] for i in range(scenes // 2)] + [common[i % 2] for i in range(scenes // 2)]
            )
            shot = 0
            for c in kinds:
                for _ in range(scene_len):
                    planted.cluster[(vid, shot)] = int(c)
                    tables["shots"].append(shot_row(vid, shot, key_frame=12, key_s=0.5))
                    ok, jpeg = cv2.imencode(".jpg", grating(int(c), rng)[..., ::-1])
                    tables["keyframes"].append(
                        {
                            "video_id": vid,
                            "shot_idx": shot,
                            "frame_s": shot + 0.5,
                            "width": 64,
                            "height": 64,
                            "jpeg": jpeg.tobytes(),
                        }
                    )
                    feat = centres[c] + 0.8 * rng.normal(size=dim)
                    tables["features/keyframe"].append(
                        {
                            "video_id": vid,
                            "shot_idx": shot,
                            "model": "planted",
                            "model_version": "1",
                            "embedding": feat.astype(np.float32).tolist(),
                        }
                    )
                    shot += 1
            tables["videos"].append(video_row(vid, shot))
    commit(dest, tables)
    with open(planted.genres_file, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["movie", "genres"])
        for vid in listed:  # by uri, as a catalog team would name them
            w.writerow([f"s3://planted/{vid}.mp4", planted.genre[vid]])
    return planted


def precision_at_k(emb: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int = 5) -> float:
    """Mean share of each item's k nearest (cosine) items from other movies (`groups`) that share its label."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    sims[groups[:, None] == groups[None, :]] = -np.inf  # other movies only
    nearest = np.argsort(-sims, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())
