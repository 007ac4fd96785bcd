"""open_clip models: the architecture from an HF-style folder's config or a name, weights from a path or URI.

Nothing is downloaded from a model hub. `model.weights` is one of
  - an HF-style folder (local or s3://) holding `open_clip_config.json` beside the weights:
    its model and preprocessing config win (open_clip's `local-dir:` loading), so OpenAI-derived
    weights get QuickGELU and their own mean/std without anyone naming them;
  - a bare checkpoint file (local or s3://, .safetensors / .bin / .pt): the architecture is
    `model.name`, by default OpenAI's ViT-B/32 (`ViT-B-32-quickgelu`, what MovieCLIP used);
  - a folder without a config (e.g. a copy of the files): its checkpoint, with `model.name`.
A checkpoint whose tensors do not fit the architecture fails on the driver, before any work,
naming both. movielib's own small configs (models/configs/*.json, e.g. `movielib-tiny-clip`)
are registered with open_clip on import, in every process that imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision import transforms

from movielib.errors import ConfigError
from movielib.io.cache import local_path
from movielib.io.uri import S3Options

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a failed hub look-up otherwise retries for ~50 s
open_clip.add_model_config(Path(__file__).parent / "configs")

DEFAULT_ARCH = "ViT-B-32-quickgelu"  # OpenAI CLIP ViT-B/32: the weights MovieCLIP's release uses
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")
PRECISIONS = {  # config name -> (open_clip precision of the weights, autocast dtype or None)
    "fp32": ("fp32", None),
    "amp_fp16": ("fp32", torch.float16),
    "amp_bf16": ("fp32", torch.bfloat16),
    "fp16": ("fp16", None),
    "bf16": ("bf16", None),
}


@dataclass(frozen=True)
class ClipSource:
    """A CLIP resolved on this machine: what open_clip builds and which local checkpoint it loads."""

    model_name: str  # an open_clip architecture, or 'local-dir:PATH' for an HF-style folder
    arch: str  # what rows and logs call the architecture
    model_cfg: dict = field(hash=False)
    preprocess_cfg: dict = field(hash=False)
    checkpoint: str | None  # None: random init


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to build: an architecture name (None: the folder's config, else OpenAI ViT-B/32) and its weights."""

    name: str | None = None
    weights: str | None = None
    random_weights: bool = False
    s3: S3Options | None = None  # how to reach s3:// weights (workers copy them to their own cache)

    def validate(self) -> ClipSource:
        """Resolve and check on the driver: the weights exist and fit the architecture; ConfigError names both."""
        if self.weights and self.random_weights:
            raise ConfigError("model.weights and model.random_weights are exclusive: give one")
        if not self.weights and not self.random_weights:
            raise ConfigError(
                f"model.weights: no weights given for {self.name or DEFAULT_ARCH}. Weights are never downloaded: pass "
                "--weights PATH|s3://URI (an HF-style folder with open_clip_config.json, or a checkpoint such as "
                "open_clip_model.safetensors), or --random-weights to run with an untrained model "
                "(tests and demos only: its tags are meaningless)"
            )
        source = self.resolve()
        if source.checkpoint:
            check_checkpoint_fits(source, self.weights or "")
        return source

    def resolve(self) -> ClipSource:
        """Where the architecture and weights come from, with s3:// copies cached on this machine."""
        if self.random_weights:
            return _named_source(self.name or DEFAULT_ARCH, None)
        try:
            local = Path(local_path(str(self.weights), self.s3))
        except OSError as exc:
            raise ConfigError(f"model.weights: cannot reach {self.weights!r}: {exc}") from exc
        if not local.exists():
            raise ConfigError(f"model.weights: {self.weights!r} does not exist")
        if local.is_file():
            return _named_source(self.name or DEFAULT_ARCH, str(local))
        configs = sorted(local.rglob(CONFIG_FILE))
        if configs:
            return self._folder_source(configs[0].parent)
        found = [p for name in WEIGHT_FILES for p in sorted(local.rglob(name))]
        if not found:
            raise ConfigError(
                f"model.weights: no {CONFIG_FILE} and no checkpoint ({', '.join(WEIGHT_FILES)}) under {self.weights!r}"
            )
        return _named_source(self.name or DEFAULT_ARCH, str(found[0]))

    def _folder_source(self, folder: Path) -> ClipSource:
        try:
            cfg = json.loads((folder / CONFIG_FILE).read_text())
            model_cfg, preprocess_cfg = cfg["model_cfg"], cfg.get("preprocess_cfg", {})
        except (ValueError, KeyError) as exc:
            raise ConfigError(
                f"model.weights: {folder / CONFIG_FILE} is not an open_clip config (needs model_cfg): {exc}"
            ) from exc
        if self.name:
            named = _named_config(self.name)
            if _canonical(named) != _canonical(model_cfg):
                raise ConfigError(
                    f"model.name {self.name!r} does not match the architecture in {folder / CONFIG_FILE} "
                    f"({_describe(model_cfg)} vs {_describe(named)}): leave model.name unset to use the "
                    "folder's, or give weights that fit it"
                )
        ckpt = next((str(folder / n) for n in WEIGHT_FILES if (folder / n).is_file()), None)
        if ckpt is None:
            raise ConfigError(
                f"model.weights: {folder} has {CONFIG_FILE} but no checkpoint ({', '.join(WEIGHT_FILES)})"
            )
        arch = self.name or registered_name(model_cfg) or f"{folder.name}-config"
        return ClipSource(
            f"local-dir:{folder}", arch, model_cfg, {**preprocess_defaults(model_cfg), **preprocess_cfg}, ckpt
        )

    @functools.cached_property
    def _config_source(self) -> ClipSource:
        """The architecture (enough for sizes and preprocessing): the named config, or the weights folder's."""
        return self.resolve() if self.weights and not self.name else _named_source(self.name or DEFAULT_ARCH, None)

    @property
    def arch(self) -> str:
        return self._config_source.arch

    @property
    def embed_dim(self) -> int:
        return int(self._config_source.model_cfg["embed_dim"])

    @property
    def version(self) -> str:
        """What identifies the weights in output rows: the file or folder name, or 'random-init'."""
        return "random-init" if self.random_weights else os.path.basename(str(self.weights).rstrip("/"))


