"""ClipSceneScorer: the Ray Data wrapper of SceneTagger (movielib.tagging.tagger), one per actor."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from movielib.models.clip import ClipSpec
from movielib.pipeline.stages.columns import EMBEDDING, SCORE_COLUMNS, tensor_column, timed
from movielib.tagging.scene_score import CleanRules
from movielib.tagging.tagger import SceneTagger, keyframe_index
from movielib.taxonomy.labels import LabelSet


class ClipSceneScorer:
    """CLIPSceneScore for every shot of a batch of rows (MovieCLIP §4).

    The tagger (model, prompt embeddings) is built once per actor, on the GPU only when the actor
    reserved one. Each call tags all the batch's shots that have frames; error rows pass through
    with null tags. The same forward pass gives the image feature (mean normalised frame embedding).
    """

    def __init__(
        self,
        spec: ClipSpec,
        labels: LabelSet,
        rules: CleanRules,
        frames_per_forward: int = 64,
        precision: str = "fp32",
        torch_threads: int | None = None,
        image_features: bool = False,
        keyframes: bool = False,
        score_features: bool = False,
    ):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.tagger = SceneTagger(spec, labels, rules, precision=precision, frames_per_forward=frames_per_forward)
        self.image_features = image_features
        self.keyframes = keyframes
        self.score_features = score_features  # every label's score per shot (features/scores), not only the top k

    @timed("score")
    def __call__(self, batch: pa.Table) -> pa.Table:
        frames = tensor_column(batch, "frames")
        scored = [i for i, f in enumerate(frames) if len(f)]
        columns: dict[str, list] = {f.name: [None] * batch.num_rows for f in SCORE_COLUMNS}
        image_emb: list = [None] * batch.num_rows
        key_emb: list = [None] * batch.num_rows
        jpegs: list = [None] * batch.num_rows
        all_scores: list = [None] * batch.num_rows
        if scored:
            shots = self.tagger.tag(np.concatenate([frames[i] for i in scored]), [len(frames[i]) for i in scored])
            for row, shot in zip(scored, shots):
                for key in ("labels", "scores", "clean", "labels_multi"):
                    columns[key][row] = getattr(shot.tags, key)
                columns["model"][row] = self.tagger.model_name
                image_emb[row] = shot.embedding.tolist()
                all_scores[row] = shot.scores.tolist() if self.score_features else None
                if self.keyframes:
                    key_emb[row] = shot.keyframe_embedding.tolist()
                    jpegs[row] = encode_jpeg(frames[row][keyframe_index(len(frames[row]))])
        out = batch.drop_columns(["frames"])
        for f in SCORE_COLUMNS:
            out = out.append_column(f, pa.array(columns[f.name], f.type))
        if self.image_features:
            out = out.append_column("image_embedding", pa.array(image_emb, EMBEDDING))
        if self.score_features:
            out = out.append_column("scores_embedding", pa.array(all_scores, EMBEDDING))
        if self.keyframes:
            out = out.append_column("keyframe_embedding", pa.array(key_emb, EMBEDDING))
            out = out.append_column("keyframe_jpeg", pa.array(jpegs, pa.binary()))
        return out


def encode_jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    """A model-size RGB crop as a JPEG (what the keyframes table holds)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {rgb.shape} frame as JPEG")
    return buf.tobytes()
