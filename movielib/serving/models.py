"""The model deployments: CLIP text and image encoders, the scene tagger, exported heads.

Each loads its model once per replica and scores requests in dynamic batches (`@serve.batch`; the
batch size and wait come from the config through `reconfigure`, so `serve deploy` can change them
in place). The tagger runs the batch job's own code: a clip is cut and sampled by `VideoCutter`
(one decode pass, 4 fps per shot) and scored by `SceneTagger` (same crops, same CLIPSceneScore,
same clean rules), so a video tagged online gets the tags the batch job wrote for it.
A request that is bad for reasons of its own comes back as {"error": ..., "status": 4xx}, never as
an exception: the replica stays up and the ingress answers with that status.
"""

from __future__ import annotations

import asyncio
import os
import tempfile

import numpy as np
import torch
from ray import serve

from movielib.heads.train import load_head, predict
from movielib.models.clip import ClipSpec, load_clip
from movielib.tagging.scene_score import CleanRules
from movielib.tagging.tagger import SceneTagger
from movielib.tagging.video import VideoCutter, VideoReadError
from movielib.taxonomy.labels import LabelSet


class Batched:
    """Batch size and wait of a deployment's @serve.batch method, set from the config (user_config)."""

    batched: tuple[str, ...] = ()

    def reconfigure(self, config: dict) -> None:
        for name in self.batched:
            method = getattr(self, name)
            method.set_max_batch_size(int(config.get("max_batch_size", 8)))
            method.set_batch_wait_timeout_s(float(config.get("batch_wait_timeout_s", 0.01)))
        self.batch_sizes: list[int] = getattr(self, "batch_sizes", [])

    def _seen(self, n: int) -> None:
        self.batch_sizes = (getattr(self, "batch_sizes", []) + [n])[-1000:]

    def stats(self) -> dict:
        """Batch sizes this replica has run (the last 1000): what a load test reads to see batching happen."""
        return {"batch_sizes": list(getattr(self, "batch_sizes", []))}


class TextEncoder(Batched):
    batched = ("embed",)

    def __init__(self, spec: dict):
        self.clip = load_clip(ClipSpec(**spec))

    @serve.batch
    async def embed(self, texts: list[list[str]]) -> list[np.ndarray]:
        self._seen(len(texts))
        flat = [t for request in texts for t in request]
        with torch.inference_mode():
            emb = self.clip.model.encode_text(self.clip.tokenizer(flat), normalize=True).float().numpy()
        out, at = [], 0
        for request in texts:
            out.append(emb[at : at + len(request)])
            at += len(request)
        return out


