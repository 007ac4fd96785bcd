"""`movielib` console script: tag a catalog, or run the self-contained demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import yaml

from movielib.cluster.submit import JOBS
from movielib.errors import MovielibError

EXIT_RETRY = 75  # sysexits' EX_TEMPFAIL: some videos failed for reasons of the moment; running again retries them


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise MovielibError(f"--set expects KEY=VALUE (e.g. scoring.batch_size=16), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


COMMON = (("model", "model.name"), ("weights", "model.weights"), ("s3_endpoint", "s3.endpoint_url"),
          ("ray_address", "ray_address"))


def overrides_from(args: argparse.Namespace, options: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """CLI options as dotted config overrides (options given on the command line win over --config)."""
    overrides = _parse_set(args.set or [])
    for opt, key in COMMON + options:
        if getattr(args, opt, None) is not None:
            overrides[key] = getattr(args, opt)
    if getattr(args, "random_weights", False):
        overrides["model.random_weights"] = True
    return overrides


def tag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return overrides_from(args, (("labels", "scoring.labels"), ("prompt", "scoring.prompt")))


def add_job_options(p: argparse.ArgumentParser, sections: str, model: str, example: str) -> None:
    """--config, the CLIP model and weights, where S3 and Ray are, and --set: what every job takes."""
    p.add_argument("--config", help=f"YAML config file (sections: {sections})")
    p.add_argument("--model", help=f"open_clip architecture of the {model} (default ViT-B-32)")
    p.add_argument("--weights", help="CLIP weights: local path, s3:// URI or HF cache folder")
    p.add_argument("--random-weights", action="store_true", help="untrained model (tests and demos only)")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=f"any config field, e.g. {example}")


def add_tag_options(p: argparse.ArgumentParser) -> None:
    add_job_options(p, "model, shots, sampling, scoring, decode, output, s3", "scorer", "scoring.batch_size=16")
    p.add_argument("--labels", help="label file, one label per line (default: the 179 MovieCLIP labels)")
    p.add_argument("--prompt", help="prompt template with {label}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tag = sub.add_parser("tag", help="tag a catalog: shots -> CLIP scene tags -> Delta Lake tables")
    tag.add_argument("source", help="s3:// prefix, local folder, single video, or a manifest file of URIs")
    tag.add_argument("dest", help="s3:// or local prefix of the Delta tables videos/, shots/, tags/, features/*")
    add_tag_options(tag)
    tax = sub.add_parser("taxonomy", help="scene taxonomy curation (MovieCLIP §3)").add_subparsers(dest="tax_command", required=True)
    slug = tax.add_parser("from-sluglines", help="screenplay sluglines -> place labels with counts")
    slug.add_argument("files", nargs="+", help="screenplay text files")
    slug.add_argument("--min-count", type=int, default=1, help="keep labels named by at least this many sluglines")
    slug.add_argument("--out", help="write the labels (one per line) here")
    merge = tax.add_parser("merge", help="merge label sets: common labels, MiniLM merges > 0.6, dedupe > 0.7")
    merge.add_argument("files", nargs="+", help="label files (one label per line), at least two")
    merge.add_argument("--merge-threshold", type=float, default=0.6)
    merge.add_argument("--dedupe-threshold", type=float, default=0.7)
    merge.add_argument("--out", help="write the merged label set here")
    cluster = tax.add_parser("cluster", help="affinity-propagation clusters of a label set")
    cluster.add_argument("labels", help="label file (one label per line)")
    report = sub.add_parser("report", help="contact sheet (PNG + HTML) of one tagged video")
    report.add_argument("dest", help="the DEST a tagging run wrote")
    report.add_argument("--video", help="video id, or part of its URI (default: the first tagged video)")
    report.add_argument("--out", default="contact-sheet", help="output path without extension")
    report.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
    for name, text in (("info", "tables of a DEST: versions, rows, files, size"),
                       ("compact", "rewrite each table's small files into large ones (Delta optimize)"),
                       ("vacuum", "delete files no table version younger than the retention needs (Delta vacuum)")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dest", help="the DEST a tagging run wrote")
        p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
        if name == "vacuum":
            p.add_argument("--retention-hours", type=int, default=168,
                           help="keep files younger than this (default 168: a week); live runs' files are young")
            p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    pretrain = sub.add_parser("pretrain", help="pretrain encoders on Ray Train + DeepSpeed").add_subparsers(
        dest="method", required=True)
    scenes = pretrain.add_parser("scenes", help="Movies2Scenes: similarity model -> scene pairs -> MoCo scene encoder")
    scenes.add_argument("catalog", nargs="?", help="the DEST a tagging run with features.keyframes wrote "
                                                   "(or `catalog:` in the config)")
    add_job_options(scenes, "similarity, features, similarity_model, selection, scenes, model, scaling, deepspeed, "
                            "run, s3", "scene encoder's CLIP tower", "scenes.epochs=5")
    scenes.add_argument("--similarity", help="similarity file (similarity.path)")
    scenes.add_argument("--run-folder", help="local folder or s3:// prefix of the run (run.folder)")
    scenes.add_argument("--name", help="the run's name in the run folder (run.name, default 'scenes')")
    embed = sub.add_parser("embed", help="write a trained encoder's embeddings into the catalog").add_subparsers(
        dest="method", required=True)
    escenes = embed.add_parser("scenes", help="shot and scene embeddings of a Movies2Scenes run -> features/scene")
    escenes.add_argument("run", help="the run folder (<run.folder>/<run.name>) holding scene_encoder.pt")
    escenes.add_argument("catalog", help="the DEST whose keyframes are embedded (and that receives features/scene)")
    escenes.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
    escenes.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    tune = sub.add_parser("tune", help="Ray Tune sweeps").add_subparsers(dest="method", required=True)
    train = sub.add_parser("train", help="train one model without a sweep").add_subparsers(dest="method", required=True)
    for p, text in ((tune.add_parser("heads", help="sweep heads on a features table (Ray Tune, ASHA)"), "sweep"),
                    (train.add_parser("head", help="train one head on a features table (the sweep's layout)"), "one")):
        p.add_argument("--config", help="YAML config file (sections: data, head, search, tune, run, s3)")
        p.add_argument("--catalog", help="the tagged DEST (data.catalog)")
        p.add_argument("--run-folder", help="local folder or s3:// prefix of the run (run.folder)")
        p.add_argument("--name", help="the run's name in the run folder (run.name, default 'heads')")
        p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
        p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. head.epochs=30")
        if text == "sweep":
            p.add_argument("--resume", metavar="RUN", help="continue an interrupted sweep in this run folder "
                                                           "(<run.folder>/<run.name>)")
    srv = sub.add_parser("serve", help="serve the CLIP encoders, the scene tagger and heads with Ray Serve (HTTP)")
    add_job_options(srv, "model, tagger, heads, max_body_mb, host, port, ingress, text, image, scenes, head, s3",
                    "tagger and encoders", "scenes.max_batch_size=16")
    srv.add_argument("--write-serve-config", metavar="PATH",
                     help="write the Ray Serve config file (serve run / serve deploy) and exit; an existing RayService "
                          "manifest gets it as its serveConfigV2")
    submit = sub.add_parser("submit", help="run a movielib job on a Ray cluster (Ray's Job Submission SDK)",
                            description="movielib submit JOB --address http://HEAD:8265 [--working-dir DIR] "
                                        "[--no-package] [--no-wait] [--submission-id ID] [job args]: ships DIR "
                                        "(default: here) and this movielib, streams the logs, exits with the job's status")
    submit.add_argument("job", choices=sorted(JOBS), help="the job: " + ", ".join(
        f"{name} (movielib {' '.join(cmd)})" for name, cmd in JOBS.items()))
    submit.add_argument("job_args", nargs=argparse.REMAINDER,
                        help="--address URL (default: RAY_ADDRESS), the options above, then the job's own arguments")
    bench = sub.add_parser("bench", help="run the benchmarks (python -m bench) from a source checkout")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed on, e.g. --quick --only detect")
    demo = sub.add_parser("demo", help="start local Ray + an S3 server on 127.0.0.1, tag a generated sample catalog")
    demo.add_argument("--out", default="demo-output", help="local folder that receives a copy of the output")
    demo.add_argument("--model", help="open_clip architecture (random weights; default ViT-B-32-quickgelu, "
                                      "with --pretrain movielib-tiny-clip)")
    demo.add_argument("--pretrain", action="store_true",
                      help="tag a generated 3-genre catalog with keyframes, pretrain scenes on it, embed scenes")
    demo.add_argument("--heads", action="store_true",
                      help="sweep scene heads with Ray Tune (ASHA) over a planted-signal catalog")
    return parser


def job_config(args: argparse.Namespace):
    """The resolved config a job command runs with (CLI options over --config over defaults), without running it:
    what the commands below start from, and what a manifest's entrypoint is checked against."""
    from movielib.config import load_config

    if args.command == "tag":
        return load_config(args.config, tag_overrides(args))
    if args.command == "pretrain":
        from movielib.train.movies2scenes.config import PretrainScenesConfig

        return load_config(args.config, overrides_from(args, (("catalog", "catalog"), ("similarity", "similarity.path"),
                                                               ("run_folder", "run.folder"), ("name", "run.name"))),
                           schema=PretrainScenesConfig)
    if args.command in ("tune", "train"):
        from movielib.heads.config import HeadsConfig
        from movielib.heads.sweep import resume_config

        if getattr(args, "resume", None):
            return resume_config(args.resume)
        return load_config(args.config, overrides_from(args, (("catalog", "data.catalog"), ("run_folder", "run.folder"),
                                                              ("name", "run.name"))), schema=HeadsConfig)
    if args.command == "serve":
        from movielib.serving.config import ServeConfig

        return load_config(args.config, overrides_from(args), schema=ServeConfig)
    return None  # the command takes no config (embed scenes: the run folder holds it)


