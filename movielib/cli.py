"""`movielib` console script: tag a catalog, or run the self-contained demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import yaml

from movielib.errors import MovielibError


def _parse_set(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise MovielibError(f"--set expects KEY=VALUE (e.g. scoring.batch_size=16), got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def tag_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """CLI options as dotted config overrides (options given on the command line win over --config)."""
    overrides = _parse_set(args.set or [])
    for opt, key in (("model", "model.name"), ("weights", "model.weights"), ("labels", "scoring.labels"),
                     ("prompt", "scoring.prompt"), ("s3_endpoint", "s3.endpoint_url"), ("ray_address", "ray_address")):
        if getattr(args, opt, None) is not None:
            overrides[key] = getattr(args, opt)
    if getattr(args, "random_weights", False):
        overrides["model.random_weights"] = True
    return overrides


def add_tag_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (sections: model, shots, sampling, scoring, decode, output, s3)")
    p.add_argument("--model", help="open_clip architecture (default ViT-B-32)")
    p.add_argument("--weights", help="CLIP weights: local path, s3:// URI or HF cache folder")
    p.add_argument("--random-weights", action="store_true", help="untrained model (tests and demos only)")
    p.add_argument("--labels", help="label file, one label per line (default: the 179 MovieCLIP labels)")
    p.add_argument("--prompt", help="prompt template with {label}")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL)")
    p.add_argument("--ray-address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field, e.g. scoring.batch_size=16")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tag = sub.add_parser("tag", help="tag a catalog: shots -> CLIP scene tags -> Parquet")
    tag.add_argument("source", help="s3:// prefix, local folder, single video, or a manifest file of URIs")
    tag.add_argument("dest", help="s3:// or local prefix for videos/, shots/, tags/ and _manifest/")
    add_tag_options(tag)
    demo = sub.add_parser("demo", help="start local Ray + an S3 server on 127.0.0.1, tag a generated sample catalog")
    demo.add_argument("--out", default="demo-output", help="local folder that receives a copy of the output")
    demo.add_argument("--model", default="ViT-B-32", help="open_clip architecture (random weights)")
    return parser


def cmd_tag(args: argparse.Namespace) -> int:
    from movielib.config import load_config
    from movielib.pipeline.tagging import init_ray, plan_tagging, run_tagging

    cfg = load_config(args.config, tag_overrides(args))
    print("resolved config:\n" + cfg.to_yaml(), flush=True)
    plan = plan_tagging(cfg, args.source, args.dest)
    print(f"{len(plan.todo)} videos to tag, {len(plan.skipped)} already in {args.dest}", flush=True)
    init_ray(cfg.ray_address)
    summary = run_tagging(plan)
    print(summary.render(), flush=True)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from movielib.demo.run import run_demo

    return run_demo(args.out, args.model)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    try:
        return {"tag": cmd_tag, "demo": cmd_demo}[args.command](args)
    except MovielibError as exc:
        print(f"movielib: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
