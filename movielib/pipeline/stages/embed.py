"""Audio and subtitle-text embeddings per shot (features/audio, features/text)."""

from __future__ import annotations

import pyarrow as pa

from movielib.models.text import embed_texts
from movielib.pipeline.stages.columns import EMBEDDING, tensor_column, timed


class EmbedAudio:
    """Audio embedding per shot (log-mel statistics, or a TorchScript encoder); null without audio."""

    def __init__(self, encoder):
        self.encoder = encoder

    @timed("audio")
    def __call__(self, batch: pa.Table) -> pa.Table:
        has = batch.column("has_audio").to_pylist()
        clips = tensor_column(batch, "audio")
        emb = [self.encoder.embed(c).tolist() if h and len(c) else None for h, c in zip(has, clips)]
        return batch.drop_columns(["audio", "has_audio"]).append_column("audio_embedding", pa.array(emb, EMBEDDING))


class EmbedText:
    """Sentence embedding of each shot's subtitle text (all-MiniLM-L6-v2 by default); null without text."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path

    @timed("text")
    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("subtitle").to_pylist()
        idx = [i for i, t in enumerate(texts) if t]
        emb: list = [None] * len(texts)
        if idx:
            for i, e in zip(idx, embed_texts([texts[i] for i in idx], self.model_path)):
                emb[i] = e.tolist()
        return batch.append_column("text_embedding", pa.array(emb, EMBEDDING))
