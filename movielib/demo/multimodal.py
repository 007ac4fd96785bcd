"""`movielib demo --multimodal`: tag (audio, .srt sidecars) -> pretrain multimodal -> embed -> SSO / NSS -> a genre
head on the embeddings, on the embedded default, from nothing.

Starts an S3 server on 127.0.0.1, generates the 3-genre catalog of the pretraining demo with audio tracks and
subtitles that name each shot's look, tags it (image, audio and subtitle features, and each subtitle cue with its
times), pretrains the multimodal model at demo size (movielib/demo/pretrain_multimodal.yaml) with the run folder
on S3, writes features/multimodal, scores the editing tasks, trains a movie-level genre head on the cross-modal
features, and copies it all to a local folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from movielib.config import load_config
from movielib.demo.pretrain import write_genre_catalog
from movielib.demo.run import BUCKET, copy_to_output
from movielib.demo.s3server import MotoS3Server
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.runtime import init_ray, verbose

CONFIG = Path(__file__).with_name("pretrain_multimodal.yaml")


def run_multimodal_demo(out: str, model: str = "movielib-tiny-clip") -> int:
    from movielib.heads.config import HeadsConfig
    from movielib.heads.sweep import run_heads
    from movielib.store import CatalogStore
    from movielib.train.multimodal.config import EvalEditingConfig, PretrainMultimodalConfig
    from movielib.train.multimodal.editing import run as eval_editing
    from movielib.train.multimodal.embed import TABLE, embed_multimodal
    from movielib.train.multimodal.job import run_pretrain_multimodal

    t0 = time.perf_counter()
    with MotoS3Server() as server, tempfile.TemporaryDirectory() as tmp:
        server.use()
        source, dest, runs = f"s3://{BUCKET}/av-catalog/", f"s3://{BUCKET}/av-tags", f"s3://{BUCKET}/runs"
        genres = write_genre_catalog(Path(tmp), source, movies_per_genre=5, shots=24, subtitles=True, follow=0.8)
        n = server.upload_folder(str(Path(tmp) / "catalog"), BUCKET, "av-catalog")
        s3 = S3Options.from_env(server.endpoint_url)
        print(
            f"S3 server {server.endpoint_url}: {n} files (movies with audio and .srt sidecars) in {source}", flush=True
        )
        tag = load_tag_config(
            None,
            {
                "model.name": model,
                "model.random_weights": True,
                "s3.endpoint_url": server.endpoint_url,
                "people.enabled": False,
                "features.cues": True,  # the language tokens with times the pretraining aligns to shots
            },
        )
        init_ray(tag.ray_address)
        print(run_tagging(plan_tagging(tag, source, dest)).render(), flush=True)
        overrides = {"catalog": dest, "run.folder": runs, "s3.endpoint_url": server.endpoint_url}
        cfg = load_config(str(CONFIG), overrides, schema=PretrainMultimodalConfig)
        print("pretrain multimodal, " + cfg.console(verbose()), flush=True)
        summary = run_pretrain_multimodal(cfg)
        print(summary.render(), flush=True)
        print(embed_multimodal(summary["run"], dest, s3).render(), flush=True)
        editing = eval_editing(EvalEditingConfig(run=summary["run"], catalog=dest, per_movie=40, s3=cfg.s3))
        print(editing.render(), flush=True)
        videos = CatalogStore(dest, s3).read_table("videos", columns=["video_id", "uri"])
        genre = dict(line.split(",") for line in genres.read_text().splitlines()[1:])
        labels = "video_id,label\n" + "".join(
            f"{v},{genre[u]}\n" for v, u in zip(videos["video_id"].to_pylist(), videos["uri"].to_pylist())
        )
        with s3.filesystem().open_output_stream(f"{BUCKET}/genre-labels.csv") as f:
            f.write(labels.encode())
        heads = load_config(
            None,
            {
                "data.catalog": dest,
                "data.features": TABLE,
                "data.model": "multimodal-cross",
                "data.labels": f"s3://{BUCKET}/genre-labels.csv",
                "data.val_fraction": 0.25,
                "data.test_fraction": 0.25,
                "head.name": "linear",
                "head.epochs": 10,
                "run.folder": runs,
                "run.name": "genre-head",
                "s3.endpoint_url": server.endpoint_url,
                "tune.num_samples": 1,
            },
            schema=HeadsConfig,
        )
        head = run_heads(heads, sweep=False)
        print(head.render(), flush=True)
        local = copy_to_output(out, s3, {"tags": f"{BUCKET}/av-tags", "run": summary["run"], "head": head["run"]})
        curves = local / "run" / "multimodal" / "curves.png"
        print(f"copied the catalog, the run and the head to {local}: curves in {curves}")
    print(f"multimodal demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