def _named_config(name: str) -> dict:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(
            f"model.name: unknown open_clip architecture {name!r} "
            f"(e.g. ViT-B-32-quickgelu, ViT-B-16-quickgelu, ViT-L-14-quickgelu, ViT-B-32, movielib-tiny-clip)"
        )
    return cfg


def _named_source(name: str, checkpoint: str | None) -> ClipSource:
    cfg = _named_config(name)
    return ClipSource(name, name, cfg, preprocess_defaults(cfg), checkpoint)


def preprocess_defaults(model_cfg: dict) -> dict:
    """open_clip's eval preprocessing for a config: its image size, OpenAI mean/std, bicubic, shortest side."""
    vision = model_cfg.get("vision_cfg", {})
    return {"size": vision.get("image_size", 224), **{k: v for k, v in vision.items() if k in ("mean", "std")}}


def registered_name(model_cfg: dict) -> str | None:
    """The open_clip architecture whose config equals `model_cfg` (what rows call a folder's model), if any."""
    want = _canonical(model_cfg)
    return next((n for n in open_clip.list_models() if _canonical(open_clip.get_model_config(n) or {}) == want), None)


def _canonical(cfg: dict) -> str:
    return json.dumps({"quick_gelu": False, **cfg}, sort_keys=True)


def _describe(cfg: dict) -> str:
    v = cfg.get("vision_cfg", {})
    return (
        f"embed_dim {cfg.get('embed_dim')}, vision width {v.get('width')} x {v.get('layers')} layers, "
        f"patch {v.get('patch_size')}, quick_gelu {bool(cfg.get('quick_gelu'))}"
    )


