"""The heads the papers put on frozen features, built from a name and a config like the CLIP models are.

    scene     M_scene (MovieCLIP §5.3): in -> FC 4096, dropout 0.2 -> FC 4096 -> FC n_labels
    trailer   M_trailer (MovieCLIP §5.3, MMX-Trailer-20): in -> FC 512, dropout 0.2 -> FC 512 -> FC n_genres
    mlp2      Movies2Scenes' downstream MLP: in -> FC 512 -> FC 512 -> FC out (2 hidden layers)
    linear    a linear probe (the long-range pretraining paper §4)

`width` and `dropout` override a head's defaults (what a sweep varies); ReLU between layers.
"""

from __future__ import annotations

from torch import nn

# genre: the genre model's classifier l (mmx_trailer20_genre.txt §7: FC 1024, ReLU, FC n), which `movielib train
# genre` exports in this format over its trailer embeddings
HEADS = {"scene": (4096, 0.2), "trailer": (512, 0.2), "mlp2": (512, 0.0), "linear": (0, 0.0), "genre": (1024, 0.0)}


def build_head(
    name: str, in_dim: int, out_dim: int, width: int | None = None, dropout: float | None = None
) -> nn.Module:
    """A head by name: (batch, in_dim) features -> (batch, out_dim) logits (or values, for regression)."""
    if name not in HEADS:
        raise ValueError(f"head must be one of {', '.join(HEADS)}, got {name!r}")
    default_width, default_dropout = HEADS[name]
    if name == "linear":
        return nn.Linear(in_dim, out_dim)
    w = width or default_width
    if name == "genre":
        return nn.Sequential(nn.Linear(in_dim, w), nn.ReLU(), nn.Linear(w, out_dim))
    p = default_dropout if dropout is None else dropout
    return nn.Sequential(
        nn.Linear(in_dim, w), nn.ReLU(), nn.Dropout(p), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, out_dim)
    )
