"""Audio, motion and subtitle-text embeddings per shot (features/audio, features/motion, features/text), and per
subtitle cue (cues)."""

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


class EmbedMotion:
    """Motion statistics per shot from its sampled frames (optical flow, frame differences); null for a shot of one
    sampled frame. Reads the frames column, which the scorer still needs: it is left in place."""

    def __init__(self, encoder):
        self.encoder = encoder

    @timed("motion")
    def __call__(self, batch: pa.Table) -> pa.Table:
        emb = [self.encoder.embed(f) for f in tensor_column(batch, "frames")]
        return batch.append_column(
            "motion_embedding", pa.array([None if e is None else e.tolist() for e in emb], EMBEDDING)
        )


class EmbedText:
    """Sentence embeddings (all-MiniLM-L6-v2 by default) of each shot's subtitle text (column subtitle; null
    without text) and of each cue a shot carries (column cues, features.cues), in one encoder call per batch."""

    def __init__(self, model_path: str | None = None):
        self.model_path = model_path

    @timed("text")
    def __call__(self, batch: pa.Table) -> pa.Table:
        names = batch.column_names
        shots = batch.column("subtitle").to_pylist() if "subtitle" in names else []
        cues = [[c["text"] for c in row] for row in batch.column("cues").to_pylist()] if "cues" in names else []
        texts = [t for t in shots if t] + [t for row in cues for t in row]
        found = iter(embed_texts(texts, self.model_path).tolist() if texts else [])
        if "subtitle" in names:
            emb = [next(found) if t else None for t in shots]
            batch = batch.append_column("text_embedding", pa.array(emb, EMBEDDING))
        if "cues" in names:
            batch = batch.append_column(
                "cue_embeddings", pa.array([[next(found) for _ in row] for row in cues], pa.list_(EMBEDDING))
            )
        return batch
