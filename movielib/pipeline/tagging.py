"""The tagging job: list the catalog, skip what is committed, stream the rest through Ray Data.

    listing (driver) -> from_items -> DecodeAndDetect -> [DetectPeople] -> [EmbedAudio] -> [EmbedText]
                     (CPU tasks)   -> ClipSceneScorer (actor pool) -> CatalogSink (Parquet + manifest)

Everything that can be wrong with the config, the model spec, SOURCE or DEST is checked
before Ray starts; no dataset is ever collected to the driver, only per-batch counts.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

import numpy as np
import ray

from movielib.config import TagConfig
from movielib.errors import ConfigError
from movielib.features.store import CatalogStore, new_run_id
from movielib.io.cache import local_path
from movielib.io.uri import S3Options, check_destination, list_source
from movielib.models.audio import LogMelStats, TorchScriptAudioEncoder
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.models.faces import PersonFaceDetector
from movielib.models.text import model_name as text_model_name
from movielib.models.text import sentence_model
from movielib.pipeline.resources import ClusterDescription, StageResources, resolve_num_gpus
from movielib.pipeline.stages import (CatalogSink, ClipSceneScorer, DecodeAndDetect, DetectPeople, EmbedAudio,
                                      EmbedText, FeatureSpec)
from movielib.shots import make_detector
from movielib.tagging.scene_score import CleanRules
from movielib.taxonomy.labels import LabelSet


@dataclass
class TagPlan:
    """Everything resolved on the driver before any work starts."""

    cfg: TagConfig
    source: str
    dest: str
    s3: S3Options
    spec: ClipSpec
    labels: LabelSet
    todo: list[dict]  # {"video_id", "uri"} still to process
    skipped: list[str]  # URIs complete in DEST already
    ignored: list[str]  # objects under SOURCE that are not videos by extension
    orphans_removed: list[str]
    committed_partial: dict[str, set[int]]
    committed_videos: set[str]
    features: list[FeatureSpec]
    audio_encoder: object | None


@dataclass
class TagSummary:
    run_id: str
    dest: str
    model: str
    random_weights: bool
    videos_listed: int
    videos_ok: int = 0
    videos_error: int = 0
    videos_skipped: int = 0
    shots: int = 0
    clean_shots: int = 0
    shots_with_faces: int = 0
    features: list[str] = field(default_factory=list)
    top_labels: list[tuple[str, int]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)  # wall clock of the run
    stage_s: collections.Counter = field(default_factory=collections.Counter)  # summed over workers

    def render(self) -> str:
        lines = []
        if self.random_weights:
            lines += ["!" * 72, f"!! RANDOM WEIGHTS: {self.model} was not trained; these tags are meaningless.",
                      "!! Pass --weights PATH|s3://URI for real tags.", "!" * 72]
        lines += [
            f"run {self.run_id}: {self.videos_listed} videos listed -> {self.videos_ok} tagged, "
            f"{self.videos_error} failed, {self.videos_skipped} skipped (already in DEST)",
            f"shots: {self.shots} written ({self.clean_shots} clean: top-1 >= 0.4, {self.shots_with_faces} with faces)",
            "features: " + (", ".join(self.features) or "none"),
            "top labels (top-1 count): " + (", ".join(f"{k} {v}" for k, v in self.top_labels) or "-"),
        ]
        lines += [f"  failed: {e['uri']}: {e['error']}" for e in self.errors]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} non-video objects, e.g. {self.ignored[0]}")
        lines.append("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings_s.items()))
        if self.stage_s and self.shots:
            lines.append("stage time (summed over workers): " + ", ".join(
                f"{k} {v:.1f}s ({self.shots / v:.1f} shots/s)" if v > 0 else f"{k} 0s" for k, v in self.stage_s.items()))
        lines.append(f"output: {self.dest}/{{videos,shots,tags}}/  manifest: {self.dest}/_manifest/")
        return "\n".join(lines)


def plan_tagging(cfg: TagConfig, source: str, dest: str) -> TagPlan:
    """Validate everything and work out what to do; raises MovielibError subclasses naming the problem."""
    s3 = S3Options.from_env(cfg.s3.endpoint_url, cfg.s3.region)
    spec = ClipSpec(cfg.model.name, cfg.model.weights, cfg.model.random_weights, s3)
    spec.validate()
    labels = LabelSet.from_file(cfg.scoring.labels, cfg.scoring.prompt) if cfg.scoring.labels \
        else LabelSet.movieclip(cfg.scoring.prompt)
    audio_encoder, features = feature_specs(cfg, spec, s3)
    listing = list_source(source, s3)
    check_destination(dest, s3)
    store = CatalogStore(dest, s3)
    committed = store.read_committed()
    orphans = store.remove_orphans(committed)
    todo, skipped, seen = [], [], set()
    for ref in listing.videos:
        vid = ref.video_id
        if vid in seen:
            continue
        seen.add(vid)
        (skipped.append(ref.uri) if committed.is_complete(vid) else todo.append({"video_id": vid, "uri": ref.uri}))
    return TagPlan(cfg=cfg, source=source, dest=dest, s3=s3, spec=spec, labels=labels, todo=todo,
                   skipped=skipped, ignored=listing.ignored, orphans_removed=orphans,
                   committed_partial=committed.partial(), committed_videos=set(committed.videos),
                   features=features, audio_encoder=audio_encoder)


def feature_specs(cfg: TagConfig, spec: ClipSpec, s3: S3Options) -> tuple[object | None, list[FeatureSpec]]:
    """Load-check the feature models on the driver and say what each features table holds."""
    f = cfg.features
    out, encoder = [], None
    if f.image:
        out.append(FeatureSpec("image", spec.arch, spec.version, spec.embed_dim))
    if f.audio:
        encoder = LogMelStats()
        if f.audio_model:
            try:
                encoder = TorchScriptAudioEncoder(local_path(f.audio_model, s3, kind="audio"))
                dim = len(encoder.embed(np.zeros(16_000, np.float32)))
            except Exception as exc:
                raise ConfigError(f"features.audio_model: cannot load {f.audio_model!r} as a TorchScript "
                                  f"audio encoder: {exc}") from exc
        else:
            dim = encoder.dim
        out.append(FeatureSpec("audio", encoder.name, encoder.version, dim))
    if f.text:
        try:
            dim = sentence_model(f.text_model).get_embedding_dimension()
        except Exception as exc:
            raise ConfigError(f"features.text_model: cannot load {f.text_model!r}: {exc}") from exc
        out.append(FeatureSpec("text", text_model_name(f.text_model), "sentence-transformers", dim))
    return encoder, out


def init_ray(address: str | None = None) -> None:
    """Join the cluster a job was submitted to (RAY_ADDRESS), or start a local Ray."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=True)


