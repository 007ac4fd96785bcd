"""The jobs movielib runs: one table, from which everything that names a job is derived.

The CLI's job subcommands (`movielib tag`, `movielib pretrain scenes`, ...), `movielib submit`'s job
list, the `ray job submit` entry points (`python jobs/run.py JOB ...`) and the manifest tests all read
`JOBS`. A job is one module with a `run(cfg, args) -> summary` function (the summary renders itself
and says the exit code) and a `JobConfig` schema; adding one is that module plus one `Job(...)` here.
Entry functions are imported only when their job runs, so `movielib --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from movielib.config import SHARED, JobConfig, load_config
from movielib.errors import ConfigError, MovielibError
from movielib.heads.config import HeadsConfig
from movielib.pipeline.config import TagConfig
from movielib.runtime import verbose
from movielib.serving.config import ServeConfig
from movielib.train.genre.config import EmbedGenreConfig, TrainGenreConfig
from movielib.train.movies2scenes.config import EmbedScenesConfig, PretrainScenesConfig
from movielib.train.multimodal.config import EmbedMultimodalConfig, EvalEditingConfig, PretrainMultimodalConfig

__all__ = ["JOBS", "Job", "Option", "add_job_parsers", "job_for", "job_parser"]


@dataclass(frozen=True)
class Option:
    """A command-line argument of a job: `flags` as argparse takes them; `field` is the config field it sets
    (dotted; CLI options win over --config), None for an argument the job's `run` reads from `args`."""

    flags: tuple[str, ...]
    help: str
    field: str | None = None
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # argparse extras: nargs, metavar, action
    loads_config: str | None = None  # "module:function(value, s3) -> JobConfig": given, it supplies the config
    quiet: bool = False  # given, the job prints no resolved config (its stdout is its answer)

    @property
    def dest(self) -> str:
        return self.flags[0].lstrip("-").replace("-", "_")


# what every job takes (beyond --config and --set): where S3 and Ray are
WHERE = (
    Option(("--s3-endpoint",), "S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)", "s3.endpoint_url"),
    Option(("--ray-address",), "Ray cluster address (default: RAY_ADDRESS, else a local Ray)", "ray_address"),
)


def clip_options(model: str) -> tuple[Option, ...]:
    """--model / --weights / --random-weights: the CLIP model a job loads."""
    return (
        Option(("--model",), f"open_clip architecture of the {model} (default ViT-B-32)", "model.name"),
        Option(("--weights",), "CLIP weights: local path, s3:// URI or HF cache folder", "model.weights"),
        Option(
            ("--random-weights",),
            "untrained model (tests and demos only)",
            "model.random_weights",
            {"action": "store_true", "default": None},
        ),
    )


def run_options(default_name: str) -> tuple[Option, ...]:
    return (
        Option(("--run-folder",), "local folder or s3:// prefix of the run (run.folder)", "run.folder"),
        Option(("--name",), f"the run's name in the run folder (run.name, default '{default_name}')", "run.name"),
    )


@dataclass(frozen=True)
class Job:
    """One job: its name (`movielib submit NAME`, RayJob names), its CLI words, config schema and entry."""

    name: str
    command: tuple[str, ...]  # `movielib <command...>`
    help: str
    schema: type[JobConfig]
    run: str  # "module:function": run(cfg, args) -> a summary with render() and exit_code
    options: tuple[Option, ...] = ()
    example: str = "scoring.batch_size=16"  # shown in --set's help
    submit: bool = True  # runs to an end on a cluster (`movielib submit`, RayJobs); serve does not

    def sections(self) -> str:
        """The schema's sections, its own first (as the resolved config prints them)."""
        names = [
            k
            for k, f in self.schema.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)
        ]
        return ", ".join(sorted(names, key=lambda k: k in SHARED))

    def all_options(self) -> tuple[Option, ...]:
        return (*self.options, *WHERE)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help=f"YAML config file (sections: {self.sections()})")
        for o in self.all_options():
            p.add_argument(*o.flags, help=o.help, **o.kwargs)
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help=f"any config field, e.g. {self.example}")

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        """CLI options as dotted config overrides, over --set's."""
        out = parse_set(getattr(args, "set", None) or [])
        for o in self.all_options():
            value = getattr(args, o.dest, None)
            if o.field and value is not None:
                out[o.field] = value
        return out

    def config(self, args: argparse.Namespace) -> JobConfig:
        """The resolved config the job runs with (CLI options over --config over defaults), nothing run."""
        for o in self.options:
            value = getattr(args, o.dest, None)
            if o.loads_config and value is not None:
                from movielib.io.uri import S3Options

                return _function(o.loads_config)(value, S3Options.from_env(getattr(args, "s3_endpoint", None)))
        return load_config(getattr(args, "config", None), self.overrides(args), self.schema)

    def main(self, args: argparse.Namespace) -> int:
        cfg = self.config(args)
        if not any(o.quiet and getattr(args, o.dest, None) for o in self.options):
            print(cfg.console(verbose()), flush=True)
        summary = _function(self.run)(cfg, args)
        print(summary.render(), flush=True)
        return summary.exit_code


