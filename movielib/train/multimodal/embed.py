"""`movielib embed multimodal RUN CATALOG`: a multimodal run's features back into the catalog, as
features/multimodal, so `movielib tune heads` runs on them unchanged.

Per shot, keyed like every features table by (video_id, shot_idx) and told apart by model:
  multimodal-video / -audio / -language   the contextual transformers' features (null where the shot has no such
                                          input: no audio track, no subtitle on screen)
  multimodal-cross                        the cross-modal video feature: the mean of the audio- and the
                                          language-conditioned video features (either one where the other is missing)
A movie is cut into back-to-back windows of the run's k shots from its first shot (the last one padded and
masked), each encoded without [MASK]. The paper's linear probes use each video's time-averaged features: a heads
labels file keyed by video only averages them (`data.labels: genres.csv`). model_version names the run and the
weights' digest: the same weights replace their own rows, other weights add rows beside them.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow as pa
import torch

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import actor_pool, init_ray, read_bytes
from movielib.store import FEATURES, CatalogStore
from movielib.train.multimodal.config import EmbedMultimodalConfig
from movielib.train.multimodal.data import Sequences, catalog_movies, run_inputs
from movielib.train.multimodal.loop import EXPORT
from movielib.train.multimodal.model import load_multimodal
from movielib.train.tables import EmbedSummary, write_features

TABLE = "features/multimodal"
MODELS = ("multimodal-video", "multimodal-audio", "multimodal-language", "multimodal-cross")


class FixedWindows(Sequences):
    """A movie's back-to-back windows from its first shot (what embedding wants: every shot once)."""

    def windows(self, n: int, rng) -> list[range]:
        return [range(s, min(n, s + self.k)) for s in range(0, n, self.k)]


class EmbedMultimodal:
    """Movies -> per-shot feature rows (an actor: the model is loaded once)."""

    def __init__(self, model: str, version: str, batch: int = 64, s3: S3Options | None = None):
        self.model, self.meta = load_multimodal(read_bytes(model, s3))
        self.version, self.batch, self.k = version, batch, self.meta["model"]["shots"]
        self.cut = FixedWindows(self.k, self.meta["dims"])

    @torch.no_grad()
    def __call__(self, movies: pa.Table) -> pa.Table:
        rows = []
        for movie in movies.to_pylist():
            shots = movie["video_shots"]
            seqs = self.cut(pa.Table.from_pylist([movie], schema=movies.schema))
            outs = [
                self._encode({k: v[i : i + self.batch] for k, v in seqs.items()})
                for i in range(0, len(seqs["video"]), self.batch)
            ]
            feats = {
                name: np.concatenate([o[name] for o in outs]).reshape(-1, outs[0][name].shape[-1])[: len(shots)]
                for name in MODELS
            }
            has = {name: np.concatenate([o[f"{name}_has"] for o in outs]).reshape(-1)[: len(shots)] for name in MODELS}
            for i, idx in enumerate(shots):
                for name in MODELS:
                    rows.append(
                        {
                            "video_id": movie["video_id"],
                            "shot_idx": idx,
                            "model": name,
                            "model_version": self.version,
                            "embedding": feats[name][i].tolist() if has[name][i] else None,
                        }
                    )
        return pa.Table.from_pylist(rows, schema=FEATURES)

    def _encode(self, seqs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = {k: torch.from_numpy(v) for k, v in seqs.items()}
        out = self.model(batch, mask=False)
        video = out.valid["video"]
        result = {}
        for name in ("video", "audio", "language"):
            if name in out.context:
                result[f"multimodal-{name}"] = out.context[name].float().numpy()
                result[f"multimodal-{name}_has"] = (out.valid[name] & video).numpy()
            else:
                result[f"multimodal-{name}"] = np.zeros((*video.shape, self.model.m.width), np.float32)
                result[f"multimodal-{name}_has"] = np.zeros(video.shape, bool)
        conditioned = [(out.cross[s], out.valid[s].any(dim=1, keepdim=True).expand_as(video)) for s in out.cross]
        total = sum((c * h[..., None] for c, h in conditioned), torch.zeros(*video.shape, self.model.m.width))
        count = sum((h.float() for _, h in conditioned), torch.zeros(video.shape))
        result["multimodal-cross"] = (total / count.clamp(min=1)[..., None]).numpy()
        result["multimodal-cross_has"] = ((count > 0) & video).numpy()
        return result


def run(cfg: EmbedMultimodalConfig, args=None) -> EmbedSummary:
    """`movielib embed multimodal RUN CATALOG`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    return embed_multimodal(cfg.run, cfg.catalog, S3Options.from_config(cfg.s3))


def embed_multimodal(run: str, catalog: str, s3: S3Options | None = None, rows_per_commit: int = 4096) -> EmbedSummary:
    """Write features/multimodal for every movie with the run's input features; returns what was written."""
    path = f"{run.rstrip('/')}/{EXPORT}"
    try:
        data = read_bytes(path, s3)
    except FileNotFoundError as e:
        raise ConfigError(f"run: {run!r} holds no {EXPORT} (has `movielib pretrain multimodal` finished?)") from e
    version = f"{run.rstrip('/').rsplit('/', 1)[-1]}-{hashlib.sha256(data).hexdigest()[:12]}"
    meta = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["inputs"]
    store = CatalogStore(catalog, s3)
    movies, _, _, _ = catalog_movies(store, run_inputs(meta))
    ds = movies.map_batches(
        EmbedMultimodal,
        fn_constructor_kwargs={"model": path, "version": version, "s3": s3},
        batch_size=4,
        batch_format="pyarrow",
        **actor_pool(),  # on GPUs when the cluster has them
    )
    return write_features(store, TABLE, ds, version, list(MODELS), rows_per_commit)
