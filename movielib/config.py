"""The tagging job's config: dataclasses with the papers' defaults, validated at load.

A config comes from YAML (`--config FILE`) and CLI overrides; every problem is reported
as a ConfigError that names the field (`scoring.batch_size must be > 0, got 0`), before
Ray starts or any object is read.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from movielib.errors import ConfigError
from movielib.shots import DETECTORS
from movielib.taxonomy.labels import DEFAULT_PROMPT


@dataclass
class ModelConfig:
    name: str = "ViT-B-32"  # open_clip architecture; MovieCLIP's release uses CLIP ViT-B/32
    weights: str | None = None  # local path, s3:// URI or HF cache folder; never downloaded
    random_weights: bool = False  # untrained model: tests and demos only
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16 | fp16


@dataclass
class ShotsConfig:
    detector: str = "fast"  # fast (ContentDetector's math, ffmpeg-decoded) | content | adaptive (PySceneDetect) | transnetv2
    threshold: float | None = None  # None: the detector's default (fast/content 27, adaptive 3, transnetv2 0.5)
    min_scene_len: int = 15  # PySceneDetect detectors


@dataclass
class PeopleConfig:
    enabled: bool = True  # face count, largest face fraction, person present per shot
    max_side: int = 640  # frames are downscaled to this longest side before detection
    frames_per_shot: int = 3  # sampled frames, evenly spread, the detector looks at per shot


@dataclass
class FeaturesConfig:
    image: bool = True  # CLIP image embedding per shot (same forward pass as scoring)
    audio: bool = True  # audio embedding per shot (16 kHz mono)
    audio_model: str | None = None  # TorchScript encoder path / s3:// URI; default: log-mel statistics
    text: bool = True  # subtitle embedding per shot, from <video>.srt next to the video
    text_model: str | None = None  # sentence-transformers folder; default: packaged all-MiniLM-L6-v2


@dataclass
class SamplingConfig:
    fps: float = 4.0  # MovieCLIP §5.2: frames per second sampled in each shot (>= 1 per shot)


@dataclass
class ScoringConfig:
    labels: str | None = None  # label file (one per line); default: the 179 MovieCLIP labels
    prompt: str = DEFAULT_PROMPT
    top_k: int = 5
    clean_threshold: float = 0.4
    multi_threshold: float = 0.1
    batch_size: int = 32  # shots per actor call
    frames_per_forward: int = 64  # images per model forward pass
    min_actors: int = 1
    max_actors: int = 1
    num_gpus: str | float = "auto"  # auto: 1 per actor when the cluster has GPUs, else 0
    num_cpus: float = 1.0
    memory_gb: float = 2.0  # reserved per scorer actor (model + activations)


@dataclass
class DecodeConfig:
    num_cpus: float = 1.0  # per decode/shot-detection task
    memory_gb: float = 1.0  # reserved per decode task (worker imports, decoder buffers, one block of frames)
    shots_per_block: int = 16  # shots per output block of the decode stage (bounds memory per block)
    prepare_threads: int = 2  # threads cropping / shrinking sampled frames while decoding goes on
    scratch_dir: str | None = None  # where remote objects are copied for decoding (default: system temp)


@dataclass
class OutputConfig:
    rows_per_file: int = 2048  # at most this many shots per committed batch (many videos per Parquet file)


@dataclass
class S3Config:
    endpoint_url: str | None = None  # S3-compatible endpoint, e.g. http://127.0.0.1:9000; default AWS_ENDPOINT_URL
    region: str | None = None  # default AWS_REGION / AWS_DEFAULT_REGION / us-east-1


@dataclass
class TagConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    s3: S3Config = field(default_factory=S3Config)
    ray_address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray

    def validate(self) -> "TagConfig":
        _check(self.shots.detector in DETECTORS, "shots.detector",
               f"must be one of {', '.join(DETECTORS)}, got {self.shots.detector!r}")
        _check(self.shots.threshold is None or self.shots.threshold > 0, "shots.threshold",
               f"must be > 0 (or null for the detector's default), got {self.shots.threshold}")
        _positive(self, "people.max_side", "people.frames_per_shot", "shots.min_scene_len", "sampling.fps", "scoring.top_k",
                  "scoring.batch_size", "scoring.frames_per_forward", "scoring.min_actors",
                  "scoring.max_actors", "scoring.memory_gb", "decode.num_cpus", "decode.memory_gb", "decode.prepare_threads", "decode.shots_per_block", "output.rows_per_file")
        for name in ("clean_threshold", "multi_threshold"):
            v = getattr(self.scoring, name)
            _check(0.0 <= v <= 1.0, f"scoring.{name}", f"must be within [0, 1], got {v}")
        _check(self.scoring.min_actors <= self.scoring.max_actors, "scoring.min_actors",
               f"must be <= scoring.max_actors ({self.scoring.max_actors}), got {self.scoring.min_actors}")
        g = self.scoring.num_gpus
        _check(g == "auto" or (isinstance(g, (int, float)) and g >= 0), "scoring.num_gpus",
               f"must be 'auto' or a number >= 0, got {g!r}")
        _check(self.model.precision in ("auto", "fp32", "bf16", "fp16"), "model.precision",
               f"must be auto, fp32, bf16 or fp16, got {self.model.precision!r}")
        _check("{label}" in self.scoring.prompt, "scoring.prompt", f"must contain '{{label}}', got {self.scoring.prompt!r}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _check(ok: bool, name: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{name} {msg}")


def _positive(cfg: TagConfig, *names: str) -> None:
    for name in names:
        section, key = name.split(".")
        v = getattr(getattr(cfg, section), key)
        _check(v > 0, name, f"must be > 0, got {v}")


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check `value` against a field's type hint; ints are accepted for floats."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arm in args:
            try:
                return _coerce(value, arm, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name} must be {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if hint is type(None):
        if value is None:
            return None
    elif hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif hint in (str, bool) and isinstance(value, hint):
        return value
    raise ConfigError(f"{name} must be {_type_name(hint)}, got {value!r}")


def _type_name(hint: Any) -> str:
    return {type(None): "null", str: "a string", int: "an integer", float: "a number", bool: "true/false"}.get(hint, str(hint))


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config field '{where}{unknown[0]}' (known: {', '.join(names)})")
    kwargs = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        hint = hints[key]
        kwargs[key] = _build(hint, value, name) if dataclasses.is_dataclass(hint) else _coerce(value, hint, name)
    return cls(**kwargs)


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> TagConfig:
    """Config from a YAML file (optional) with dotted overrides ({'model.weights': ...}) applied on top."""
    data: dict = {}
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except OSError as exc:
            raise ConfigError(f"--config: cannot read {path!r}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config: {path!r} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"--config: {path!r} must hold a mapping of sections, got {type(data).__name__}")
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config field {p!r} must be a mapping")
        node[leaf] = value
    return _build(TagConfig, data, "").validate()