def _function(ref: str) -> Callable:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise MovielibError(f"--set expects KEY=VALUE (e.g. scoring.batch_size=16), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


HEADS_OPTIONS = (Option(("--catalog",), "the tagged DEST (data.catalog)", "data.catalog"), *run_options("heads"))

JOBS: tuple[Job, ...] = (
    Job(
        "tag",
        ("tag",),
        "tag a catalog: shots -> CLIP scene tags -> Delta Lake tables",
        TagConfig,
        "movielib.pipeline.tagging:run",
        (
            Option(("source",), "s3:// prefix, local folder, single video, or a manifest file of URIs"),
            Option(("dest",), "s3:// or local prefix of the Delta tables videos/, shots/, tags/, features/*"),
            *clip_options("scorer"),
            Option(
                ("--labels",), "label file, one label per line (default: the 179 MovieCLIP labels)", "scoring.labels"
            ),
            Option(("--prompt",), "prompt template with {label}", "scoring.prompt"),
        ),
    ),
    Job(
        "pretrain-scenes",
        ("pretrain", "scenes"),
        "Movies2Scenes: similarity model -> scene pairs -> MoCo scene encoder",
        PretrainScenesConfig,
        "movielib.train.movies2scenes.job:run",
        (
            Option(
                ("catalog",),
                "the DEST a tagging run with features.keyframes wrote (or `catalog:` in the config)",
                "catalog",
                {"nargs": "?"},
            ),
            *clip_options("scene encoder's CLIP tower"),
            Option(("--similarity",), "similarity file (similarity.path)", "similarity.path"),
            *run_options("scenes"),
        ),
        example="scenes.epochs=5",
    ),
    Job(
        "pretrain-multimodal",
        ("pretrain", "multimodal"),
        "long-range multimodal pretraining: contextual + cross-modal transformers over video, audio, subtitles",
        PretrainMultimodalConfig,
        "movielib.train.multimodal.job:run",
        (
            Option(
                ("catalog",),
                "the DEST a tagging run wrote, with features/image, features/audio, features/text (or `catalog:`)",
                "catalog",
                {"nargs": "?"},
            ),
            *run_options("multimodal"),
        ),
        example="optim.epochs=5",
    ),
    Job(
        "embed-scenes",
        ("embed", "scenes"),
        "shot and scene embeddings of a Movies2Scenes run -> features/scene",
        EmbedScenesConfig,
        "movielib.train.movies2scenes.embed:run",
        (
            Option(
                ("run",), "the run folder (<run.folder>/<run.name>) holding scene_encoder.pt", "run", {"nargs": "?"}
            ),
            Option(
                ("catalog",),
                "the DEST whose keyframes are embedded (and that receives features/scene)",
                "catalog",
                {"nargs": "?"},
            ),
        ),
        example="catalog=s3://bucket/tags",
    ),
    Job(
        "embed-multimodal",
        ("embed", "multimodal"),
        "contextual and cross-modal features of a multimodal run -> features/multimodal",
        EmbedMultimodalConfig,
        "movielib.train.multimodal.embed:run",
        (
            Option(("run",), "the run folder (<run.folder>/<run.name>) holding multimodal.pt", "run", {"nargs": "?"}),
            Option(
                ("catalog",),
                "the DEST whose shots are embedded (and that receives features/multimodal)",
                "catalog",
                {"nargs": "?"},
            ),
        ),
        example="catalog=s3://bucket/tags",
    ),
    Job(
        "eval-editing",
        ("eval", "editing"),
        "shot sequence ordering and next shot selection on base vs a multimodal run's features",
        EvalEditingConfig,
        "movielib.train.multimodal.editing:run",
        (
            Option(("run",), "the run folder (<run.folder>/<run.name>) holding multimodal.pt", "run", {"nargs": "?"}),
            Option(("catalog",), "the DEST whose shot order gives the labels", "catalog", {"nargs": "?"}),
        ),
        example="per_movie=10",
    ),
    Job(
        "tune-heads",
        ("tune", "heads"),
        "sweep heads on a features table (Ray Tune, ASHA)",
        HeadsConfig,
        "movielib.heads.sweep:run_sweep",
        (
            *HEADS_OPTIONS,
            Option(
                ("--resume",),
                "continue an interrupted sweep in this run folder (<run.folder>/<run.name>)",
                kwargs={"metavar": "RUN"},
                loads_config="movielib.heads.sweep:resume_config",
            ),
        ),
        example="head.epochs=30",
    ),
    Job(
        "train-head",
        ("train", "head"),
        "train one head on a features table (the sweep's layout)",
        HeadsConfig,
        "movielib.heads.sweep:run_one",
        HEADS_OPTIONS,
        example="head.epochs=30",
    ),
    Job(
        "embed-genre",
        ("embed", "genre"),
        "trailer embeddings and genre probabilities of a genre run -> features/trailer (one row per video)",
        EmbedGenreConfig,
        "movielib.train.genre.embed:run",
        (
            Option(("run",), "the run folder (<run.folder>/<run.name>) holding genre.pt", "run", {"nargs": "?"}),
            Option(
                ("catalog",),
                "the DEST whose videos are embedded (and that receives features/trailer)",
                "catalog",
                {"nargs": "?"},
            ),
        ),
        example="catalog=s3://bucket/tags",
    ),
    Job(
        "train-genre",
        ("train", "genre"),
        "trailer genres from collaborative experts (image, scene, audio, motion per shot): the coarse classifier",
        TrainGenreConfig,
        "movielib.train.genre.job:run",
        (
            Option(
                ("catalog",),
                "the DEST a tagging run wrote (features.motion and features.scores on), or `catalog:`",
                "catalog",
                {"nargs": "?"},
            ),
            Option(("--genres",), "genres file: CSV / Parquet with movie (uri or video_id), genres", "genres"),
            *run_options("genre"),
        ),
        example="optim.epochs=50",
    ),
    Job(
        "serve",
        ("serve",),
        "serve the CLIP encoders, the scene tagger and heads with Ray Serve (HTTP)",
        ServeConfig,
        "movielib.serving.run:run",
        (
            *clip_options("tagger and encoders"),
            Option(
                ("--write-serve-config",),
                "write the Ray Serve config file (serve run / serve deploy) and exit; "
                "an existing RayService manifest gets it as its serveConfigV2",
                kwargs={"metavar": "PATH"},
                quiet=True,
            ),
        ),
        example="scenes.max_batch_size=16",
        submit=False,
    ),
)


def job_for(name_or_command: str | tuple[str, ...]) -> Job:
    """A job by its name ("pretrain-scenes") or its CLI words (("pretrain", "scenes"))."""
    for job in JOBS:
        if name_or_command in (job.name, job.command):
            return job
    raise ConfigError(f"unknown job {name_or_command!r}: one of {', '.join(j.name for j in JOBS)}")


def add_job_parsers(
    sub: argparse._SubParsersAction,
    groups: dict[str, argparse._SubParsersAction] | None = None,
    group_help: Mapping[str, str] = {},
) -> None:
    """A subcommand per job (a job of two words, e.g. `pretrain scenes`, under a group subcommand); each
    parser's defaults name its job, so `args.movielib_job` says which one runs."""
    groups = {} if groups is None else groups
    for job in JOBS:
        if len(job.command) == 1:
            p = sub.add_parser(job.command[0], help=job.help)
        else:
            group, word = job.command
            if group not in groups:
                groups[group] = sub.add_parser(group, help=group_help.get(group, group)).add_subparsers(
                    dest="method", required=True
                )
            p = groups[group].add_parser(word, help=job.help)
        job.add_arguments(p)
        p.set_defaults(movielib_job=job.name)


def job_parser() -> argparse.ArgumentParser:
    """A parser of the jobs alone: what `movielib submit` checks a job's arguments with before shipping it."""
    parser = argparse.ArgumentParser(prog="movielib")
    add_job_parsers(parser.add_subparsers(dest="command", required=True))
    return parser
