"""`movielib embed genre RUN CATALOG`: a genre run's trailer embeddings and genre probabilities back into the catalog,
as features/trailer, so heads and similarity search read them like any features table.

One row per video (shot_idx -1: the whole trailer), told apart by model:
  genre-embedding         the 2,048-d bottleneck of the fine-grained model (genre-finegrained.pt; the coarse model's
                          when the run skipped that stage): the trailer embedding the paper compares by cosine
  genre-probabilities     the coarse classifier's sigmoid per genre, in the run's genre order (summary.json)
  genre-coarse-embedding  the coarse model's bottleneck, when the fine-grained stage ran: what the exported
                          classifier (genre-head.pt, served like any head) reads
A trailer longer than the model's layout is read from a fixed, seeded window of consecutive shots, as validation
reads it. model_version names the run and the weights' digest: the same weights replace their own rows.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import torch

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import actor_pool, init_ray, read_bytes
from movielib.store import FEATURES, CatalogStore
from movielib.train.config import InputSection
from movielib.train.genre.config import EmbedGenreConfig
from movielib.train.genre.data import Trailers, catalog_trailers
from movielib.train.genre.loop import EXPORT, FINE_EXPORT
from movielib.train.genre.model import load_genre
from movielib.train.tables import EmbedSummary, write_features

TABLE = "features/trailer"
MODELS = ("genre-embedding", "genre-probabilities")
COARSE = "genre-coarse-embedding"
WHOLE = -1  # the shot_idx of a whole-trailer row


class EmbedGenre:
    """Movies -> whole-trailer rows (an actor: the models are loaded once)."""

    def __init__(self, coarse: str, embedding: str, version: str, s3: S3Options | None = None):
        self.coarse, meta = load_genre(read_bytes(coarse, s3))
        self.embedder = load_genre(read_bytes(embedding, s3))[0] if embedding != coarse else self.coarse
        self.version = version
        m = self.coarse.m
        dims = {name: e["dim"] for name, e in meta["experts"].items()}
        self.layout = Trailers(m.clips * m.sequences, dims, {}, meta["genres"], seed=0, ids=True)

    @torch.no_grad()
    def __call__(self, movies: pa.Table) -> pa.Table:
        batch = self.layout(movies)
        ids = batch.pop("video_id").tolist()
        x = {k: torch.from_numpy(v) for k, v in batch.items() if k != "targets"}
        coarse = self.coarse(x)
        out = {MODELS[1]: torch.sigmoid(coarse.logits).numpy()}
        if self.embedder is self.coarse:
            out[MODELS[0]] = coarse.embedding.numpy()
        else:
            out |= {MODELS[0]: self.embedder(x).embedding.numpy(), COARSE: coarse.embedding.numpy()}
        rows = [
            {"video_id": v, "shot_idx": WHOLE, "model": name, "model_version": self.version, "embedding": e.tolist()}
            for name, values in out.items()
            for v, e in zip(ids, values)
        ]
        return pa.Table.from_pylist(rows, schema=FEATURES)


def run(cfg: EmbedGenreConfig, args=None) -> EmbedSummary:
    """`movielib embed genre RUN CATALOG`: on the cluster in RAY_ADDRESS / ray_address, else a local Ray."""
    init_ray(cfg.ray_address)
    return embed_genre(cfg.run, cfg.catalog, S3Options.from_config(cfg.s3))


def embed_genre(run: str, catalog: str, s3: S3Options | None = None, rows_per_commit: int = 4096) -> EmbedSummary:
    """Write features/trailer for every tagged video with the run's experts; returns what was written."""
    folder = run.rstrip("/")
    try:
        coarse = read_bytes(f"{folder}/{EXPORT}", s3)
    except FileNotFoundError as e:
        raise ConfigError(f"run: {run!r} holds no {EXPORT} (has `movielib train genre` finished?)") from e
    try:
        fine = read_bytes(f"{folder}/{FINE_EXPORT}", s3)
        embedding = f"{folder}/{FINE_EXPORT}"
    except FileNotFoundError:
        fine, embedding = b"", f"{folder}/{EXPORT}"
    version = f"{folder.rsplit('/', 1)[-1]}-{hashlib.sha256(coarse + fine).hexdigest()[:12]}"
    meta = torch.load(io.BytesIO(coarse), map_location="cpu", weights_only=True)["experts"]
    experts = {
        n: InputSection(table=m["table"], model=m["model"], version=m["version"] or None) for n, m in meta.items()
    }
    store = CatalogStore(catalog, s3)
    movies, _ = catalog_trailers(store, experts, None)
    ds = movies.map_batches(
        EmbedGenre,
        fn_constructor_kwargs={"coarse": f"{folder}/{EXPORT}", "embedding": embedding, "version": version, "s3": s3},
        batch_size=16,
        batch_format="pyarrow",
        **actor_pool(),
    )
    return write_features(store, TABLE, ds, version, [*MODELS, *([COARSE] if fine else [])], rows_per_commit)
