"""A tagged catalog with planted signal for heads (tests, the heads demo, bench): shot features whose labels
are known functions of them.

Each of `labels` scene labels is on for a shot when its feature projects past a threshold on the
label's own direction (plus a little noise), so a head can learn it and chance is far below. The
tags table marks a known subset of shots clean (top-1 >= 0.4) with these labels as labels_multi.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movielib.demo.planted import commit, shot_row, video_row


@dataclass
class PlantedHeads:
    dest: str
    clean: set[tuple[str, int]]  # (video_id, shot_idx) of the clean shots
    labels: dict[tuple[str, int], list[str]]  # each shot's planted labels
    genres: dict[str, list[str]]  # video_id -> movie-level labels


def build(
    dest: str,
    videos: int = 40,
    shots: int = 20,
    dim: int = 32,
    labels: int = 6,
    seed: int = 0,
    clean_share: float = 0.7,
) -> PlantedHeads:
    rng = np.random.default_rng(seed)
    names = [f"label{j}" for j in range(labels)]
    directions = rng.normal(size=(labels, dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    tables: dict[str, list[dict]] = {"videos": [], "shots": [], "tags": [], "features/image": []}
    out = PlantedHeads(dest, set(), {}, {})
    for v in range(videos):
        vid = f"video-{v:03d}"
        bias = rng.normal(scale=0.5, size=dim)  # a movie's own look: shots of one movie resemble each other
        for s in range(shots):
            x = rng.normal(size=dim) + bias
            on = [names[j] for j in range(labels) if x @ directions[j] + rng.normal(scale=0.3) > 0.8]
            clean = bool(on) and rng.random() < clean_share
            out.labels[(vid, s)] = on
            if clean:
                out.clean.add((vid, s))
            tables["shots"].append(shot_row(vid, s))
            tables["tags"].append(
                {
                    "video_id": vid,
                    "shot_idx": s,
                    "labels": on or [names[0]],
                    "scores": [0.5 if clean else 0.1] * max(1, len(on)),
                    "clean": clean,
                    "labels_multi": on if clean else [],
                    "model": "planted",
                }
            )
            tables["features/image"].append(
                {
                    "video_id": vid,
                    "shot_idx": s,
                    "model": "planted",
                    "model_version": "1",
                    "embedding": x.astype(np.float32).tolist(),
                }
            )
        out.genres[vid] = sorted({g for s in range(shots) for g in out.labels[(vid, s)]})[:2] or [names[0]]
        tables["videos"].append(video_row(vid, shots))
    commit(dest, tables)
    return out
