"""The shared base of every job's config: pydantic models with the papers' defaults, one loader.

A config comes from YAML (`--config FILE`) plus dotted CLI overrides (`--set scoring.batch_size=16`);
`load_config` turns every problem into one ConfigError naming the field
(`scoring.batch_size must be > 0, got 0`) before Ray starts or any object is read. Each job declares
its own sections as `Section` models and its whole config as a `JobConfig` beside its code
(`pipeline/config.py`, `heads/config.py`, ...); what several jobs share lives here: where S3 and Ray
are (in every JobConfig), and which CLIP model (`ModelConfig`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from movielib.errors import ConfigError

Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
UnitInterval = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    """A config section: unknown fields and wrong types are errors (an int is accepted for a float)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


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
    def _pair(self) -> S3Config:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("secret_access_key: s3.access_key_id and s3.secret_access_key go together")
        return self


class JobConfig(Section):
    """A whole job's config; printed resolved (`to_yaml`) before the job starts. Every job has `s3` (how to
    reach object storage) and `ray_address` (which cluster), printed last, after the job's own sections."""

    s3: S3Config = Field(default_factory=S3Config)
    ray_address: str | None = None  # None: RAY_ADDRESS if set, else a local Ray

    def to_dict(self) -> dict:
        data = self.model_dump(mode="json")
        return {**{k: v for k, v in data.items() if k not in SHARED}, **{k: data[k] for k in SHARED}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def console(self, verbose: bool = False) -> str:
        """What a job prints of its config before it starts: the changes, or (`verbose`) all of it."""
        return "resolved config:\n" + self.to_yaml() if verbose else self.changes()

    def changes(self) -> str:
        """The fields this config sets away from the schema's defaults, a line each: what a console shows of it
        (the whole resolved config is a run's config.yaml, and `--verbose`'s)."""
        defaults = type(self).model_construct().to_dict()  # required fields: absent there, so always shown
        changed = changed_fields(defaults, self.to_dict())
        lines = [
            f"  {name}: {json.dumps(new) if not isinstance(new, str) else new}" for name, (_, new) in changed.items()
        ]
        return "config (every other field at its default):\n" + "\n".join(lines)


class ModelConfig(Section):
    # open_clip architecture; None: an HF-style weights folder's own open_clip_config.json, else
    # ViT-B-32-quickgelu (OpenAI's CLIP ViT-B/32, MovieCLIP's model: OpenAI weights need QuickGELU)
    name: str | None = None
    weights: str | None = None  # checkpoint file, HF-style folder or s3:// URI of either; never downloaded
    random_weights: bool = False  # untrained model: tests and demos only
    # fp32: exact (the default). amp_fp16 / amp_bf16: autocast on the GPU, embeddings and softmax in fp32.
    # fp16 / bf16: low-precision weights (bf16 moves CLIPSceneScores by ~1e-2: opt-in only).
    precision: Literal["fp32", "amp_fp16", "amp_bf16", "fp16", "bf16"] = "fp32"


def changed_fields(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Dotted field -> (old, new) for every field whose value differs, nested sections flattened, in the order
    the fields appear: what a run's fingerprint and a run folder's recorded config are checked with."""
    out: dict[str, tuple[Any, Any]] = {}
    for key in dict.fromkeys([*old, *new]):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out |= changed_fields(a, b, f"{name}.")
        elif a != b:
            out[name] = (a, b)
    return out


SHARED = ("s3", "ray_address")  # JobConfig's own fields
C = TypeVar("C", bound=JobConfig)

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true/false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "literal_error": None,
    "none_required": "null",
}
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
    rank = {
        "extra_forbidden": 0,
        "value_error": 0,
        "greater_than": 1,
        "greater_than_equal": 1,
        "less_than_equal": 1,
        "less_than": 1,
        "literal_error": 3,
        "none_required": 4,
    }
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


def load_config(path: str | None, overrides: dict[str, Any] | None, schema: type[C]) -> C:
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
