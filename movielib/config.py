"""Job configs: pydantic models with the papers' defaults, one loader for every job.

A config comes from YAML (`--config FILE`) plus dotted CLI overrides (`--set scoring.batch_size=16`);
`load_config` turns every problem into one ConfigError naming the field
(`scoring.batch_size must be > 0, got 0`) before Ray starts or any object is read. Each job
(tag today; pretrain, tune and serve as they arrive) declares its sections as `Section`
models and its whole config as a `JobConfig`, and loads it through `load_config`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from movielib.errors import ConfigError
from movielib.taxonomy.labels import DEFAULT_PROMPT

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """A config section: unknown fields and wrong types are errors (an int is accepted for a float)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class JobConfig(Section):
    """A whole job's config; printed resolved (`to_yaml`) before the job starts."""

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


class ModelConfig(Section):
    # open_clip architecture; None: an HF-style weights folder's own open_clip_config.json, else
    # ViT-B-32-quickgelu (OpenAI's CLIP ViT-B/32, MovieCLIP's model: OpenAI weights need QuickGELU)
    name: str | None = None
    weights: str | None = None  # checkpoint file, HF-style folder or s3:// URI of either; never downloaded
    random_weights: bool = False  # untrained model: tests and demos only
    # fp32: exact (the default). amp_fp16 / amp_bf16: autocast on the GPU, embeddings and softmax in fp32.
    # fp16 / bf16: low-precision weights (bf16 moves CLIPSceneScores by ~1e-2: opt-in only).
    precision: Literal["fp32", "amp_fp16", "amp_bf16", "fp16", "bf16"] = "fp32"


class ShotsConfig(Section):
    detector: Literal["fast", "content", "adaptive", "transnetv2"] = "fast"
    threshold: Positive | None = None  # None: the detector's default (fast/content 27, adaptive 3, transnetv2 0.5)
    min_scene_len: PositiveInt = 15  # PySceneDetect detectors and fast


class SamplingConfig(Section):
    fps: Positive = 4.0  # MovieCLIP §5.2: frames per real second sampled in each shot (>= 1 per shot)
    max_frames_per_shot: PositiveInt = 512  # a longer shot keeps evenly thinned samples (bounded memory)


class DecodeConfig(Section):
    decoder: Literal["auto", "pyav", "nvdec"] = "auto"  # auto: NVDEC when the task reserved a GPU, else PyAV
    # per decode/shot-detection task; auto: 1 when the scorers run on GPUs, 0.5 when they share the CPUs
    # (then a scorer actor holds a whole logical CPU it mostly waits on: half-CPU decode tasks keep every core busy)
    num_cpus: Literal["auto"] | Positive = "auto"
    num_gpus: NonNegative = 0.0  # > 0 with decoder nvdec/auto: decode on the reserved GPU
    memory_gb: Positive = 1.0  # reserved per decode task (imports, decoder buffers, one block of frames)
    shots_per_block: PositiveInt = 16  # shots per output block of the decode stage (bounds memory per block)
    prepare_threads: PositiveInt = 2  # threads cropping / shrinking sampled frames while decoding goes on
    scratch_dir: str | None = None  # where remote objects are copied for decoding (default: system temp)


class PeopleConfig(Section):
    enabled: bool = True  # face count, largest face fraction, person present per shot
    max_side: PositiveInt = 640  # frames are downscaled to this longest side before detection
    frames_per_shot: PositiveInt = 3  # sampled frames, evenly spread, the detector looks at per shot


class FeaturesConfig(Section):
    image: bool = True  # CLIP image embedding per shot (same forward pass as scoring)
    # opt-in: each shot's middle sampled frame as a model-size JPEG (table keyframes) and its own CLIP embedding
    # (features/keyframe): what `movielib pretrain scenes` reads, so the catalog is never decoded again
    keyframes: bool = False
    audio: bool = True  # audio embedding per shot (16 kHz mono)
    audio_model: str | None = None  # TorchScript encoder path / s3:// URI; default: log-mel statistics
    text: bool = True  # subtitle embedding per shot, from <video>.srt next to the video
    text_model: str | None = None  # sentence-transformers folder; default: packaged all-MiniLM-L6-v2


