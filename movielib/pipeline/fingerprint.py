"""What produced a catalog: the output-relevant config and the weights' digest, hashed.

A DEST records the fingerprint of the run that first wrote it (DEST/_movielib/fingerprint.json).
A re-run with other settings must not skip "done" videos that were tagged differently, nor mix
two segmentations in one video: it is refused, naming the fields that changed, or (when the
user asks for it) writes a separate catalog alongside, under DEST/fp-<fingerprint>.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from movielib.config import changed_fields
from movielib.models.clip import ClipSpec
from movielib.pipeline.config import TagConfig
from movielib.taxonomy.labels import LabelSet


@functools.lru_cache(maxsize=8)
def file_digest(path: str) -> str:
    """sha256 of a file, streamed (a ViT-B/32 checkpoint takes well under a second)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(8 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def weights_digest(spec: ClipSpec) -> str:
    if spec.random_weights:
        return "random-init"
    checkpoint = spec.resolve().checkpoint
    return file_digest(str(Path(checkpoint).resolve())) if checkpoint else "random-init"


def output_fields(cfg: TagConfig, spec: ClipSpec, labels: LabelSet) -> dict[str, Any]:
    """Every setting that changes a row of the output tables (not resources, batch sizes or paths)."""
    return {
        "model.arch": spec.arch,
        "model.weights": weights_digest(spec),
        "model.precision": cfg.model.precision,
        "shots.detector": cfg.shots.detector,
        "shots.threshold": cfg.shots.threshold,
        "shots.min_scene_len": cfg.shots.min_scene_len,
        "sampling.fps": cfg.sampling.fps,
        "sampling.max_frames_per_shot": cfg.sampling.max_frames_per_shot,
        "people.enabled": cfg.people.enabled,
        "people.max_side": cfg.people.max_side,
        "people.frames_per_shot": cfg.people.frames_per_shot,
        "features.image": cfg.features.image,
        "features.audio": cfg.features.audio,
        "features.audio_model": cfg.features.audio_model,
        "features.text": cfg.features.text,
        "features.text_model": cfg.features.text_model,
        "scoring.labels": f"{len(labels.labels)} labels, sha256 {labels.digest()}",
        "scoring.prompt": labels.prompt,
        "scoring.top_k": cfg.scoring.top_k,
        "scoring.clean_threshold": cfg.scoring.clean_threshold,
        "scoring.multi_threshold": cfg.scoring.multi_threshold,
        # named only when on, so a DEST tagged before the option existed keeps its fingerprint
        **({"features.keyframes": True} if cfg.features.keyframes else {}),
        **({"features.cues": True} if cfg.features.cues else {}),
        **({"features.motion": True} if cfg.features.motion else {}),
        **({"features.scores": True} if cfg.features.scores else {}),
    }


def fingerprint(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:12]


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'field: old -> new' for every field that differs, in a stable order."""
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in sorted(changed_fields(old, new).items())]
