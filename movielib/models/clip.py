"""open_clip models by name, weights from a local path, an s3:// URI or a HF cache folder.

Nothing is downloaded from a model hub: a spec either names its weights or says
`random_weights` explicitly (tests and demos), and is checked on the driver before work
starts. movielib's own small configs (models/configs/*.json, e.g. `movielib-tiny-clip`)
are registered with open_clip on import, in every process that imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import pyarrow.fs as pafs
import torch
from PIL import Image
from torchvision import transforms

from movielib.errors import ConfigError
from movielib.io.cache import local_file
from movielib.io.uri import S3Options, filesystem_for

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a failed hub look-up otherwise retries for ~50 s
open_clip.add_model_config(Path(__file__).parent / "configs")

WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to build: an open_clip architecture name and where its weights are."""

    name: str = "ViT-B-32"
    weights: str | None = None
    random_weights: bool = False

    def validate(self, s3: S3Options | None = None) -> None:
        """Raise ConfigError naming the field when the model cannot be built as asked."""
        if self.name not in open_clip.list_models():
            raise ConfigError(f"model.name: unknown open_clip architecture {self.name!r} "
                              f"(e.g. ViT-B-32, ViT-B-16, ViT-L-14, movielib-tiny-clip)")
        if self.weights and self.random_weights:
            raise ConfigError("model.weights and model.random_weights are exclusive: give one")
        if not self.weights and not self.random_weights:
            raise ConfigError(
                f"model.weights: no weights given for {self.name}. Weights are never downloaded: pass "
                "--weights PATH|s3://URI|HF-CACHE-DIR (an open_clip checkpoint such as "
                "open_clip_model.safetensors), or --random-weights to run with an untrained model "
                "(tests and demos only: its tags are meaningless)")
        if self.weights:
            fs, path = filesystem_for(self.weights, s3)
            try:
                missing = fs.get_file_info(path).type == pafs.FileType.NotFound
            except OSError as exc:
                raise ConfigError(f"model.weights: cannot reach {self.weights!r}: {exc}") from exc
            if missing:
                raise ConfigError(f"model.weights: {self.weights!r} does not exist")

    @property
    def image_size(self) -> int:
        size = open_clip.get_model_config(self.name)["vision_cfg"]["image_size"]
        return int(size if isinstance(size, int) else size[0])

    @property
    def embed_dim(self) -> int:
        return int(open_clip.get_model_config(self.name)["embed_dim"])

    @property
    def version(self) -> str:
        """What identifies the weights in output rows: the file name, or 'random-init'."""
        return "random-init" if self.random_weights else os.path.basename(str(self.weights).rstrip("/"))


def resolve_weights(uri: str, s3: S3Options | None = None) -> str:
    """A local checkpoint file for `uri`: s3:// objects are cached once, folders searched for a checkpoint."""
    path = Path(local_file(uri, s3))
    if path.is_dir():
        found = [p for name in WEIGHT_FILES for p in sorted(path.rglob(name))]
        if not found:
            raise ConfigError(f"model.weights: no checkpoint ({', '.join(WEIGHT_FILES)}) under {uri!r}")
        return str(found[0])
    return str(path)


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_clip(spec: ClipSpec, s3: S3Options | None = None, device: str = "cpu", precision: str = "fp32") -> LoadedClip:
    """Build the model in eval mode on `device`, weights loaded as the spec says."""
    pretrained = None if spec.random_weights else resolve_weights(str(spec.weights), s3)
    model, _, preprocess = open_clip.create_model_and_transforms(
        spec.name, pretrained=pretrained, device=device, precision=precision)
    model.eval()
    cfg = open_clip.get_model_preprocess_cfg(model)
    return LoadedClip(model=model, tokenizer=open_clip.get_tokenizer(spec.name), image_size=spec.image_size,
                      mean=tuple(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                      std=tuple(cfg.get("std", open_clip.OPENAI_DATASET_STD)))


def frame_transform(image_size: int) -> transforms.Compose:
    """open_clip's eval preprocessing up to the pixels: bicubic resize of the short side, centre crop.

    CPU stages run this on decoded frames, so only small uint8 crops travel to the model;
    `to_model_input` finishes the job (scale to [0, 1], normalise) next to the model.
    """
    return transforms.Compose([
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
    ])


def crop_frames(frames: list[np.ndarray], image_size: int) -> np.ndarray:
    """RGB uint8 frames of any size -> (n, image_size, image_size, 3) uint8."""
    tf = frame_transform(image_size)
    return np.stack([np.asarray(tf(Image.fromarray(f))) for f in frames])


def to_model_input(crops: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(n, H, W, 3) uint8 -> (n, 3, H, W) float normalised as open_clip's ToTensor + Normalize."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s