class ImageEncoder(Batched):
    batched = ("embed",)

    def __init__(self, spec: dict):
        self.clip = load_clip(ClipSpec(**spec))

    @serve.batch
    async def embed(self, images: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Each request: RGB uint8 images of any size -> L2-normalised embeddings (open_clip's eval preprocessing)."""
        self._seen(len(images))
        crops = self.clip.preprocess.crop([im for request in images for im in request])
        with torch.inference_mode():
            x = self.clip.preprocess.to_model_input(crops)
            emb = self.clip.model.encode_image(x, normalize=True).float().numpy()
        out, at = [], 0
        for request in images:
            out.append(emb[at : at + len(request)])
            at += len(request)
        return out


def _shot(tagged, start_s=None, end_s=None, frames=None) -> dict:
    t = tagged.tags
    return {
        "labels": list(t.labels),
        "scores": [float(s) for s in t.scores],
        "clean": bool(t.clean),
        "labels_multi": list(t.labels_multi),
        **({"start_s": start_s, "end_s": end_s} if start_s is not None else {}),
        **({"frames": frames} if frames is not None else {}),
    }


class Tagger(Batched):
    """Scene tags for an image (one shot), a list of frames (one shot) or a clip (its shots)."""

    batched = ("_score",)

    def __init__(
        self,
        spec: dict,
        labels: str | None,
        prompt: str,
        rules: dict,
        fps: float,
        max_frames: int,
        s3: dict | None = None,
    ):
        from movielib.io.uri import S3Options
        from movielib.models.clip import FramePreprocess
        from movielib.shots import make_detector

        clip_spec = ClipSpec(**spec)
        label_set = LabelSet.from_file(labels, prompt) if labels else LabelSet.movieclip(prompt)
        self.tagger = SceneTagger(clip_spec, label_set, CleanRules(**rules))
        self.s3 = S3Options.from_env(**(s3 or {}))
        # the batch job's cutting and sampling, unchanged (the tagging core both shells use)
        self.cutter = VideoCutter(make_detector(), FramePreprocess.for_spec(clip_spec), fps, self.s3)
        self.max_frames = max_frames

    @serve.batch
    async def _score(self, requests: list[tuple[np.ndarray, list[int]]]) -> list[list]:
        self._seen(len(requests))
        crops = np.concatenate([c for c, _ in requests])
        tagged = self.tagger.tag(crops, [n for _, counts in requests for n in counts])
        out, at = [], 0
        for _, counts in requests:
            out.append(tagged[at : at + len(counts)])
            at += len(counts)
        return out

    async def image(self, data: bytes) -> dict:
        """One encoded image (decoded here, beside the model: the ingress forwards the compact bytes)."""
        import cv2

        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            return {"status": 422, "error": "the body is not an image that can be decoded (JPEG, PNG, WebP, BMP, ...)"}
        return await self.frames([np.ascontiguousarray(image[..., ::-1])])

    async def frames(self, images: list[np.ndarray]) -> dict:
        """One shot of RGB frames (an image is a one-frame shot)."""
        if len(images) > self.max_frames:
            return {"status": 413, "error": f"{len(images)} frames, more than tagger.max_frames ({self.max_frames})"}
        tagged = await self._score((self.tagger.crop(images), [len(images)]))
        return {"shots": [_shot(tagged[0], frames=len(images))]}

    def _cut(self, where: str, uri: str) -> tuple[np.ndarray | None, list[int], list[dict], str | None]:
        """The clip at `where` (a path or s3:// URI; `uri` names it) cut into shots as the batch job cuts them:
        (crops, frames per shot, shot times, None), or the reason it cannot be read."""
        from movielib.io.video import local_copy

        try:
            with local_copy(where, self.s3) as path:
                shots = [s for block in self.cutter.blocks(path, uri) for s in block.shots if len(s.crops)]
        except VideoReadError as exc:  # the clip's own fault
            return None, [], [], str(exc)
        if not shots:
            return None, [], [], f"{uri}: no shots"
        meta = [{"start_s": s.shot.start_s, "end_s": s.shot.end_s} for s in shots]
        return np.concatenate([s.crops for s in shots]), [len(s.crops) for s in shots], meta, None

    async def clip(self, data: bytes | None = None, uri: str | None = None) -> dict:
        """A short video (uploaded bytes, or an s3:// URI / path) cut into shots and tagged like the batch job."""
        path, tmp = uri, None
        if data is not None:
            fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="movielib-serve-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            path = tmp
        try:
            crops, counts, meta, error = await asyncio.to_thread(self._cut, path, uri or "the uploaded clip")
        finally:
            if tmp:
                os.unlink(tmp)
        if error:
            return {"status": 422, "error": error}
        if sum(counts) > self.max_frames:
            return {
                "status": 413,
                "error": f"the clip samples {sum(counts)} frames, more than tagger.max_frames "
                f"({self.max_frames}): send a shorter clip",
            }
        tagged = await self._score((crops, counts))
        return {"shots": [_shot(t, m["start_s"], m["end_s"], n) for t, m, n in zip(tagged, meta, counts)]}


class Heads(Batched):
    """Every exported head of the config, by name: features -> labels with probabilities (or values)."""

    batched = ("_predict",)

    def __init__(self, heads: dict[str, str]):
        from movielib.runtime import read_bytes

        self.heads = {name: load_head(read_bytes(uri)) for name, uri in heads.items()}

    def describe(self) -> dict:
        return {
            name: {
                "task": m["task"],
                "labels": m["label_names"],
                "features": m["features"],
                "feature_model": m["feature_model"],
                "in_dim": m["head"]["in_dim"],
            }
            for name, (_, m) in self.heads.items()
        }

    @serve.batch
    async def _predict(self, requests: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        self._seen(len(requests))
        out: list = [None] * len(requests)
        for name in {n for n, _ in requests}:
            idx = [i for i, (n, _) in enumerate(requests) if n == name]
            model, meta = self.heads[name]
            pred = predict(model, np.concatenate([requests[i][1] for i in idx]).astype(np.float32), meta["task"])
            at = 0
            for i in idx:
                n = len(requests[i][1])
                out[i], at = pred[at : at + n], at + n
        return out

    async def predict(self, name: str, features: np.ndarray) -> dict:
        if name not in self.heads:
            return {"status": 404, "error": f"no head {name!r} (serving: {', '.join(sorted(self.heads)) or 'none'})"}
        model, meta = self.heads[name]
        if features.ndim != 2 or features.shape[1] != meta["head"]["in_dim"]:
            return {
                "status": 422,
                "error": f"head {name!r} takes {meta['head']['in_dim']}-d features of "
                f"{meta['feature_model']}, got shape {list(features.shape)}",
            }
        pred = await self._predict((name, features))
        if meta["task"] == "regression":
            return {"predictions": [{"value": float(v)} for v in pred]}
        names = meta["label_names"]
        return {
            "predictions": [
                {"labels": [names[j] for j in np.argsort(-p)], "scores": [float(p[j]) for j in np.argsort(-p)]}
                for p in pred
            ]
        }
