"""`movielib embed scenes`: a trained scene encoder's embeddings back into the catalog, as features/scene.

Two rows per shot, keyed like every features table by (video_id, shot_idx) and told apart by model:
  movies2scenes-shot    the encoder over the shot's own keyframe (one frame: the plain CLIP tower's path)
  movies2scenes-scene   the encoder over the scene around the shot: `shots` consecutive keyframes centred on
                        it (shifted inside the movie at its ends; a movie shorter than that repeats its last)
model_version names the run and the exported weights (their digest), so a re-embedding with other
weights adds rows beside these, and the same weights replace their own rows.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import torch

from movielib.io.uri import S3Options
from movielib.models.clip import normalize_frames
from movielib.runtime import actor_pool, init_ray, read_bytes
from movielib.store import FEATURES, CatalogStore
from movielib.train.movies2scenes.config import EmbedScenesConfig
from movielib.train.movies2scenes.data import decode_jpegs, keyframe_movies
from movielib.train.movies2scenes.encoder import load_scene_encoder
from movielib.train.tables import EmbedSummary, write_features

TABLE, SHOT_MODEL, SCENE_MODEL = "features/scene", "movies2scenes-shot", "movies2scenes-scene"


def scene_windows(n_shots: int, shots: int) -> np.ndarray:
    """(n_shots, shots) keyframe positions of the scene around each shot."""
    start = np.clip(np.arange(n_shots) - shots // 2, 0, max(0, n_shots - shots))
    return np.minimum(start[:, None] + np.arange(shots)[None], n_shots - 1)


class EmbedScenes:
    """One movie's keyframes -> its shot and scene embeddings (an actor: the encoder is loaded once)."""

    def __init__(self, encoder: str, version: str, batch: int = 32, s3: S3Options | None = None):
        self.encoder, self.meta = load_scene_encoder(read_bytes(encoder, s3))
        self.version, self.batch = version, batch

    @torch.no_grad()
    def _embed(self, scenes: np.ndarray) -> np.ndarray:
        out = [
            self.encoder(
                normalize_frames(torch.from_numpy(scenes[i : i + self.batch]), self.meta["mean"], self.meta["std"])
            )
            for i in range(0, len(scenes), self.batch)
        ]
        return torch.nn.functional.normalize(torch.cat(out), dim=1).numpy()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for movie in batch.to_pylist():
            frames = decode_jpegs(movie["jpegs"])
            shot = self._embed(frames[:, None])
            windows = scene_windows(len(frames), self.meta["shots"])  # scenes built a batch at a time (bounded memory)
            scene = (
                np.concatenate(
                    [self._embed(frames[windows[i : i + self.batch]]) for i in range(0, len(windows), self.batch)]
                )
                if len(windows)
                else shot[:0]
            )
            for i, idx in enumerate(movie["shot_idx"]):
                for model, emb in ((SHOT_MODEL, shot), (SCENE_MODEL, scene)):
                    rows.append(
                        {
                            "video_id": movie["video_id"],
                            "shot_idx": idx,
                            "model": model,
                            "model_version": self.version,
                            "embedding": emb[i].tolist(),
                        }
                    )
        return pa.Table.from_pylist(rows, schema=FEATURES)


def run(cfg: EmbedScenesConfig, args=None) -> EmbedSummary:
    """`movielib embed scenes RUN CATALOG`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    return embed_scenes(cfg.run, cfg.catalog, S3Options.from_config(cfg.s3))


def embed_scenes(run: str, catalog: str, s3: S3Options | None = None, rows_per_commit: int = 4096) -> EmbedSummary:
    """Write features/scene for every movie with keyframes; returns what was written."""

    path = f"{run.rstrip('/')}/scene_encoder.pt"
    data = read_bytes(path, s3)
    version = f"{run.rstrip('/').rsplit('/', 1)[-1]}-{hashlib.sha256(data).hexdigest()[:12]}"
    store = CatalogStore(catalog, s3)
    if "keyframes" not in store.table_names():
        from movielib.errors import ConfigError

        raise ConfigError(f"catalog {catalog!r} has no keyframes table; tag it with --set features.keyframes=true")
    ds = keyframe_movies(store).map_batches(
        EmbedScenes,
        fn_constructor_kwargs={"encoder": path, "version": version, "s3": s3},
        batch_size=4,
        batch_format="pyarrow",
        **actor_pool(),  # on GPUs when the cluster has them
    )
    return write_features(store, TABLE, ds, version, [SHOT_MODEL, SCENE_MODEL], rows_per_commit)