def scorer_resources(cfg: TagConfig, cluster: ClusterDescription) -> StageResources:
    """The scoring actors' reservation; `auto` GPUs are resolved against what the cluster can grow to."""
    gpus = resolve_num_gpus(cfg.scoring.num_gpus, cluster)
    return StageResources(num_cpus=cfg.scoring.num_cpus, num_gpus=gpus, memory_bytes=_gb(cfg.scoring.memory_gb))


def _gb(value: float) -> int:
    return int(value * (1 << 30))


def run_tagging(plan: TagPlan) -> TagSummary:
    """Run the Ray Data graph for `plan.todo` and return (and store) the run summary."""
    cfg, t0 = plan.cfg, time.perf_counter()
    run_id = new_run_id()
    summary = TagSummary(run_id=run_id, dest=plan.dest, model=f"{plan.spec.arch}/{plan.spec.version}",
                         random_weights=plan.spec.random_weights,
                         videos_listed=len(plan.todo) + len(plan.skipped),
                         videos_skipped=len(plan.skipped), ignored=plan.ignored,
                         features=[f"{f.modality} ({f.model}, {f.dim}-d)" for f in plan.features])
    if plan.todo:
        sink = CatalogSink(plan.dest, plan.s3, run_id, cfg.output.rows_per_file, features=plan.features,
                           skip_shots=plan.committed_partial, skip_videos=plan.committed_videos)
        build_dataset(plan).write_datasink(sink)
        fold_results(summary, sink.results)
    summary.timings_s["total"] = time.perf_counter() - t0
    # small at any catalog size: done videos are named by the batch entries, skipped ones by a sample
    CatalogStore(plan.dest, plan.s3).write_run_summary(run_id, {
        **summary.__dict__, "source": plan.source, "skipped_sample": plan.skipped[:100],
        "orphans_removed": plan.orphans_removed, "config": cfg.to_dict()})
    return summary