def cmd_tag(args: argparse.Namespace) -> int:
    from movielib.pipeline.tagging import init_ray, plan_tagging, run_tagging

    cfg = job_config(args)
    print("resolved config:\n" + cfg.to_yaml(), flush=True)
    plan = plan_tagging(cfg, args.source, args.dest)
    print(f"{plan.todo.videos} videos to tag in {len(plan.todo.chunks)} chunks, {plan.todo.skipped} already in "
          f"{plan.dest}", flush=True)
    if plan.todo.chunks:  # nothing to do: answer without starting (or joining) Ray
        init_ray(cfg.ray_address)
    summary = run_tagging(plan)
    print(summary.render(), flush=True)
    return EXIT_RETRY if summary.videos_retryable else 0


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError as exc:
        raise MovielibError(f"cannot read {path!r}: {exc.strerror}") from exc


def _read_labels(path: str) -> list[str]:
    from movielib.taxonomy.labels import LabelSet

    return list(LabelSet.from_file(path).labels)


def cmd_taxonomy(args: argparse.Namespace) -> int:
    if args.tax_command == "from-sluglines":
        from movielib.taxonomy.sluglines import labels_from_sluglines

        counts = labels_from_sluglines(line for f in args.files for line in _read_lines(f))
        kept = [(label, n) for label, n in counts.most_common() if n >= args.min_count]
        print("\n".join(f"{label}\t{n}" for label, n in kept))
        labels = [label for label, _ in kept]
    elif args.tax_command == "merge":
        from movielib.taxonomy.curation import merge_label_sets

        if len(args.files) < 2:
            raise MovielibError("taxonomy merge needs at least two label files")
        result = merge_label_sets([_read_labels(f) for f in args.files], args.merge_threshold, args.dedupe_threshold)
        print(result.report())
        labels = result.labels
    else:
        from movielib.taxonomy.curation import cluster_labels

        for c in cluster_labels(_read_labels(args.labels)):
            print(f"{c.exemplar}: {', '.join(c.members)}")
        return 0
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(labels) + "\n")
        print(f"wrote {len(labels)} labels to {args.out}", file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from movielib.io.uri import S3Options
    from movielib.report import contact_sheet

    png, page, n = contact_sheet(args.dest, args.out, args.video, S3Options.from_env(args.s3_endpoint))
    print(f"contact sheet of {n} shots: {png} and {page}")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from movielib.features.store import CatalogStore
    from movielib.io.uri import S3Options

    store = CatalogStore(args.dest, S3Options.from_env(args.s3_endpoint))
    if args.command == "compact":
        for name, m in store.compact().items():
            print(f"{name}: {m['numFilesRemoved']} files -> {m['numFilesAdded']}")
    elif args.command == "vacuum":
        for name, files in store.vacuum(args.retention_hours, args.dry_run).items():
            print(f"{name}: {'would delete' if args.dry_run else 'deleted'} {len(files)} files")
    infos = store.info()
    if not infos:
        raise MovielibError(f"{args.dest!r} holds no Delta tables")
    print(f"{'table':<22}{'version':>8}{'rows':>12}{'files':>8}{'MiB':>10}")
    for t in infos:
        print(f"{t.name:<22}{t.version:>8}{t.rows:>12}{t.files:>8}{t.bytes / 2**20:>10.2f}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from movielib.pipeline.tagging import init_ray
    from movielib.train.movies2scenes.job import run_pretrain_scenes

    cfg = job_config(args)
    print("resolved config:\n" + cfg.to_yaml(), flush=True)
    init_ray(cfg.ray_address)
    summary = run_pretrain_scenes(cfg)
    print(render_pretrain_summary(summary), flush=True)
    return 0


def render_pretrain_summary(summary: dict) -> str:
    lines = [f"run {summary['run']}: {summary['pairs']['train']} movie pairs trained on, {summary['pairs']['val']} "
             f"held out; {summary['scene_pairs']} scene pairs selected"]
    for stage, keys in (("similarity", ("loss", "similarity_accuracy")), ("scenes", ("loss", "moco_top1", "moco_top5"))):
        metrics = summary.get(stage) or {}
        if metrics:
            lines.append(f"{stage}: step {metrics.get('step')}, " + ", ".join(
                f"{k} {metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), float)))
    lines += [f"{name}: {path}" for name, path in summary["outputs"].items() if isinstance(path, str)]
    lines += [f"curves: {path}" for path in summary["outputs"]["curves"]]
    return "\n".join(lines)


def cmd_heads(args: argparse.Namespace) -> int:
    from movielib.heads.sweep import run_heads
    from movielib.pipeline.tagging import init_ray

    resume = getattr(args, "resume", None)
    cfg = job_config(args)
    print("resolved config:\n" + cfg.to_yaml(), flush=True)
    init_ray(cfg.ray_address)
    summary = run_heads(cfg, sweep=args.command == "tune", resume=bool(resume))
    print(render_heads_summary(summary), flush=True)
    return 0


def render_heads_summary(summary: dict) -> str:
    metric = summary["metric"].removeprefix("val_")
    best = summary["best"]
    lines = [f"run {summary['run']}: {summary['trials']} trials, {summary['epochs_run']} epochs in all, "
             f"{summary['wall_s']:.1f}s",
             f"best {best['trial']} (epoch {best['epoch']}): test {metric} {best['test'].get(metric, float('nan')):.4f}; "
             f"chance {summary['chance'].get(metric, float('nan')):.4f}; linear probe "
             f"{summary['linear_probe'].get(metric, float('nan')):.4f}",
             "best config: " + ", ".join(f"{k}={best['config'].get(k)}" for k in
                                         ("lr", "weight_decay", "dropout", "width", "batch_size"))]
    lines += [f"{name}: {path}" for name, path in summary["outputs"].items()]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = job_config(args)
    if args.write_serve_config:
        from movielib.cluster.serve_config import write_serve_config
        from movielib.serving.app import serve_config

        print(write_serve_config(serve_config(cfg), args.write_serve_config))
        return 0
    print("resolved config:\n" + cfg.to_yaml(), flush=True)
    from movielib.serving.run import start

    start(cfg)
    return 0


def cmd_embed(args: argparse.Namespace) -> int:
    from movielib.io.uri import S3Options
    from movielib.pipeline.tagging import init_ray
    from movielib.train.movies2scenes.embed import embed_scenes

    s3 = S3Options.from_env(args.s3_endpoint)
    init_ray(args.ray_address)
    out = embed_scenes(args.run, args.catalog, s3)
    print(f"{out['table']}: {out['rows']} rows ({', '.join(out['models'])}), model_version {out['model_version']}, "
          f"{out['commits']} commits")
    return 0


def submit_options() -> argparse.ArgumentParser:
    """`movielib submit`'s own options, picked out of the job's arguments (no abbreviations: a job flag stays whole)."""
    p = argparse.ArgumentParser(prog="movielib submit JOB", allow_abbrev=False, add_help=False)
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS"),
                   help="the Ray dashboard, http://HEAD:8265 (default: RAY_ADDRESS)")
    p.add_argument("--working-dir", default=".", help="folder shipped with the job; relative paths resolve in it")
    p.add_argument("--no-package", action="store_true", help="use the movielib installed on the cluster (its image)")
    p.add_argument("--no-wait", action="store_true", help="return once submitted")
    p.add_argument("--submission-id", help="the job's id (default: Ray picks one)")
    return p


def cmd_submit(args: argparse.Namespace) -> int:
    from movielib.cluster.submit import Submission, submit

    opts, job_args = submit_options().parse_known_args(args.job_args)
    if not opts.address or "://" not in opts.address:
        raise MovielibError(f"--address: the Ray dashboard's URL, e.g. http://HEAD:8265 (got {opts.address!r})")
    sub = Submission(args.job, [a for a in job_args if a != "--"], opts.working_dir,
                     ship_package=not opts.no_package, submission_id=opts.submission_id)
    return submit(sub, opts.address, wait=not opts.no_wait)


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    if not (root / "bench" / "__main__.py").exists():
        raise MovielibError(f"bench/ is not next to the installed package ({root}); run from a source checkout")
    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args], cwd=root)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.heads:
        from movielib.demo.heads import run_heads_demo

        return run_heads_demo(args.out)
    if args.pretrain:
        from movielib.demo.pretrain import run_pretrain_demo

        return run_pretrain_demo(args.out, args.model or "movielib-tiny-clip")
    from movielib.demo.run import run_demo

    return run_demo(args.out, args.model or "ViT-B-32-quickgelu")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return {"tag": cmd_tag, "taxonomy": cmd_taxonomy, "report": cmd_report, "bench": cmd_bench,
                "info": cmd_store, "compact": cmd_store, "vacuum": cmd_store,
                "pretrain": cmd_pretrain, "embed": cmd_embed,
                "tune": cmd_heads, "train": cmd_heads, "serve": cmd_serve, "submit": cmd_submit,
                "demo": cmd_demo}[args.command](args)
    except MovielibError as exc:
        print(f"movielib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
