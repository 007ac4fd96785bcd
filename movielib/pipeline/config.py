"""`movielib tag` config: the tagging job's sections, with MovieCLIP's defaults (the shared base is movielib.config)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from movielib.config import (
    JobConfig,
    ModelConfig,
    NonNegative,
    Positive,
    PositiveInt,
    Section,
    UnitInterval,
    load_config,
)
from movielib.taxonomy.labels import DEFAULT_PROMPT

__all__ = ["TagConfig", "load_tag_config"]


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
    # opt-in: every label's CLIPSceneScore per shot (features/scores; the tags table keeps the top k): the scene
    # expert of `movielib train genre` when no scene pretraining ran
    scores: bool = False
    # opt-in: optical-flow and frame-difference statistics of each shot's sampled frames (features/motion): the
    # motion expert of `movielib train genre`
    motion: bool = False
    # opt-in: every subtitle cue as a row of table cues (times, text, its own text_model embedding): the language
    # tokens with times `movielib pretrain multimodal` aligns to shots
    cues: bool = False


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
    def _consistent(self) -> ScoringConfig:
        if "{label}" not in self.prompt:
            raise ValueError(f"prompt: must contain '{{label}}', got {self.prompt!r}")
        if self.min_actors > self.max_actors:
            raise ValueError(f"min_actors: must be <= scoring.max_actors ({self.max_actors}), got {self.min_actors}")
        if self.clean_threshold < self.multi_threshold:
            raise ValueError(
                f"clean_threshold: must be >= scoring.multi_threshold ({self.multi_threshold}), "
                f"got {self.clean_threshold}"
            )
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
    reliability: ReliabilityConfig = Field(default_factory=ReliabilityConfig)


def load_tag_config(path: str | None = None, overrides: dict[str, Any] | None = None) -> TagConfig:
    """The tagging job's config from a YAML file (optional) with dotted overrides on top."""
    return load_config(path, overrides, TagConfig)
