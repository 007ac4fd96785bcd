"""`movielib serve` config: the models, the request limits, and each deployment's replicas, batching and resources.

The same values make the Ray Serve config file (`serve run` / `serve deploy` / a RayService's serveConfigV2):
`serve_config(cfg)` writes each deployment's autoscaling, max_ongoing_requests, max_queued_requests,
resources and batching (as user_config) into it. Every limit a request can hit is here, so an operator
sizes the service in one file and a client reads the limit's name in the 4xx / 503 that enforces it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from movielib.config import JobConfig, ModelConfig, NonNegative, Positive, PositiveInt, Section, UnitInterval
from movielib.taxonomy.labels import DEFAULT_PROMPT

# Demuxers an upload may be read with (ffmpeg names): no playlists (hls, concat), no devices, no images.
CLIP_FORMATS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts")


class DeploymentSection(Section):
    """One deployment: replicas (autoscaling bounds), requests in flight and queued, dynamic batching, resources."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: PositiveInt = 1
    target_ongoing_requests: Positive = 2.0  # autoscaling's target per replica
    # a @serve.batch never fills past this: it must be >= max_batch_size for batches to fill
    max_ongoing_requests: PositiveInt = 16
    # requests waiting at each caller (the proxy, the ingress) past max_ongoing_requests; more get 503 + Retry-After
    max_queued_requests: PositiveInt = 64
    max_batch_size: PositiveInt = 8
    # 0: a lone request runs at once; under load the requests that queued while a batch ran form the next one
    batch_wait_timeout_s: NonNegative = 0.0
    num_cpus: Positive = 1.0
    num_gpus: NonNegative = 0.0  # a GPU (or a share of one) per replica

    @model_validator(mode="after")
    def _fits(self) -> DeploymentSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas: must be <= max_replicas ({self.max_replicas}), got {self.min_replicas}")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests: must be >= max_batch_size ({self.max_batch_size}): a batch never "
                f"fills past it, got {self.max_ongoing_requests}"
            )
        return self


def _light(num_cpus: float, **kw) -> DeploymentSection:
    """A deployment that mostly waits (the ingress, small heads): a share of a CPU, so a laptop fits them all."""
    return DeploymentSection(num_cpus=num_cpus, **kw)


class TaggerSection(Section):
    labels: str | None = None  # label file; default the 179 MovieCLIP labels
    prompt: str = DEFAULT_PROMPT
    top_k: PositiveInt = 5
    clean_threshold: UnitInterval = 0.4
    multi_threshold: UnitInterval = 0.1
    fps: Positive = 4.0  # a clip is cut into shots and sampled as the batch job does
    max_frames: PositiveInt = 256  # frames one request may carry (a list of frames, or a clip's samples)


class LimitsSection(Section):
    """What one request may ask: each is checked before the work it bounds and answered with a 4xx naming it."""

    max_body_mb: Positive = 20.0  # every route, counted while the body streams in (413)
    max_texts: PositiveInt = 64  # texts per /embed/text request (413)
    max_text_chars: PositiveInt = 1000  # characters per text (413)
    max_images: PositiveInt = 16  # images per /embed/image request (413)
    max_pixels: PositiveInt = 25_000_000  # an image's width x height, read from its header before decoding (413)
    max_rows: PositiveInt = 1024  # feature rows per /heads request (413)
    max_clip_s: Positive = 120.0  # a clip's duration, probed before decoding (413)
    max_clip_pixels: PositiveInt = 3840 * 2160  # a clip's frame width x height (413)
    max_clip_streams: PositiveInt = 4  # streams in one clip container (413)
    clip_formats: list[str] = Field(default_factory=lambda: list(CLIP_FORMATS))  # demuxers a clip may use (415)
    request_timeout_s: Positive = 30.0  # the model call's deadline (504); the proxy ends a request at +5 s
    retry_after_s: PositiveInt = 1  # the Retry-After a 503 carries when a queue is full


class UriSection(Section):
    """`POST /tag {"uri": "s3://..."}`: off unless turned on, and then only under the prefixes listed."""

    enabled: bool = False
    allow: list[str] = Field(default_factory=list)  # s3://bucket/prefix/ the replica may read
    max_mb: Positive = 200.0  # the object's size, checked before the download (413)

    @model_validator(mode="after")
    def _prefixes(self) -> UriSection:
        if self.enabled and not self.allow:
            raise ValueError("allow: name the s3://bucket/prefix/ clips may be read from when uri.enabled is true")
        for prefix in self.allow:
            bucket = prefix.removeprefix("s3://").split("/", 1)[0]
            if not prefix.startswith("s3://") or not bucket:
                raise ValueError(f"allow: {prefix!r} is not an s3://bucket/prefix")
        return self

    def allows(self, uri: str) -> bool:
        """True when `uri` is an s3:// key under one of the prefixes (no `..` climbing out of one)."""
        if not self.enabled or not uri.startswith("s3://") or "/../" in f"{uri}/" or "\\" in uri:
            return False
        return any(uri.startswith(p if p.endswith("/") else f"{p}/") or uri == p for p in self.allow)


class AuthSection(Section):
    """An optional API key: every route but /healthz then needs `Authorization: Bearer <key>`."""

    api_key_env: str | None = None  # the environment variable holding the key (a Secret on KubeRay)


class ServeConfig(JobConfig):
    """`movielib serve`: CLIP encoders, the scene tagger and exported heads behind one HTTP ingress."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    tagger: TaggerSection = Field(default_factory=TaggerSection)
    heads: dict[str, str] = Field(default_factory=dict)  # name -> head.pt path / s3:// URI (movielib tune heads)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    uri: UriSection = Field(default_factory=UriSection)
    auth: AuthSection = Field(default_factory=AuthSection)
    host: str = "127.0.0.1"
    port: PositiveInt = 8000
    # defaults that fit a 2-core laptop (1.95 CPUs): the tagger and the image encoder do the work
    ingress: DeploymentSection = Field(
        default_factory=lambda: _light(0.1, max_ongoing_requests=64, max_queued_requests=128, max_batch_size=1)
    )
    text: DeploymentSection = Field(default_factory=lambda: _light(0.25))
    image: DeploymentSection = Field(default_factory=lambda: _light(0.5))
    scenes: DeploymentSection = Field(default_factory=DeploymentSection)
    head: DeploymentSection = Field(default_factory=lambda: _light(0.1))

    def deployments(self) -> dict[str, DeploymentSection]:
        """Each deployment's section by its config field name (the names its errors use)."""
        return {"ingress": self.ingress, "text": self.text, "image": self.image, "scenes": self.scenes,
                "head": self.head}  # fmt: skip