def build_dataset(plan: TagPlan) -> "ray.data.Dataset":
    """The graph, top to bottom; the one place where stage resources (from the config) meet Ray."""
    cfg = plan.cfg
    decode = DecodeAndDetect(
        make_detector(cfg.shots.detector, cfg.shots.threshold, cfg.shots.min_scene_len),
        FramePreprocess.for_spec(plan.spec), cfg.sampling.fps, plan.s3, cfg.decode.scratch_dir,
        cfg.decode.shots_per_block, people_max_side=cfg.people.max_side if cfg.people.enabled else None,
        audio=cfg.features.audio, subtitles=cfg.features.text, prepare_threads=cfg.decode.prepare_threads,
        people_frames_per_shot=cfg.people.frames_per_shot, max_frames_per_shot=cfg.sampling.max_frames_per_shot,
        decoder=cfg.decode.decoder)
    cluster = ClusterDescription.from_ray()
    decode_gpus = resolve_num_gpus(cfg.decode.num_gpus, cluster, field="decode.num_gpus")
    decode_res = StageResources(num_cpus=cfg.decode.num_cpus, num_gpus=decode_gpus,
                                memory_bytes=_gb(cfg.decode.memory_gb)).ray_args()
    cpu = StageResources(num_cpus=cfg.decode.num_cpus, memory_bytes=_gb(cfg.decode.memory_gb)).ray_args()
    score_res = scorer_resources(cfg, cluster)
    ds = ray.data.from_items(plan.todo, override_num_blocks=min(len(plan.todo), 10_000))
    ds = ds.map_batches(decode, batch_size=1, batch_format="numpy", **decode_res)
    # the CPU stages below share the decode stage's CPU resources, so Ray Data fuses them into its tasks
    # (with decode.num_gpus > 0 the decode stage runs apart, on GPU tasks, and these stay on CPUs)
    if cfg.people.enabled:
        ds = ds.map_batches(DetectPeople(PersonFaceDetector(max_side=cfg.people.max_side)),
                            batch_size=None, batch_format="pyarrow", **cpu)
    if plan.audio_encoder is not None:
        ds = ds.map_batches(EmbedAudio(plan.audio_encoder), batch_size=None, batch_format="pyarrow", **cpu)
    if cfg.features.text:
        ds = ds.map_batches(EmbedText(cfg.features.text_model), batch_size=None, batch_format="pyarrow", **cpu)
    return ds.map_batches(
        ClipSceneScorer,
        fn_constructor_kwargs=dict(
            spec=plan.spec, labels=plan.labels,
            rules=CleanRules(cfg.scoring.top_k, cfg.scoring.clean_threshold, cfg.scoring.multi_threshold),
            frames_per_forward=cfg.scoring.frames_per_forward, precision=cfg.model.precision,
            torch_threads=max(1, int(score_res.num_cpus)) if not score_res.num_gpus else None,
            image_features=cfg.features.image),
        batch_size=cfg.scoring.batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=cfg.scoring.min_actors, max_size=cfg.scoring.max_actors),
        **score_res.ray_args())


def fold_results(summary: TagSummary, results: list[dict]) -> None:
    top1: collections.Counter[str] = collections.Counter()
    for r in results:
        summary.videos_ok += r["videos_ok"]
        summary.videos_error += r["videos_error"]
        summary.shots += r["shots"]
        summary.clean_shots += r["clean"]
        summary.shots_with_faces += r["faces"]
        summary.errors += r["errors"]
        top1.update(r["top1"])
        if r["batch_id"]:
            summary.batches.append(r["batch_id"])
        summary.stage_s.update(r["stage_s"])
        summary.stage_s["write"] += r["write_s"]
    summary.top_labels = top1.most_common(5)
