"""Movies2Scenes' data path at catalog scale: what step 1's and step 3's inputs cost as the catalog grows.

Synthetic Delta tables (no video decode): N movies x S shots of features/keyframe (16-d) and tiny JPEG
keyframes, in 10 genres. For each N: the movie pairs the job draws (catalog_pairs), step 1's joined pairs
materialized (the movies cut to the model's shots), step 3's scene windows materialized (4 scene pairs per
similar movie pair), and one epoch's pass over each through its per-epoch map (padding, JPEG decoding), read
in a Ray task (as a training worker reads it). Printed per movie, big vs small: seconds, object store bytes,
driver peak RSS above the start.
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.common import Row, Size, sized

DIM, GENRES = 16, 10


def _catalog(dest: Path, movies: int, shots: int) -> str:
    import cv2

    from movielib.store import CatalogStore, table_schema

    ok, jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    rng = np.random.default_rng(0)
    store = CatalogStore(str(dest))
    for start in range(0, movies, 100):  # a commit per 100 movies, as a tagging run's batches land
        ids = [f"m{i:06d}" for i in range(start, min(movies, start + 100))]
        vid = np.repeat(ids, shots)
        idx = np.tile(np.arange(shots, dtype=np.int32), len(ids))
        emb = rng.normal(size=(len(vid), DIM)).astype(np.float32)
        features = pa.table(
            {
                "video_id": vid,
                "shot_idx": idx,
                "model": ["kf"] * len(vid),
                "model_version": ["v1"] * len(vid),
                "embedding": pa.array(list(emb), pa.list_(pa.float32())),
            }
        )
        keyframes = {"video_id": vid, "shot_idx": idx, "jpeg": [jpeg.tobytes()] * len(vid)}
        names = table_schema("keyframes").names
        keyframes = pa.table({n: keyframes.get(n, [None] * len(vid)) for n in names}, schema=table_schema("keyframes"))
        videos = pa.Table.from_pylist(
            [{"video_id": v, "uri": f"s3://b/{v}.mp4", "status": "ok"} for v in ids], schema=table_schema("videos")
        )
        store.commit(
            {
                "features/keyframe": features.cast(table_schema("features/keyframe")),
                "keyframes": keyframes,
                "videos": videos,
            },
            run_id="bench",
            seq=start,
        )
    genres = dest.parent / f"genres-{movies}.csv"
    genres.write_text("movie,genres\n" + "".join(f"m{i:06d},g{i % GENRES}\n" for i in range(movies)))
    return str(genres)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _epoch(ds) -> int:
    """One epoch's pass, read where a training worker reads it (not on the driver, whose memory is measured)."""
    return sum(len(next(iter(b.values()))) for b in ds.iter_batches(batch_size=64))


def _measure(dest: str, genres: str, shots: int) -> dict:
    import ray

    from movielib.config import build_config
    from movielib.store import CatalogStore
    from movielib.train.movies2scenes.config import PretrainScenesConfig
    from movielib.train.movies2scenes.data import PadPairs, decode_scenes, movie_pairs, scene_frames
    from movielib.train.movies2scenes.job import catalog_pairs
    from movielib.train.movies2scenes.pairs import SCENE_PAIRS

    cfg = build_config(PretrainScenesConfig, {"catalog": dest, "similarity": {"path": genres}})
    epoch = ray.remote(num_cpus=0.5)(_epoch)
    store, rss0, t0 = CatalogStore(dest), _rss_mb(), time.perf_counter()
    train, _, _ = catalog_pairs(cfg, store)
    step1 = movie_pairs(store, train, "features/keyframe", "kf", "v1", min(shots, 1024)).materialize()
    t_step1 = time.perf_counter() - t0
    store_step1 = step1.size_bytes()
    t0 = time.perf_counter()
    ray.get(epoch.remote(step1.map_batches(PadPairs(min(shots, 1024), DIM), batch_format="pyarrow", batch_size=16)))
    epoch1 = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    similar = train.filter(pa.compute.equal(train["label"], 1.0)).to_pylist()
    rows = []
    for p in similar:
        for _ in range(4):
            a, b = rng.integers(0, shots - 9, 2)
            rows.append(
                {
                    "movie_a": p["a"],
                    "a_first": int(a),
                    "a_last": int(a) + 8,
                    "movie_b": p["b"],
                    "b_first": int(b),
                    "b_last": int(b) + 8,
                    "score": 1.0,
                }
            )
    t0 = time.perf_counter()
    step3 = scene_frames(store, pa.Table.from_pylist(rows, schema=SCENE_PAIRS)).materialize()
    t_step3, store_step3 = time.perf_counter() - t0, step3.size_bytes()
    t0 = time.perf_counter()
    ray.get(epoch.remote(step3.map_batches(decode_scenes, batch_format="pyarrow", batch_size=16)))
    epoch3 = time.perf_counter() - t0
    del step1, step3  # the next catalog starts from an empty object store
    return {
        "pairs": train.num_rows,
        "scene_pairs": len(rows),
        "step1_prep_s": t_step1,
        "step1_epoch_s": epoch1,
        "step1_store_b": store_step1,
        "step3_prep_s": t_step3,
        "step3_epoch_s": epoch3,
        "step3_store_b": store_step3,
        "rss_mb": _rss_mb() - rss0,
    }


