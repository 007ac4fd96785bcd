"""CLIPSceneScore (MovieCLIP §4) and the clean / multi-label rules (§5.1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOGIT_SCALE = 100.0  # MovieCLIP: softmax over 100 * cosine similarity


def clip_scene_score(image_emb: torch.Tensor, text_emb: torch.Tensor, frames_per_shot: list[int]) -> torch.Tensor:
    """Per-shot label scores, shape (n_shots, n_labels).

    s_t = softmax(100 * cos(image_t, text_l)) over labels for each frame t, then the mean of
    s_t over each shot's frames. `image_emb` holds the frames of all shots back to back, in
    the counts `frames_per_shot` gives.
    """
    if sum(frames_per_shot) != image_emb.shape[0]:
        raise ValueError(f"{image_emb.shape[0]} frame embeddings for shots of {frames_per_shot} frames")
    if min(frames_per_shot, default=1) < 1:
        raise ValueError("every shot needs at least one frame")
    img = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    txt = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    per_frame = torch.softmax(LOGIT_SCALE * img @ txt.T, dim=-1)
    return torch.stack([chunk.mean(dim=0) for chunk in torch.split(per_frame, frames_per_shot)])


@dataclass(frozen=True)
class ShotTags:
    """Top-k labels of one shot, and whether it joins MovieCLIP's clean subset."""

    labels: list[str]
    scores: list[float]
    clean: bool
    labels_multi: list[str]


@dataclass(frozen=True)
class CleanRules:
    """§5.1: clean when top-1 >= 0.4; labels 2..k join the multi-label set when > 0.1."""

    top_k: int = 5
    clean_threshold: float = 0.4
    multi_threshold: float = 0.1

    def apply(self, scores: np.ndarray, labels: tuple[str, ...]) -> ShotTags:
        """Tags for one shot's score vector (float32, one score per label)."""
        scores = np.asarray(scores, dtype=np.float32)
        k = min(self.top_k, scores.shape[0])
        top = np.argsort(-scores, kind="stable")[:k]
        # thresholds compare at the scores' own precision: a stored 0.1 is not "> 0.1"
        clean = bool(scores[top[0]] >= np.float32(self.clean_threshold))
        multi = [labels[top[0]]] + [labels[i] for i in top[1:] if scores[i] > np.float32(self.multi_threshold)]
        top_scores = [float(scores[i]) for i in top]
        return ShotTags(
            labels=[labels[i] for i in top], scores=top_scores, clean=clean, labels_multi=multi if clean else []
        )