class ScoringConfig(Section):
    labels: str | None = None  # label file (one per line); default: the 179 MovieCLIP labels
    prompt: str = DEFAULT_PROMPT
    top_k: PositiveInt = 5
    clean_threshold: UnitInterval = 0.4  # MovieCLIP §5.1: clean when top-1 >= this
    multi_threshold: UnitInterval = 0.1  # labels 2..k join the multi-label set when > this
    batch_size: PositiveInt = 32  # shots per actor call
    frames_per_forward: PositiveInt = 64  # images per model forward pass
    min_actors: PositiveInt = 1
    max_actors: PositiveInt = 1
    # auto: one GPU per scoring actor whenever the cluster has or can autoscale GPU nodes, else 0
    num_gpus: Literal["auto"] | NonNegative = "auto"
    num_cpus: Positive = 1.0
    memory_gb: Positive = 2.0  # reserved per scorer actor (model + activations)

    @model_validator(mode="after")
    def _consistent(self) -> "ScoringConfig":
        if "{label}" not in self.prompt:
            raise ValueError(f"prompt: must contain '{{label}}', got {self.prompt!r}")
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors: must be <= scoring.max_actors ({self.max_actors}), got {self.min_actors}")
        if self.clean_threshold < self.multi_threshold:
            raise ValueError(f"clean_threshold: must be >= scoring.multi_threshold ({self.multi_threshold}), "
                             f"got {self.clean_threshold}")
        return self


class OutputConfig(Section):
    # a batch of whole videos is committed once it holds this many shot rows (one file per table), or
    rows_per_file: PositiveInt = 2048
    commit_every_s: Positive = 60.0  # once its oldest complete video has waited this long: a crash loses minutes
    chunk_videos: PositiveInt = 1000  # videos per bounded Ray Data execution (driver memory stays flat)
    # a run's claim on a video lapses this long after its last renewal (a run on the same machine whose
    # process is gone loses its claims at once)
    claim_ttl_s: Positive = 600.0
    # DEST written with other output settings (model, weights, detector, sampling, labels, ...):
    # refuse (naming the changed fields), or write a separate catalog under DEST/fp-<fingerprint>
    on_change: Literal["refuse", "alongside"] = "refuse"
    compact: bool = False  # at the end of a run that wrote something: small files into large ones (Delta optimize)


class FaultConfig(Section):
    """A fault to inject (reliability tests and drills; none by default): what happens, on which video."""

    # SIGSEGV / SIGKILL (an OOM kill) / sleep / allocate / OSError reading it / a bug
    kind: Literal["crash", "kill", "hang", "memory", "io_error", "error"]
    video: str  # fires on videos whose URI contains this
    attempts: PositiveInt | None = None  # only on the first N attempts at the video (None: every attempt)


class ReliabilityConfig(Section):
    # attempts at a video whose worker dies on it (native crash, out-of-memory kill, hang) before the video
    # becomes one error row naming what happened
    max_attempts: PositiveInt = 3
    video_timeout_s: Positive = 14400.0  # a video still in its decode task after this long hangs: the worker stops
    memory_limit_gb: Positive = 8.0  # a decode worker past this RSS while on a video stops (the video is counted)
    io_attempts: PositiveInt = 5  # reading a video: attempts on transient I/O errors (throttling, resets, timeouts)
    backoff_s: Positive = 1.0  # the first wait between them; doubles, with jitter, up to 30 s
    faults: list[FaultConfig] = Field(default_factory=list)