def run(size: Size = "full", sizes: tuple[int, ...] | None = None, shots: int | None = None) -> list[Row]:
    import ray

    sizes = sizes or sized(size, (100, 1000), (40, 200), (40, 60))  # 10 genres: >= 4 movies a genre, 3 similar each
    shots = shots or sized(size, 1000, 100, 20)
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # its own Ray, always
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if size != "micro":  # imports and Ray Data's first executions are not the catalog's cost
            warm = Path(tmp) / "warm-up"
            _measure(str(warm), _catalog(warm, 20, 20), 20)
        for n in sizes:
            dest = Path(tmp) / f"catalog-{n}"
            genres = _catalog(dest, n, shots)
            results[n] = _measure(str(dest), genres, shots)
            print(
                f"train-scale N={n} x {shots} shots: " + ", ".join(f"{k} {v:.3g}" for k, v in results[n].items()),
                flush=True,
            )
    small, big = sizes[0], sizes[-1]
    rows = []
    for key, unit in (
        ("step1_prep_s", "s/movie"),
        ("step1_epoch_s", "s/movie"),
        ("step1_store_b", "B/movie"),
        ("step3_prep_s", "s/movie"),
        ("step3_epoch_s", "s/movie"),
        ("step3_store_b", "B/movie"),
    ):
        per = {n: results[n][key] / n for n in (small, big)}
        # lower is better: the baseline is the big catalog, so ratio = small / big per movie (>= 1/1.5 is the target
        # for time; bytes per movie follow the pairs a movie is in, which grow with a small catalog's genre groups:
        # their target is per pair, below)
        rows.append(
            Row(
                "train-scale",
                f"{key}: N={big} vs N={small}, {shots} shots each",
                per[small],
                per[big],
                unit,
                1 / 1.5 if unit == "s/movie" else None,
                f"{per[big]:.3g} at {big}, {per[small]:.3g} at {small}",
            )
        )
    for key, count in (("step1_store_b", "pairs"), ("step3_store_b", "scene_pairs")):  # what a step consumes
        per = {n: results[n][key] / max(results[n][count], 1) for n in (small, big)}
        rows.append(
            Row(
                "train-scale",
                f"{key} per {count[:-1].replace('_', ' ')}: N={big} vs N={small}",
                per[small],
                per[big],
                f"B/{count[:-1]}",
                1 / 1.5,
                f"{results[big][count]} at {big}, {results[small][count]} at {small}",
            )
        )
    rows.append(  # the process's high-water mark: what the big catalog added over the small one's peak
        Row(
            "train-scale",
            f"driver peak RSS growth: N={big} vs N={small}",
            results[big]["rss_mb"],
            max(results[small]["rss_mb"], 1.0),
            "MB",
            None,
            f"{results[big]['rss_mb']:.0f} MB more at {big}, {results[small]['rss_mb']:.0f} MB at {small}",
        )
    )
    return rows