def checkpoint_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a checkpoint, read without loading it (safetensors header / mmap)."""
    if path.endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {k.removeprefix("module."): tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def check_checkpoint_fits(source: ClipSource, uri: str) -> None:
    """Every tensor of the architecture is in the checkpoint with its shape, and nothing else is."""
    try:
        theirs = checkpoint_shapes(str(source.checkpoint))
    except Exception as exc:
        raise ConfigError(f"model.weights: cannot read {uri!r} as a checkpoint: {exc}") from exc
    with torch.device("meta"):
        model = open_clip.create_model(source.model_name, load_weights=False, device="meta")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = sorted(k for k in ours if k in theirs and ours[k] != theirs[k])
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    if wrong or missing or extra:
        first = (
            f"{wrong[0]} is {theirs[wrong[0]]} in the checkpoint, {ours[wrong[0]]} in the architecture"
            if wrong
            else f"{missing[0]} is missing"
            if missing
            else f"{extra[0]} is not in the architecture"
        )
        raise ConfigError(
            f"model.weights {uri!r} does not fit architecture {source.arch!r}: {len(wrong)} tensors differ in "
            f"shape, {len(missing)} missing, {len(extra)} unexpected ({first}). Name the architecture the "
            "weights were trained as with --model, or give an HF-style folder with its open_clip_config.json"
        )


@dataclass
class LoadedClip:
    model: torch.nn.Module
    tokenizer: object
    preprocess: FramePreprocess
    autocast: torch.dtype | None  # amp precisions: autocast dtype around the towers
    input_dtype: torch.dtype = torch.float32  # what images are cast to (the weights' dtype)


RANDOM_INIT_SEED = 0


@contextlib.contextmanager
def _no_random_init_warning(asked: bool):
    """open_clip warns on the root logger, in every worker, that a model without weights is random: when the config
    asked for exactly that (`random_weights`), the job's summary says it once, loudly, instead. Only that message is
    dropped: a filter on the root logger sees only the records logged on the root logger itself, and the root
    logger's level (which every logger without one of its own inherits) is left alone."""

    def drop(record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()

    root = logging.getLogger()
    if asked:
        root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def load_clip(spec: ClipSpec, device: str = "cpu", precision: str = "fp32") -> LoadedClip:
    """Build the model in eval mode on `device`, weights loaded as the spec says."""
    if precision not in PRECISIONS:
        raise ConfigError(f"model.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    weights_precision, autocast = PRECISIONS[precision]
    source = spec.resolve()
    local_dir = source.model_name.startswith("local-dir:")
    with torch.random.fork_rng(devices=[]), _no_random_init_warning(spec.random_weights):
        torch.manual_seed(RANDOM_INIT_SEED)  # random weights are one fixed model: every worker and every run agree
        model = open_clip.create_model(
            source.model_name,
            pretrained=None if local_dir else source.checkpoint,
            device=device,
            precision=weights_precision,
        )
    model.eval()
    return LoadedClip(
        model=model,
        tokenizer=open_clip.get_tokenizer(source.model_name),
        preprocess=FramePreprocess.from_cfg(open_clip.get_model_preprocess_cfg(model)),
        autocast=autocast,
        input_dtype={"fp16": torch.float16, "bf16": torch.bfloat16}.get(weights_precision, torch.float32),
    )


@dataclass(frozen=True)
class FramePreprocess:
    """open_clip's eval preprocessing, split where the pixels are final.

    CPU stages run `crop` (resize and crop exactly as open_clip's eval transform) on decoded
    frames, so only small uint8 crops travel to the model; `to_model_input` finishes the job
    (scale to [0, 1], normalise) next to the model.
    """

    size: int | tuple[int, int] = 224
    mean: tuple[float, ...] = open_clip.OPENAI_DATASET_MEAN
    std: tuple[float, ...] = open_clip.OPENAI_DATASET_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"

    @classmethod
    def from_cfg(cls, cfg: dict) -> FramePreprocess:
        keys = ("size", "mean", "std", "interpolation", "resize_mode")
        kw = {k: tuple(cfg[k]) if isinstance(cfg.get(k), list) else cfg[k] for k in keys if cfg.get(k) is not None}
        return cls(**kw)

    @classmethod
    def for_spec(cls, spec: ClipSpec) -> FramePreprocess:
        return cls.from_cfg(spec._config_source.preprocess_cfg)

    @functools.cached_property
    def _transform(self) -> transforms.Compose:
        cfg = PreprocessCfg(
            size=self.size, mean=self.mean, std=self.std, interpolation=self.interpolation, resize_mode=self.resize_mode
        )
        full = image_transform_v2(cfg, is_train=False)
        return transforms.Compose(
            [
                t
                for t in full.transforms
                if not isinstance(t, (transforms.ToTensor, transforms.Normalize))
                and callable(t)
                and getattr(t, "__name__", "") != "_convert_to_rgb"
            ]
        )

    def crop(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames of any size -> (n, H, W, 3) uint8 model-size crops."""
        return np.stack([np.asarray(self._transform(Image.fromarray(f))) for f in frames])

    def to_model_input(self, crops: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """(n, H, W, 3) uint8 -> (n, 3, H, W) float on `device`, normalised as open_clip's ToTensor + Normalize.
        The uint8 crops cross to the device first: a quarter of the bytes of float input, normalised there."""
        return normalize_frames(torch.from_numpy(np.ascontiguousarray(crops)).to(device), self.mean, self.std)


def normalize_frames(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 on the frames' device: CLIP's scale to [0, 1] and normalise."""
    x = frames.movedim(-1, -3).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, device=x.device).view(3, 1, 1)
    return (x - m) / s
