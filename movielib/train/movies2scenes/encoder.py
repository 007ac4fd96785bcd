"""The scene encoder (Movies2Scenes §3.2.1): a CLIP ViT that reads n shots x k frames at once.

Every frame is cut into the tower's N patches; the n*k frames' patches become one token sequence
(frame after frame) behind the class token. The tower's N patch position embeddings, laid out
on their g x g grid, are 2-D interpolated to a (g * n * k) x g grid (the frames stacked along
the height), so the pretrained positions stretch over the whole scene; the class token keeps
its own. With n * k = 1 the interpolation is the identity and the encoder is the CLIP image
tower itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def interpolate_positions(positional: torch.Tensor, frames: int) -> torch.Tensor:
    """(1 + N, D) class + patch position embeddings -> (1 + N * frames, D), bicubic on the patch grid."""
    cls, patches = positional[:1], positional[1:]
    side = math.isqrt(patches.shape[0])
    if side * side != patches.shape[0]:
        raise ValueError(f"position embeddings of {patches.shape[0]} patches are not a square grid")
    if frames == 1:
        return positional
    grid = patches.reshape(side, side, -1).permute(2, 0, 1)[None]  # (1, D, g, g)
    grid = F.interpolate(grid.float(), size=(side * frames, side), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid[0].permute(1, 2, 0).reshape(side * frames * side, -1).to(positional.dtype)])


class SceneEncoder(nn.Module):
    """f(scene): (B, n * k, 3, H, W) frames -> (B, out) embedding, through an open_clip VisionTransformer."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        for part in ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer"):
            if not hasattr(tower, part):
                raise TypeError(
                    f"SceneEncoder needs an open_clip VisionTransformer (no {part!r} on {type(tower).__name__})"
                )
        self.tower = tower

    @property
    def output_dim(self) -> int:
        return int(self.tower.output_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        t = self.tower
        b, n = frames.shape[:2]
        x = t.conv1(frames.flatten(0, 1))  # (B * n, D, g, g)
        x = x.flatten(2).transpose(1, 2).reshape(b, n * x.shape[-1] * x.shape[-2], -1)  # (B, n * N, D)
        cls = t.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + interpolate_positions(t.positional_embedding, n).to(x.dtype)
        x = t.ln_pre(t.patch_dropout(x))
        pooled, _ = t._pool(t.transformer(x))
        return pooled @ t.proj if t.proj is not None else pooled


def tower_config(model_cfg: dict) -> dict:
    """What rebuilds an open_clip image tower without its weights or text side (saved with an exported encoder)."""
    return {
        "embed_dim": model_cfg["embed_dim"],
        "vision_cfg": model_cfg["vision_cfg"],
        "quick_gelu": bool(model_cfg.get("quick_gelu", False)),
    }


def build_tower(config: dict) -> nn.Module:
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    return _build_vision_tower(config["embed_dim"], CLIPVisionCfg(**config["vision_cfg"]), config["quick_gelu"])


def load_scene_encoder(data: bytes) -> tuple[SceneEncoder, dict]:
    """An exported scene encoder (scene_encoder.pt: a plain torch file, no DeepSpeed) and its metadata; loaded with
    weights_only: a run folder's file never runs code."""
    import io

    saved = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    encoder = SceneEncoder(build_tower(saved["tower"]))
    encoder.load_state_dict(saved["state_dict"])
    return encoder.eval(), {k: v for k, v in saved.items() if k != "state_dict"}
