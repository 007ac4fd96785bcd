"""`movielib demo`: the whole tagging job on the embedded default, from nothing.

Starts an S3-compatible server on 127.0.0.1 (moto), generates the sample catalog into a
bucket, tags it on a local Ray with an untrained CLIP, and copies the Parquet output to a
local folder (the in-memory S3 server goes away when the demo ends).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.fs as pafs

from movielib.demo.s3server import MotoS3Server
from movielib.demo.samples import write_sample_catalog
from movielib.errors import MovielibError
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.report import contact_sheet
from movielib.runtime import init_ray
from movielib.store.store import CatalogStore

BUCKET = "movielib-demo"


def _fresh_output_folder(out: str) -> Path:
    """The demo's local copy replaces an earlier demo output, and never anything else."""
    local = Path(out).resolve()
    if local.exists() and any(local.iterdir()):
        if not (local / "_movielib").is_dir():
            raise MovielibError(f"--out {local} exists and is not a movielib output folder; choose another")
        shutil.rmtree(local)
    return local


def copy_to_output(out: str, s3: S3Options, prefixes: dict[str, str]) -> Path:
    """Each S3 prefix into its subfolder of the demo's fresh output folder ("": the folder itself), which is
    then marked as a movielib output (`_movielib/`) so that the next demo may replace it."""
    local = _fresh_output_folder(out)
    for sub, prefix in prefixes.items():
        pafs.copy_files(prefix.removeprefix("s3://"), str(local / sub), source_filesystem=s3.filesystem())
    (local / "_movielib").mkdir(parents=True, exist_ok=True)
    return local


def run_demo(out: str, model: str = "ViT-B-32") -> int:
    t0 = time.perf_counter()
    with MotoS3Server() as server, tempfile.TemporaryDirectory() as tmp:
        server.use()
        known = write_sample_catalog(tmp)
        n = server.upload_folder(tmp, BUCKET, "catalog")
        print(
            f"S3 server {server.endpoint_url}: uploaded {n} objects to s3://{BUCKET}/catalog/ "
            f"({sum(v is not None for v in known.values())} generated clips with known cuts, "
            f"packaged footage, 1 truncated object)",
            flush=True,
        )
        source, dest = f"s3://{BUCKET}/catalog/", f"s3://{BUCKET}/tags"
        cfg = load_tag_config(
            None, {"model.name": model, "model.random_weights": True, "s3.endpoint_url": server.endpoint_url}
        )
        plan = plan_tagging(cfg, source, dest)
        init_ray(cfg.ray_address)
        summary = run_tagging(plan)
        print(summary.render(), flush=True)
        s3 = S3Options.from_env(server.endpoint_url)
        local = copy_to_output(out, s3, {"": f"{BUCKET}/tags"})
        store = CatalogStore(str(local))
        tables = store.read_tables("videos", "shots", "tags")
        counts = {name: table.num_rows for name, table in tables.items()}
        print(f"copied the output to {local}: " + ", ".join(f"{k} {v} rows" for k, v in counts.items()))
        png, page, _ = contact_sheet(dest, str(local / "contact-sheet"), "bikes.mp4", s3)
        print(f"contact sheet of bikes.mp4: {png} and {page}")
        uris = {v["video_id"]: v["uri"] for v in tables["videos"].to_pylist()}
        detected: dict[str, list[int]] = {}
        for shot in sorted(tables["shots"].to_pylist(), key=lambda s: s["start_frame"]):
            detected.setdefault(uris[shot["video_id"]].split("/catalog/", 1)[1], []).append(shot["start_frame"])
        for rel, cuts in known.items():
            if cuts is not None:
                print(f"  {rel}: detected cuts {detected.get(rel, [0])[1:]}, known cuts {cuts}")
    print(f"demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
