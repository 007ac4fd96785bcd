"""`movielib demo --genre`: tag (audio + motion) -> train genre -> embed genre -> serve the genre head, on the
embedded default, from nothing.

Starts an S3 server on 127.0.0.1, generates trailers in four genres that only a pair of experts tells apart (low or
high tones x still or restless pictures, every genre drawing its colours from one palette: demo/paired_genres.py),
tags them with the motion feature, trains the collaborative-experts genre model on the image, audio and motion
experts at demo size (both stages, the run folder on S3), writes features/trailer, serves the exported classifier
with Ray Serve and posts the trailers' embeddings to it over HTTP, then copies the catalog and the run to a local
folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from movielib.demo.paired_genres import GENRES, write_paired_genre_catalog
from movielib.demo.run import BUCKET, copy_to_output
from movielib.demo.s3server import MotoS3Server, free_port
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.runtime import init_ray

CONFIG = Path(__file__).with_name("train_genre.yaml")  # demo size: 3 clips x 3 sequences a trailer, small widths


def serve_and_ask(head: str, s3: S3Options, embeddings: dict[str, list[float]], endpoint: str) -> dict[str, list]:
    """Serve the exported classifier as a head and post every trailer's embedding: video_id -> its top genres."""
    import requests
    from ray import serve

    from movielib.config import build_config
    from movielib.serving.config import ServeConfig
    from movielib.serving.run import start

    small = {"num_cpus": 0.1, "max_batch_size": 8, "max_ongoing_requests": 16}
    cfg = build_config(
        ServeConfig,
        {
            "model": {"name": "movielib-tiny-clip", "random_weights": True},
            "port": free_port(),
            "heads": {"genres": head},
            "s3": {"endpoint_url": endpoint},
            **{d: small for d in ("text", "image", "scenes", "head")},
            "ingress": {**small, "max_batch_size": 1},
        },
    )
    url = start(cfg, block=False)
    try:
        ids = sorted(embeddings)
        pred = requests.post(f"{url}/heads/genres", json={"features": [embeddings[v] for v in ids]}, timeout=60)
        pred.raise_for_status()
        return {v: p["labels"][:2] for v, p in zip(ids, pred.json()["predictions"])}
    finally:
        serve.shutdown()


def run_genre_demo(out: str, model: str = "movielib-tiny-clip") -> int:
    from movielib.config import load_config
    from movielib.store import CatalogStore
    from movielib.train.genre.config import TrainGenreConfig
    from movielib.train.genre.embed import COARSE, TABLE, embed_genre
    from movielib.train.genre.job import run_train_genre

    t0 = time.perf_counter()
    with MotoS3Server() as server, tempfile.TemporaryDirectory() as tmp:
        server.use()
        source, dest, runs = f"s3://{BUCKET}/trailers/", f"s3://{BUCKET}/trailer-tags", f"s3://{BUCKET}/runs"
        genres = write_paired_genre_catalog(Path(tmp), source, per_genre=6, shots=12)
        n = server.upload_folder(str(Path(tmp) / "catalog"), BUCKET, "trailers")
        with S3Options.from_env(server.endpoint_url).filesystem().open_output_stream(f"{BUCKET}/genres.csv") as f:
            f.write(genres.read_bytes())
        s3 = S3Options.from_env(server.endpoint_url)
        print(
            f"S3 server {server.endpoint_url}: {n} trailers in {len(GENRES)} genres ({', '.join(GENRES)}: low or high "
            f"tones x still or restless pictures) in {source}",
            flush=True,
        )
        tag = load_tag_config(
            None,
            {
                "model.name": model,
                "model.random_weights": True,
                "s3.endpoint_url": server.endpoint_url,
                "people.enabled": False,
                "features.text": False,
                "features.motion": True,  # the motion expert (image and audio: the tagging job's defaults)
            },
        )
        init_ray(tag.ray_address)
        print(run_tagging(plan_tagging(tag, source, dest)).render(), flush=True)
        overrides = {
            "catalog": dest,
            "genres": f"s3://{BUCKET}/genres.csv",
            "run.folder": runs,
            "s3.endpoint_url": server.endpoint_url,
        }
        cfg = load_config(str(CONFIG), overrides, schema=TrainGenreConfig)
        summary = run_train_genre(cfg)
        print(summary.render(), flush=True)
        print(embed_genre(summary["run"], dest, s3).render(), flush=True)
        rows = CatalogStore(dest, s3).read_table(TABLE, model=COARSE).to_pylist()
        asked = serve_and_ask(summary["outputs"]["head"], s3, {r["video_id"]: r["embedding"] for r in rows},
                              server.endpoint_url)  # fmt: skip
        videos = CatalogStore(dest, s3).read_table("videos", columns=["video_id", "uri"]).to_pylist()
        names = {v["video_id"]: v["uri"].rsplit("/", 1)[-1] for v in videos}
        right = sum(top[0] == names[vid].split("-")[0] for vid, top in asked.items())
        print(f"the served genre head, each trailer's top two genres ({right} of {len(asked)} right at the top):")
        for vid, top in sorted(asked.items(), key=lambda kv: names[kv[0]]):
            print(f"  {names[vid]:16} {', '.join(top)}")
        local = copy_to_output(out, s3, {"tags": f"{BUCKET}/trailer-tags", "run": summary["run"]})
        print(f"copied the catalog and the run to {local}: curves in {local / 'run' / 'genre' / 'curves.png'}")
    print(f"genre demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
