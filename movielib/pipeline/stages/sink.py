"""CatalogSink: commits scored per-shot rows as the catalog's tables, in batches, with a manifest entry."""

from __future__ import annotations

import collections
import time

import pyarrow as pa
from ray.data import Datasink
from ray.data.block import BlockAccessor

from movielib.features.schema import SHOTS, TAGS, VIDEOS, table_schema
from movielib.features.store import CatalogStore
from movielib.io.uri import S3Options
from movielib.pipeline.stages.columns import FeatureSpec


class CatalogSink(Datasink[list[dict]]):
    """Commits scored per-shot rows as videos / shots / tags / features Parquet, in batches.

    `skip_shots` holds the (video_id -> shot_idx) keys earlier runs committed for videos they
    left unfinished, so a resumed run never writes a row twice. Each write returns counts and
    top-1 label tallies, which the driver folds into the run summary.
    """

    def __init__(self, dest: str, s3: S3Options | None, run_id: str, rows_per_file: int,
                 features: list[FeatureSpec] | None = None,
                 skip_shots: dict[str, set[int]] | None = None, skip_videos: set[str] | None = None):
        self.dest = dest
        self.s3 = s3
        self.run_id = run_id
        self.rows_per_file = rows_per_file
        self.features = features or []
        self.skip_shots = skip_shots or {}
        self.skip_videos = skip_videos or set()
        self.results: list[dict] = []

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    def write(self, blocks, ctx) -> list[dict]:
        """Commit the rows Ray hands this task in batches of at most rows_per_file rows."""
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        rows = pa.concat_tables(tables, promote_options="default").to_pylist() if tables else []
        store = CatalogStore(self.dest, self.s3)
        return [self._commit(store, rows[i:i + self.rows_per_file]) for i in range(0, len(rows), self.rows_per_file)]

    def _commit(self, store: CatalogStore, rows: list[dict]) -> dict:
        t0 = time.perf_counter()
        out: dict[str, list[dict]] = {"videos": [], "shots": [], "tags": [], **{f"features/{f.modality}": [] for f in self.features}}
        entries: dict[str, dict] = {}
        top1: collections.Counter[str] = collections.Counter()
        stage_s: collections.Counter[str] = collections.Counter()
        errors = []
        for r in rows:
            vid, idx = r["video_id"], r["shot_idx"]
            stage_s.update({k[2:]: v for k, v in r.items() if k.startswith("t_") and v})
            # the video row comes from its error row or its last shot's row (the one that knows the counts)
            if (idx < 0 or idx == (r["n_shots"] or 0) - 1) and vid not in self.skip_videos:
                out["videos"].append({k: r[k] for k in VIDEOS.names})
                entries[vid] = {"status": r["status"], "n_shots": r["n_shots"], "uri": r["uri"]}
                if r["status"] == "error":
                    errors.append({"uri": r["uri"], "error": r["error"]})
            if idx < 0 or idx in self.skip_shots.get(vid, ()):
                continue
            out["shots"].append({k: r[k] for k in SHOTS.names})
            out["tags"].append({k: r.get(k) for k in TAGS.names})
            for f in self.features:
                out[f"features/{f.modality}"].append({"video_id": vid, "shot_idx": idx, "model": f.model,
                                                      "model_version": f.version, "embedding": r.get(f"{f.modality}_embedding")})
            if r["labels"]:
                top1[r["labels"][0]] += 1
        dims = {f.modality: f.dim for f in self.features}
        bid = store.commit({name: pa.Table.from_pylist(rows_, schema=table_schema(name, dims)) for name, rows_ in out.items()},
                           self.run_id, entries)
        return {"batch_id": bid, "videos_ok": sum(e["status"] == "ok" for e in entries.values()),
                "videos_error": len(errors), "errors": errors, "shots": len(out["shots"]),
                "clean": sum(bool(t["clean"]) for t in out["tags"]), "top1": dict(top1),
                "faces": sum(1 for t in out["tags"] if t.get("face_count")), "stage_s": dict(stage_s),
                "write_s": time.perf_counter() - t0}

    def on_write_complete(self, write_result) -> None:
        """Runs on the driver: keep the per-batch returns for the run summary."""
        self.results = [r for batch in write_result.write_returns for r in batch]