class S3Config(Section):
    endpoint_url: str | None = None  # S3-compatible endpoint, e.g. http://127.0.0.1:9000; default AWS_ENDPOINT_URL
    region: str | None = None  # default AWS_REGION / AWS_DEFAULT_REGION / us-east-1
    # credentials: default the usual AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles);
    # given here they are never printed (the resolved config shows '**********')
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None
    max_attempts: PositiveInt = 10  # per request, with exponential backoff (SlowDown, 5xx, resets, timeouts)
    connect_timeout_s: Positive = 5.0
    request_timeout_s: Positive = 60.0

    @model_validator(mode="after")
    def _pair(self) -> "S3Config":
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("secret_access_key: s3.access_key_id and s3.secret_access_key go together")
        return self


class TagConfig(JobConfig):
    """`movielib tag`: what to run, with which model, on what resources."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    shots: ShotsConfig = Field(default_factory=ShotsConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    people: PeopleConfig = Field(default_factory=PeopleConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    s3: S3Config = Field(default_factory=S3Config)
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)
    ray_address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray


C = TypeVar("C", bound=JobConfig)

_TYPE_NAMES = {"string_type": "a string", "int_type": "an integer", "float_type": "a number",
               "bool_type": "true/false", "dict_type": "a mapping", "model_type": "a mapping",
               "literal_error": None, "none_required": "null"}
_UNION_ARMS = ("str", "int", "float", "bool", "none")  # steps pydantic adds to a location inside `X | Y`


def _field_path(loc: tuple) -> list[str]:
    """The config field an error location names, without pydantic's union-arm and validator steps."""
    return [str(p) for p in loc if isinstance(p, int) or str(p).isidentifier() and p not in _UNION_ARMS]


def _message(err: dict, schema: type[JobConfig]) -> str:
    """One pydantic error as 'field.path must ..., got value'."""
    loc = _field_path(err["loc"])
    field = ".".join(loc)
    kind, got = err["type"], err.get("input")
    if kind == "extra_forbidden":
        parent = schema
        for part in loc[:-1]:
            parent = parent.model_fields[part].annotation if isinstance(parent, type) else parent
        known = ", ".join(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else "?"
        return f"unknown config field '{field}' (known: {known})"
    if kind == "value_error":  # a model validator: its message starts with the field it names
        msg = str(err["msg"]).removeprefix("Value error, ")
        sub, _, rest = msg.partition(": ")
        return f"{'.'.join([*loc, sub])} {rest}"
    if kind in ("greater_than", "greater_than_equal", "less_than_equal", "less_than"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(err["ctx"].values()))
        return f"{field} must be {op} {bound}, got {got!r}"
    if kind == "literal_error":
        return f"{field} must be {err['ctx']['expected']}, got {got!r}"
    return f"{field} must be {_TYPE_NAMES.get(kind) or err['msg'].lower()}, got {got!r}"


def _collapse_unions(errors: list[dict]) -> list[dict]:
    """A value that fits no arm of `X | None` yields one error per arm: keep the most telling one."""
    by_field: dict[tuple, dict] = {}
    rank = {"extra_forbidden": 0, "value_error": 0, "greater_than": 1, "greater_than_equal": 1, "less_than_equal": 1,
            "less_than": 1, "literal_error": 3, "none_required": 4}
    for err in errors:
        key = tuple(_field_path(err["loc"]))
        if key not in by_field or rank.get(err["type"], 2) < rank.get(by_field[key]["type"], 2):
            by_field[key] = err
    return list(by_field.values())


def build_config(schema: type[C], data: Any) -> C:
    """Validate a mapping against a job's schema; ConfigError names the first bad field."""
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping of sections, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        errors = _collapse_unions(exc.errors())
        raise ConfigError("; ".join(_message(e, schema) for e in errors[:3])) from None


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                schema: type[C] = TagConfig) -> C:  # type: ignore[assignment]
    """A job's config from a YAML file (optional) with dotted overrides ({'model.weights': ...}) on top."""
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
    return build_config(schema, data)
