"""CLIP image scoring images/s: the Ray Data pipeline's scorer actor vs a bare open_clip loop in one
process, same model, batch and threads. Both are timed from their first output to their last, so
model loading and actor start-up are left out of both."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import ray
import torch

from bench.common import Row, Size, sized
from movielib.models.clip import ClipSpec, FramePreprocess, load_clip
from movielib.pipeline.stages import ClipSceneScorer
from movielib.pipeline.stages.columns import with_tensor_column
from movielib.tagging.scene_score import CleanRules, clip_scene_score
from movielib.taxonomy.labels import LabelSet

FRAMES_PER_SHOT = 8


def _bare_loop(spec: ClipSpec, crops: np.ndarray, batch: int, threads: int) -> float:
    torch.set_num_threads(threads)
    clip = load_clip(spec)
    with torch.inference_mode():
        text = clip.model.encode_text(clip.tokenizer(LabelSet.movieclip().prompts()), normalize=True)
        t_first = None
        for i in range(0, len(crops), batch):
            emb = clip.model.encode_image(clip.preprocess.to_model_input(crops[i : i + batch]))
            clip_scene_score(emb, text, [FRAMES_PER_SHOT] * (len(emb) // FRAMES_PER_SHOT))
            if t_first is None:
                t_first, done_first = time.perf_counter(), len(emb)
    return (len(crops) - done_first) / (time.perf_counter() - t_first)


def _pipeline(spec: ClipSpec, crops: np.ndarray, batch: int, threads: int) -> float:
    shots = [crops[i : i + FRAMES_PER_SHOT] for i in range(0, len(crops), FRAMES_PER_SHOT)]
    rows = pa.table({"video_id": ["v"] * len(shots), "shot_idx": list(range(len(shots)))})
    ds = ray.data.from_arrow([with_tensor_column(rows.slice(i, 1), "frames", [shots[i]]) for i in range(len(shots))])
    ds = ds.map_batches(
        ClipSceneScorer,
        fn_constructor_kwargs=dict(
            spec=spec, labels=LabelSet.movieclip(), rules=CleanRules(), frames_per_forward=batch, torch_threads=threads
        ),
        batch_size=batch // FRAMES_PER_SHOT,
        batch_format="pyarrow",
        num_cpus=threads,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=1),
    )
    t_first, done_first, done = None, 0, 0
    for out in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        done += out.num_rows * FRAMES_PER_SHOT
        if t_first is None:
            t_first, done_first = time.perf_counter(), done
    return (done - done_first) / (time.perf_counter() - t_first)


def run(size: Size = "full", model: str = "ViT-B-32-quickgelu", threads: int = 2) -> list[Row]:
    spec = ClipSpec(model, random_weights=True)
    batch = 32
    n = batch * sized(size, 16, 6, 2)
    size = FramePreprocess.for_spec(spec).size
    crops = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    bare = _bare_loop(spec, crops, batch, threads)
    ours = _pipeline(spec, crops, batch, threads)
    return [
        Row(
            "CLIP scoring",
            f"{model} fp32, batch {batch}, {threads} threads: pipeline vs bare loop",
            ours,
            bare,
            "images/s",
            0.9,
        )
    ]
