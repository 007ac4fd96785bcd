"""`movielib serve` config: the models, the request limits, and each deployment's replicas, batching and resources.

The same values make the Ray Serve config file (`serve run` / `serve deploy` / a RayService's
serveConfigV2): `serve_config(cfg)` writes each deployment's autoscaling, max_ongoing_requests,
resources and batching (as user_config) into it.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from movielib.config import JobConfig, ModelConfig, NonNegative, Positive, PositiveInt, Section, UnitInterval
from movielib.taxonomy.labels import DEFAULT_PROMPT


class DeploymentSection(Section):
    """One deployment: replicas (autoscaling bounds), requests in flight, dynamic batching, resources."""

    min_replicas: int = Field(default=1, ge=0)
    max_replicas: PositiveInt = 1
    target_ongoing_requests: Positive = 2.0  # autoscaling's target per replica
    # a @serve.batch never fills past this: it must be >= max_batch_size for batches to fill
    max_ongoing_requests: PositiveInt = 16
    max_batch_size: PositiveInt = 8
    batch_wait_timeout_s: NonNegative = 0.01
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


class TaggerSection(Section):
    labels: str | None = None  # label file; default the 179 MovieCLIP labels
    prompt: str = DEFAULT_PROMPT
    top_k: PositiveInt = 5
    clean_threshold: UnitInterval = 0.4
    multi_threshold: UnitInterval = 0.1
    fps: Positive = 4.0  # a clip is cut into shots and sampled as the batch job does
    max_frames: PositiveInt = 256  # frames one request may carry (a list of frames, or a clip's samples)


class ServeConfig(JobConfig):
    """`movielib serve`: CLIP encoders, the scene tagger and exported heads behind one HTTP ingress."""

    model: ModelConfig = Field(default_factory=ModelConfig)
    tagger: TaggerSection = Field(default_factory=TaggerSection)
    heads: dict[str, str] = Field(default_factory=dict)  # name -> head.pt path / s3:// URI (movielib tune heads)
    max_body_mb: Positive = 20.0  # larger requests get 413
    host: str = "127.0.0.1"
    port: PositiveInt = 8000
    ingress: DeploymentSection = Field(
        default_factory=lambda: DeploymentSection(max_ongoing_requests=64, max_batch_size=1)
    )
    text: DeploymentSection = Field(default_factory=DeploymentSection)
    image: DeploymentSection = Field(default_factory=DeploymentSection)
    scenes: DeploymentSection = Field(default_factory=DeploymentSection)
    head: DeploymentSection = Field(default_factory=DeploymentSection)
