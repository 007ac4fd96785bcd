"""The tagging job: list the catalog, skip what DEST holds, stream the rest through Ray Data in chunks.

    listing (Arrow) -> todo chunks (Parquet) -> per chunk: claim -> read_parquet -> DecodeAndDetect
        -> [DetectPeople] -> [EmbedAudio] -> [EmbedMotion] -> [EmbedText] -> ClipSceneScorer (actor pool)
        -> CommitterSink -> Committer actor (whole videos, Delta commits every N rows or T seconds)

Everything that can be wrong with the config, the model spec, SOURCE or DEST is checked
before Ray starts; no dataset is ever collected to the driver, only per-chunk counts. A big
catalog runs as a sequence of bounded executions (`output.chunk_videos` videos each), so the
driver's memory does not grow with it.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from movielib.errors import ConfigError
from movielib.io.cache import local_path
from movielib.io.uri import S3Options, check_destination, check_endpoint, filesystem_for, is_s3, iter_source
from movielib.models.audio import LogMelStats, TorchScriptAudioEncoder
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.models.faces import PersonFaceDetector
from movielib.models.motion import FlowStats
from movielib.models.text import model_name as text_model_name
from movielib.models.text import sentence_model
from movielib.pipeline.attempts import AttemptLedger, VideoGuard
from movielib.pipeline.commit import Committer, CommitterSink, Tally, add_tally
from movielib.pipeline.config import TagConfig
from movielib.pipeline.fingerprint import changes, fingerprint, output_fields
from movielib.pipeline.resources import (
    ClusterDescription,
    StageResources,
    decode_concurrency,
    resolve_decode_cpus,
    resolve_num_gpus,
)
from movielib.pipeline.stages import (
    ClipSceneScorer,
    DecodeAndDetect,
    DetectPeople,
    EmbedAudio,
    EmbedMotion,
    EmbedText,
    FeatureSpec,
)
from movielib.pipeline.todo import Todo, plan_todo, read_chunk, remove_chunks
from movielib.runtime import init_ray
from movielib.shots import make_detector
from movielib.store import CatalogStore, new_run_id
from movielib.store.claims import claim, dead_runs, release, this_process
from movielib.tagging.scene_score import CleanRules
from movielib.taxonomy.labels import LabelSet

log = logging.getLogger(__name__)
EXIT_RETRY = 75  # sysexits' EX_TEMPFAIL: some videos failed for reasons of the moment; running again retries them


@dataclass
class TagPlan:
    """Everything resolved on the driver before any work starts."""

    cfg: TagConfig
    source: str
    dest: str
    s3: S3Options
    spec: ClipSpec
    labels: LabelSet
    run_id: str
    todo: Todo  # chunks of (video_id, uri) still to tag, as Parquet files under DEST/_movielib/runs/<run_id>/
    fingerprint: dict
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
    videos_retryable: int = 0  # failed for reasons not their own: no videos row, a re-run tries them again
    videos_skipped: int = 0
    videos_held: int = 0  # claimed by another live run: left to it
    shots: int = 0
    clean_shots: int = 0
    shots_with_faces: int = 0
    commits: int = 0
    debris_rows_removed: int = 0
    features: list[str] = field(default_factory=list)
    top_labels: list[tuple[str, int]] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)  # a sample; the full list: videos where status = 'error'
    retryable: list[dict] = field(default_factory=list)  # a sample
    decode_peak_rss_mb: float = 0.0  # the most a decode worker held resident while on one video
    videos_retried: int = 0  # videos whose worker was lost at least once (a crash, a kill, a hang) and tried again
    ignored: list[str] = field(default_factory=list)  # a sample of the objects that are not videos
    ignored_count: int = 0
    held_by: dict[str, int] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)  # wall clock of the run
    stage_s: collections.Counter = field(default_factory=collections.Counter)  # wall, summed over workers
    stage_cpu_s: collections.Counter = field(default_factory=collections.Counter)  # CPU, summed over workers
    top1: collections.Counter = field(default_factory=collections.Counter)

    def render(self) -> str:
        lines = []
        if self.random_weights:
            lines += [
                "!" * 72,
                f"!! RANDOM WEIGHTS: {self.model} was not trained; these tags are meaningless.",
                "!! Pass --weights PATH|s3://URI for real tags.",
                "!" * 72,
            ]
        lines += [
            f"run {self.run_id}: {self.videos_listed} videos listed -> {self.videos_ok} tagged, "
            f"{self.videos_error} failed, "
            + (f"{self.videos_retryable} to retry, " if self.videos_retryable else "")
            + f"{self.videos_skipped} skipped (already in DEST)"
            + (f", {self.videos_held} left to live runs ({', '.join(self.held_by)})" if self.videos_held else ""),
            f"shots: {self.shots} written in {self.commits} commits ({self.clean_shots} clean: top-1 >= 0.4, "
            f"{self.shots_with_faces} with faces)",
            "features: " + (", ".join(self.features) or "none"),
            "top labels (top-1 count): " + (", ".join(f"{k} {v}" for k, v in self.top_labels) or "-"),
        ]
        lines += [f"  failed: {e['uri']}: {e['error']}" for e in self.errors[:20]]
        if self.videos_error > 20:
            lines.append(f"  ... {self.videos_error - 20} more: `status = 'error'` rows of {self.dest}/videos")
        if self.videos_retryable:
            lines.append(
                f"{self.videos_retryable} videos failed for reasons not their own (store, workers): "
                f"not recorded as done; run the same command again to retry them"
            )
            lines += [f"  retryable: {e['uri']}: {e['error']}" for e in self.retryable[:20]]
        if self.videos_retried:
            lines.append(f"{self.videos_retried} videos lost their worker once or more and were tried again")
        if self.debris_rows_removed:
            lines.append(f"removed {self.debris_rows_removed} rows a crashed run had left of videos it never finished")
        if self.ignored:
            lines.append(f"ignored {self.ignored_count} non-video objects, e.g. {self.ignored[0]}")
        lines.append(
            "time: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings_s.items())
            + (f"; decode worker peak RSS {self.decode_peak_rss_mb:.0f} MiB" if self.decode_peak_rss_mb else "")
        )
        if self.stage_s and self.shots:
            lines.append(
                "stage time (summed over workers): "
                + ", ".join(
                    f"{k} {v:.1f}s ({self.shots / v:.1f} shots/s)" if v > 0 else f"{k} 0s"
                    for k, v in self.stage_s.items()
                )
            )
            lines.append(
                "stage CPU per shot: "
                + ", ".join(f"{k} {1000 * v / self.shots:.0f} ms" for k, v in self.stage_cpu_s.items())
            )
        lines.append(
            f"output: Delta tables {self.dest}/{{videos,shots,tags,features/*"
            + "".join(f",{t}" for t in ("keyframes", "cues") if any(f.startswith(t[:-1] + " ") for f in self.features))
            + "}  "
            f"summary: {self.dest}/_movielib/runs/{self.run_id}.json"
        )
        return "\n".join(lines)

    @property
    def exit_code(self) -> int:
        """75 (sysexits' EX_TEMPFAIL) when videos failed for reasons of the moment: running again retries them."""
        return EXIT_RETRY if self.videos_retryable else 0

    def fold(self, part: Tally) -> None:
        """Add one chunk's tally (from the Committer)."""
        add_tally(self, part)
        self.top_labels = self.top1.most_common(5)


def run(cfg: TagConfig, args) -> TagSummary:
    """`movielib tag SOURCE DEST`: plan (every check before any work), then tag what DEST does not hold."""
    plan = plan_tagging(cfg, args.source, args.dest)
    print(
        f"{plan.todo.videos} videos to tag in {len(plan.todo.chunks)} chunks, {plan.todo.skipped} already in "
        f"{plan.dest}",
        flush=True,
    )
    if plan.todo.chunks:  # nothing to do: answer without starting (or joining) Ray
        init_ray(cfg.ray_address)
    return run_tagging(plan)


def plan_tagging(cfg: TagConfig, source: str, dest: str) -> TagPlan:
    """Validate everything and work out what to do; raises MovielibError subclasses naming the problem."""
    s3 = S3Options.from_config(cfg.s3)
    spec = ClipSpec(cfg.model.name, cfg.model.weights, cfg.model.random_weights, s3)
    spec.validate()
    labels = (
        LabelSet.from_file(cfg.scoring.labels, cfg.scoring.prompt)
        if cfg.scoring.labels
        else LabelSet.movieclip(cfg.scoring.prompt)
    )
    audio_encoder, features = feature_specs(cfg, spec, s3, labels)
    if is_s3(source) or is_s3(dest):
        check_endpoint(s3)
    listing = iter_source(source, s3)
    first = next(listing)  # SOURCE is reachable and exists before anything else is checked
    check_destination(dest, s3)
    fields = output_fields(cfg, spec, labels)
    dest = check_fingerprint(dest, s3, fields, cfg.output.on_change)
    store = CatalogStore(dest, s3)
    run_id = new_run_id()
    todo = plan_todo(store, itertools.chain([first], listing), run_id, cfg.output.chunk_videos)
    return TagPlan(
        cfg=cfg,
        source=source,
        dest=dest,
        s3=s3,
        spec=spec,
        labels=labels,
        run_id=run_id,
        todo=todo,
        fingerprint={"fingerprint": fingerprint(fields), "fields": fields},
        features=features,
        audio_encoder=audio_encoder,
    )


def check_fingerprint(dest: str, s3: S3Options, fields: dict, on_change: str) -> str:
    """The DEST this run writes: DEST itself when it holds nothing or output of the same settings; else
    refused naming what changed, or (output.on_change=alongside) DEST/fp-<fingerprint>."""
    store = CatalogStore(dest, s3)
    fs, root = filesystem_for(dest, s3)
    if fs.get_file_info(f"{root}/_manifest").type.name == "Directory":
        raise ConfigError(
            f"DEST {dest!r} holds tables of an older movielib (Parquet + _manifest/); tag into a new DEST"
        )
    stored = store.read_json("fingerprint.json")
    if stored is None or stored["fingerprint"] == fingerprint(fields):
        return dest
    if on_change == "alongside":
        return check_fingerprint(f"{dest.rstrip('/')}/fp-{fingerprint(fields)}", s3, fields, "refuse")
    changed = changes(stored["fields"], fields)
    raise ConfigError(
        f"DEST {dest!r} was written with other settings, so its videos would be skipped or mixed: "
        + "; ".join(changed[:8])
        + ". Tag into a new DEST, or pass --set output.on_change=alongside "
        f"to write a separate catalog under {dest.rstrip('/')}/fp-{fingerprint(fields)}"
    )


def feature_specs(
    cfg: TagConfig, spec: ClipSpec, s3: S3Options, labels: LabelSet
) -> tuple[object | None, list[FeatureSpec]]:
    """Load-check the feature models on the driver and say what each features table holds."""
    f = cfg.features
    out, encoder = [], None
    if f.image:
        out.append(FeatureSpec("image", spec.arch, spec.version, spec.embed_dim))
    if f.scores:  # a score vector means something only with its label set: the version names it
        out.append(FeatureSpec("scores", spec.arch, f"{spec.version}/labels-{labels.digest()}", len(labels.labels)))
    if f.keyframes:
        out.append(FeatureSpec("keyframe", spec.arch, spec.version, spec.embed_dim))
    if f.audio:
        encoder = LogMelStats()
        if f.audio_model:
            try:
                encoder = TorchScriptAudioEncoder(local_path(f.audio_model, s3, kind="audio"))
                dim = len(encoder.embed(np.zeros(16_000, np.float32)))
            except Exception as exc:
                raise ConfigError(
                    f"features.audio_model: cannot load {f.audio_model!r} as a TorchScript audio encoder: {exc}"
                ) from exc
        else:
            dim = encoder.dim
        out.append(FeatureSpec("audio", encoder.name, encoder.version, dim))
    if f.motion:
        motion = FlowStats()
        out.append(FeatureSpec("motion", motion.name, motion.version, motion.dim))
    if f.text or f.cues:
        try:
            dim = sentence_model(f.text_model).get_embedding_dimension()
        except Exception as exc:
            raise ConfigError(f"features.text_model: cannot load {f.text_model!r}: {exc}") from exc
        for modality in ("text",) * f.text + ("cue",) * f.cues:  # cue: table cues, not features/cue
            out.append(FeatureSpec(modality, text_model_name(f.text_model), "sentence-transformers", dim))
    return encoder, out


def scorer_resources(cfg: TagConfig, cluster: ClusterDescription) -> StageResources:
    """The scoring actors' reservation; `auto` GPUs are resolved against what the cluster can grow to."""
    gpus = resolve_num_gpus(cfg.scoring.num_gpus, cluster)
    return StageResources(num_cpus=cfg.scoring.num_cpus, num_gpus=gpus, memory_bytes=_gb(cfg.scoring.memory_gb))


def _gb(value: float) -> int:
    return int(value * (1 << 30))


def run_tagging(plan: TagPlan) -> TagSummary:
    """Claim, tag and commit `plan.todo` chunk by chunk; return (and store) the run summary."""
    cfg, t0 = plan.cfg, time.perf_counter()
    store = CatalogStore(plan.dest, plan.s3)
    summary = TagSummary(
        run_id=plan.run_id,
        dest=plan.dest,
        model=f"{plan.spec.arch}/{plan.spec.version}",
        random_weights=plan.spec.random_weights,
        videos_listed=plan.todo.listed,
        videos_skipped=plan.todo.skipped,
        ignored=plan.todo.ignored_sample,
        ignored_count=plan.todo.ignored,
        features=[f"{f.modality} ({f.model}, {f.dim}-d)" for f in plan.features],
    )
    if plan.todo.chunks:
        if store.read_json("fingerprint.json") is None:
            store.write_json(plan.fingerprint, "fingerprint.json")
        store.write_json(this_process(), "live", f"{plan.run_id}.json")  # a later run here can tell we died
        actors = RunActors(
            committer=ray.remote(Committer)
            .options(num_cpus=0)
            .remote(
                plan.dest, plan.s3, plan.run_id, cfg.output.rows_per_file, cfg.output.commit_every_s, plan.features
            ),
            ledger=ray.remote(AttemptLedger).options(num_cpus=0).remote(),
        )
        try:
            for n, chunk in enumerate(plan.todo.chunks):
                run_chunk(plan, store, chunk, actors, summary)
                print(
                    f"chunk {n + 1}/{len(plan.todo.chunks)}: {summary.videos_ok} tagged, {summary.videos_error} "
                    f"failed, {summary.videos_retryable} to retry, {summary.shots} shots in {summary.commits} "
                    f"commits so far",
                    flush=True,
                )
            summary.decode_peak_rss_mb = round(ray.get(actors.ledger.max_peak_rss.remote()) / 2**20, 1)
            summary.videos_retried = ray.get(actors.ledger.retried.remote())
        finally:
            ray.get(actors.committer.stop.remote())
            for actor in (actors.committer, actors.ledger):
                ray.kill(actor)
            remove_chunks(store, plan.run_id)
            store.remove_json("live", f"{plan.run_id}.json")
        if cfg.output.compact:
            t1 = time.perf_counter()
            store.compact()
            summary.timings_s["compact"] = time.perf_counter() - t1
    summary.timings_s["total"] = time.perf_counter() - t0
    # small at any catalog size: counts and samples; the full lists are queries on the tables
    report = {k: v for k, v in summary.__dict__.items() if k != "top1"}
    store.write_run_summary(
        plan.run_id,
        {
            **report,
            "source": plan.source,
            "skipped_sample": plan.todo.skipped_sample,
            "config": cfg.to_dict(),
            "fingerprint": plan.fingerprint["fingerprint"],
        },
    )
    return summary


@dataclass(frozen=True)
class RunActors:
    committer: ray.actor.ActorHandle  # the run's single writer (movielib.pipeline.commit)
    ledger: ray.actor.ActorHandle  # attempts per video and what ended them (movielib.pipeline.attempts)


def run_chunk(plan: TagPlan, store: CatalogStore, chunk: str, actors: RunActors, summary: TagSummary) -> None:
    """One bounded execution: claim the chunk's videos, clear what a dead run left of them, tag, commit."""
    ttl = plan.cfg.output.claim_ttl_s
    videos = read_chunk(store, chunk)
    ids = videos["video_id"].to_pylist()
    claimed = claim(store.tables, plan.run_id, ids, ttl, dead=dead_runs(store))
    summary.videos_skipped += claimed.done  # finished by another run since planning
    summary.videos_held += len(ids) - claimed.done - len(claimed.won)
    for run, n in claimed.held.items():
        summary.held_by[run] = summary.held_by.get(run, 0) + n
    if not claimed.won:
        return
    summary.debris_rows_removed += store.remove_debris(claimed.stale)
    videos = videos.filter(pc.is_in(videos["video_id"], value_set=pa.array(claimed.won, pa.string())))
    committer = actors.committer
    ray.get(committer.claims_valid_until.remote(claimed.expires_at.timestamp()))
    stop = threading.Event()
    renew = threading.Thread(
        target=_renew_claims, args=(store, plan.run_id, claimed.won, ttl, stop, committer), daemon=True
    )
    renew.start()
    try:
        # write tasks only hand blocks to the Committer actor: they take no CPU from decoding
        build_dataset(plan, videos, actors.ledger).write_datasink(
            CommitterSink(committer), ray_remote_args={"num_cpus": 0}, concurrency=2
        )
    except Exception:
        summary.fold(ray.get(committer.finish_chunk.remote(claimed.won, failed=True)))  # what is complete lands
        raise
    finally:
        stop.set()
    part = ray.get(committer.finish_chunk.remote(claimed.won))
    if part.lost:  # no row reached the sink: the task died past its retries (Ray Data dropped the block)
        causes = ray.get(actors.ledger.causes.remote(part.lost))
        uris = dict(zip(videos["video_id"].to_pylist(), videos["uri"].to_pylist()))
        part.videos_retryable += len(part.lost)
        part.retryable += [
            {"uri": uris[v], "error": causes.get(v, "no row reached the sink: its task failed (see the Ray Data log)")}
            for v in part.lost
        ]
        part.retryable_ids += part.lost
    summary.fold(part)
    release(store.tables, plan.run_id, part.retryable_ids)  # a re-run may take them at once


def _renew_claims(
    store: CatalogStore, run_id: str, ids: list[str], ttl_s: float, stop: threading.Event, committer
) -> None:
    """Keep this run's claims alive while it works (a third of the TTL apart); finished videos drop out.
    The Committer learns each new expiry: if renewals stop, it stops committing before the claims lapse."""
    while not stop.wait(ttl_s / 3):
        try:
            renewed = claim(store.tables, run_id, ids, ttl_s)
        except Exception:  # the store is unreachable now: the next renewal tries again
            log.warning("could not renew the claims of run %s", run_id, exc_info=True)
            continue
        if len(renewed.won) + renewed.done == len(set(ids)):  # still holds every video it has not finished
            ray.get(committer.claims_valid_until.remote(renewed.expires_at.timestamp()))


def build_dataset(plan: TagPlan, videos: pa.Table, ledger: ray.actor.ActorHandle | None = None) -> ray.data.Dataset:
    """The graph, top to bottom; the one place where stage resources (from the config) meet Ray. `ledger`: the
    run's AttemptLedger (None: no attempt tracking)."""
    cfg = plan.cfg
    attempts = cfg.reliability.max_attempts
    decode = DecodeAndDetect(
        make_detector(cfg.shots.detector, cfg.shots.threshold, cfg.shots.min_scene_len),
        FramePreprocess.for_spec(plan.spec),
        cfg.sampling.fps,
        plan.s3,
        scratch_dir=cfg.decode.scratch_dir,
        shots_per_block=cfg.decode.shots_per_block,
        people_max_side=cfg.people.max_side if cfg.people.enabled else None,
        audio=cfg.features.audio,
        subtitles=cfg.features.text,
        cues=cfg.features.cues,
        prepare_threads=cfg.decode.prepare_threads,
        people_frames_per_shot=cfg.people.frames_per_shot,
        max_frames_per_shot=cfg.sampling.max_frames_per_shot,
        decoder=cfg.decode.decoder,
        guard=VideoGuard.from_config(cfg.reliability, ledger),
    )
    cluster = ClusterDescription.from_ray()
    decode_gpus = resolve_num_gpus(cfg.decode.num_gpus, cluster, field="decode.num_gpus")
    score_res = scorer_resources(cfg, cluster)
    decode_cpus = resolve_decode_cpus(cfg.decode.num_cpus, score_res.num_gpus)
    decode_res = StageResources(
        num_cpus=decode_cpus, num_gpus=decode_gpus, memory_bytes=_gb(cfg.decode.memory_gb)
    ).ray_args()
    cpu = StageResources(num_cpus=decode_cpus, memory_bytes=_gb(cfg.decode.memory_gb)).ray_args()
    # one video a block, so decode tasks run side by side; the driver holds one chunk (bounded), never the
    # catalog (ray.data.read_parquet of the chunk file plus a repartition to one row a block ran 3x slower)
    ds = ray.data.from_arrow([videos.slice(i, 1) for i in range(videos.num_rows)])
    # Ray Data reserves a share of the cluster for every operator and lets the decode stage use only its
    # own: one decode task at a time on a 2-core machine whatever decode.num_cpus says. This linear graph
    # needs no reservations (the scorer actors hold their resources from the start): decode may take every
    # free CPU, and its concurrency cap keeps Ray Data from queueing the whole chunk's tasks at once.
    ds.context.op_resource_reservation_enabled = False
    # a block that still fails after its retries is dropped, not fatal: its video is reported retryable
    ds.context.max_errored_blocks = -1
    cap = decode_concurrency(cluster, decode_cpus, score_res, cfg.scoring.max_actors)
    # bounded retries of a task whose worker died (Ray Data's default is forever): the attempt after the last
    # allowed one only writes the video's error row (movielib.pipeline.attempts). The CPU stages get the same
    # arguments, so Ray Data still fuses them into the decode task: one task (and one ledger) per video.
    # (with decode.num_gpus > 0 the decode stage runs apart, on GPU tasks, and these stay on CPUs)
    # (Ray Data fuses task stages only when their task pools' sizes are equal too)
    same = {"max_retries": attempts, "compute": ray.data.TaskPoolStrategy(size=cap)}
    with _named_remote_args():
        ds = ds.map_batches(decode, batch_size=1, batch_format="numpy", **decode_res, **same)
        if cfg.people.enabled:
            ds = ds.map_batches(
                DetectPeople(PersonFaceDetector(max_side=cfg.people.max_side)),
                batch_size=None,
                batch_format="pyarrow",
                **cpu,
                **same,
            )
        if plan.audio_encoder is not None:
            ds = ds.map_batches(EmbedAudio(plan.audio_encoder), batch_size=None, batch_format="pyarrow", **cpu, **same)
        if cfg.features.motion:
            ds = ds.map_batches(EmbedMotion(FlowStats()), batch_size=None, batch_format="pyarrow", **cpu, **same)
        if cfg.features.text or cfg.features.cues:
            ds = ds.map_batches(
                EmbedText(cfg.features.text_model), batch_size=None, batch_format="pyarrow", **cpu, **same
            )
        return ds.map_batches(
            ClipSceneScorer,
            fn_constructor_kwargs=dict(
                spec=plan.spec,
                labels=plan.labels,
                rules=CleanRules(cfg.scoring.top_k, cfg.scoring.clean_threshold, cfg.scoring.multi_threshold),
                frames_per_forward=cfg.scoring.frames_per_forward,
                precision=cfg.model.precision,
                torch_threads=max(1, int(score_res.num_cpus)) if not score_res.num_gpus else None,
                image_features=cfg.features.image,
                keyframes=cfg.features.keyframes,
                score_features=cfg.features.scores,
            ),
            batch_size=cfg.scoring.batch_size,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=cfg.scoring.min_actors, max_size=cfg.scoring.max_actors),
            # a killed scorer comes back, and its batch is tried `attempts` more times
            max_restarts=-1,
            max_task_retries=attempts,
            **score_res.ray_args(),
        )


@contextlib.contextmanager
def _named_remote_args():
    """Ray 2.60 names some remote arguments of map_batches and warns about the rest, but task retries have no
    name yet: `max_retries` can only be passed the old way (silenced here, where it is meant)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated", category=Warning)
        yield
