"""`movielib` console script: the jobs of the registry (movielib.registry), and the tools around them."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from movielib import registry
from movielib.errors import MovielibError
from movielib.registry import add_job_parsers, job_for

EXIT_RETRY = 75  # sysexits' EX_TEMPFAIL: some videos failed for reasons of the moment; running again retries them
GROUPS = {
    "pretrain": "pretrain encoders on Ray Train + DeepSpeed",
    "embed": "write a trained encoder's embeddings into the catalog",
    "tune": "Ray Tune sweeps",
    "train": "train one model without a sweep",
    "eval": "evaluate a trained encoder on downstream tasks",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielib", description=__doc__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="Ray's, Train's and Tune's own INFO lines on the console too (else only in Ray's session logs)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_job_parsers(sub, group_help=GROUPS)
    tax = sub.add_parser("taxonomy", help="scene taxonomy curation (MovieCLIP §3)").add_subparsers(
        dest="tax_command", required=True
    )
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
    for name, text in (
        ("info", "tables of a DEST: versions, rows, files, size"),
        ("compact", "rewrite each table's small files into large ones (Delta optimize)"),
        ("vacuum", "delete files no table version younger than the retention needs (Delta vacuum)"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("dest", help="the DEST a tagging run wrote")
        p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
        if name == "vacuum":
            p.add_argument(
                "--retention-hours",
                type=int,
                default=168,
                help="keep files younger than this (default 168: a week); live runs' files are young",
            )
            p.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    jobs = {j.name: j for j in registry.JOBS if j.submit}
    submit = sub.add_parser(
        "submit",
        help="run a movielib job on a Ray cluster (Ray's Job Submission SDK)",
        description="movielib submit JOB --address http://HEAD:8265 [--working-dir DIR] "
        "[--no-package] [--no-wait] [--submission-id ID] [job args]: ships DIR "
        "(default: here) and this movielib, streams the logs, exits with the job's status",
    )
    submit.add_argument(
        "job",
        choices=sorted(jobs),
        help="the job: " + ", ".join(f"{name} (movielib {' '.join(j.command)})" for name, j in jobs.items()),
    )
    submit.add_argument(
        "job_args",
        nargs=argparse.REMAINDER,
        help="--address URL (default: RAY_ADDRESS), the options above, then the job's own arguments",
    )
    bench = sub.add_parser("bench", help="run the benchmarks (python -m bench) from a source checkout")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed on, e.g. --quick --only detect")
    demo = sub.add_parser("demo", help="start local Ray + an S3 server on 127.0.0.1, tag a generated sample catalog")
    demo.add_argument("--out", default="demo-output", help="local folder that receives a copy of the output")
    demo.add_argument(
        "--model",
        help="open_clip architecture (random weights; default ViT-B-32-quickgelu, with --pretrain movielib-tiny-clip)",
    )
    demo.add_argument(
        "--pretrain",
        action="store_true",
        help="tag a generated 3-genre catalog with keyframes, pretrain scenes on it, embed scenes",
    )
    demo.add_argument(
        "--heads", action="store_true", help="sweep scene heads with Ray Tune (ASHA) over a planted-signal catalog"
    )
    demo.add_argument(
        "--quick", action="store_true", help="with --heads: 4 trials of narrow heads (a minute) instead of 8"
    )
    demo.add_argument(
        "--multimodal",
        action="store_true",
        help="tag a catalog with audio and subtitles, pretrain multimodal, embed, score SSO / NSS, train a genre head",
    )
    demo.add_argument(
        "--genre",
        action="store_true",
        help="tag trailers only a pair of experts tells apart (audio x motion), train the collaborative-experts "
        "genre model, embed, serve it",
    )
    return parser


def job_config(args: argparse.Namespace):
    """The resolved config a job command runs with (CLI options over --config over defaults), without running it:
    what a manifest's entrypoint is checked against. None for a command that is not a job."""
    name = getattr(args, "movielib_job", None)
    return job_for(name).config(args) if name else None


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
    from movielib.io.uri import S3Options
    from movielib.store.store import CatalogStore

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


def submit_options() -> argparse.ArgumentParser:
    """`movielib submit`'s own options, picked out of the job's arguments (no abbreviations: a job flag stays whole)."""
    p = argparse.ArgumentParser(prog="movielib submit JOB", allow_abbrev=False, add_help=False)
    p.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="the Ray dashboard, http://HEAD:8265 (default: RAY_ADDRESS)",
    )
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
    sub = Submission(
        args.job,
        [a for a in job_args if a != "--"],
        opts.working_dir,
        ship_package=not opts.no_package,
        submission_id=opts.submission_id,
    )
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

        return run_heads_demo(args.out, quick=args.quick)
    if args.genre:
        from movielib.demo.genre import run_genre_demo

        return run_genre_demo(args.out, args.model or "movielib-tiny-clip")
    if args.multimodal:
        from movielib.demo.multimodal import run_multimodal_demo

        return run_multimodal_demo(args.out, args.model or "movielib-tiny-clip")
    if args.pretrain:
        from movielib.demo.pretrain import run_pretrain_demo

        return run_pretrain_demo(args.out, args.model or "movielib-tiny-clip")
    from movielib.demo.run import run_demo

    return run_demo(args.out, args.model or "ViT-B-32-quickgelu")


TOOLS = {
    "taxonomy": cmd_taxonomy,
    "report": cmd_report,
    "bench": cmd_bench,
    "info": cmd_store,
    "compact": cmd_store,
    "vacuum": cmd_store,
    "submit": cmd_submit,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ["MOVIELIB_VERBOSE"] = "1"  # read by movielib.runtime in this process and Ray's workers
    try:
        if getattr(args, "movielib_job", None):
            return job_for(args.movielib_job).main(args)
        return TOOLS[args.command](args)
    except MovielibError as exc:
        print(f"movielib: error: {exc}", file=sys.stderr)
        return exc.exit_code


def run_job(name: str, argv: list[str] | None = None) -> int:
    """`python jobs/run.py JOB [args]` and the named wrappers in jobs/ and tune/: the job as `movielib` runs it."""
    return main([*job_for(name).command, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
