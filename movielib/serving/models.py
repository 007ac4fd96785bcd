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
import contextlib
import functools
import os
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from ray import serve

from movielib.heads.train import load_head, predict
from movielib.io.uri import filesystem_for
from movielib.models.clip import ClipSpec, load_clip
from movielib.serving.config import LimitsSection
from movielib.serving.media import Refused, probe_clip, read_image
from movielib.tagging.scene_score import CleanRules
from movielib.tagging.tagger import SceneTagger
from movielib.tagging.video import VideoCutter, VideoReadError
from movielib.taxonomy.labels import LabelSet


def counted(batch: Callable) -> Callable:
    """A batch method whose raising counts toward the replica's health (Batched.check_health)."""

    @functools.wraps(batch)
    async def run(self, requests):
        try:
            out = await batch(self, requests)
        except Exception:
            self._ran(False)
            raise
        self._ran(True)
        return out

    return run


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

    failed_batches = 0  # batches in a row that raised: the model, not a request, is at fault
    MAX_FAILED_BATCHES = 3

    def _ran(self, ok: bool) -> None:
        self.failed_batches = 0 if ok else self.failed_batches + 1

    def check_health(self) -> None:
        """Serve's health check: a replica whose last batches all raised (a lost GPU, a broken model) is
        replaced, rather than kept answering 500s; requests' own faults never reach here."""
        if self.failed_batches >= self.MAX_FAILED_BATCHES:
            raise RuntimeError(f"the last {self.failed_batches} batches failed")


class TextEncoder(Batched):
    batched = ("embed",)

    def __init__(self, spec: dict):
        self.clip = load_clip(ClipSpec(**spec))

    @serve.batch
    @counted
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
    @counted
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
        limits: dict | None = None,
        uri_max_mb: float = 200.0,
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
        self.limits = LimitsSection(**(limits or {}))
        self.uri_max_bytes = int(uri_max_mb * 2**20)

    @serve.batch
    @counted
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
        """One encoded image, decoded here beside the model (its header checked against the limits first)."""
        try:
            return await self.frames([read_image(data, self.limits)])
        except Refused as exc:
            return {"status": exc.status, "error": exc.reason}

    async def frames(self, images: list[np.ndarray]) -> dict:
        """One shot of RGB frames (an image is a one-frame shot)."""
        if len(images) > self.max_frames:
            return {"status": 413, "error": f"{len(images)} frames, more than tagger.max_frames ({self.max_frames})"}
        tagged = await self._score((self.tagger.crop(images), [len(images)]))
        return {"shots": [_shot(tagged[0], frames=len(images))]}

    @contextlib.contextmanager
    def _fetched(self, uri: str):
        """An s3:// clip on local disk, its size checked first; missing and forbidden read alike."""
        from movielib.io.video import local_copy

        refused = Refused(404, f"{uri}: no clip there that this service may read")
        try:
            fs, key = filesystem_for(uri, self.s3)
            info = fs.get_file_info(key)
        except OSError:
            raise refused from None
        if info.size is None or info.size <= 0:
            raise refused
        if info.size > self.uri_max_bytes:
            raise Refused(413, f"{uri} is {info.size} bytes, more than uri.max_mb ({self.uri_max_bytes} bytes)")
        try:
            with local_copy(uri, self.s3) as path:
                yield path
        except (OSError, VideoReadError):
            raise refused from None

    def _cut(self, path: str, what: str) -> tuple[np.ndarray, list[int], list[dict]]:
        """The local clip at `path` probed against the limits, then cut into shots as the batch job cuts them,
        decoding no further than `tagger.max_frames` samples: (crops, frames per shot, shot times)."""
        probe_clip(path, self.limits, what)
        shots, frames = [], 0
        try:
            for block in self.cutter.blocks(path, what):
                for s in block.shots:
                    if len(s.crops):
                        shots.append(s)
                        frames += len(s.crops)
                if frames > self.max_frames:
                    raise Refused(413, f"{what} samples more than tagger.max_frames ({self.max_frames}) frames: "
                                  "send a shorter clip")  # fmt: skip
        except VideoReadError:  # the clip's own fault; its reason names the clip, not a path
            raise Refused(422, f"{what} cannot be decoded (corrupt, truncated or not a video)") from None
        if not shots:
            raise Refused(422, f"{what}: no shots")
        meta = [{"start_s": s.shot.start_s, "end_s": s.shot.end_s} for s in shots]
        return np.concatenate([s.crops for s in shots]), [len(s.crops) for s in shots], meta

    def _cut_upload(self, data: bytes) -> tuple[np.ndarray, list[int], list[dict]]:
        fd, tmp = tempfile.mkstemp(prefix="movielib-serve-")  # no suffix: the container, not a name, picks the demuxer
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self._cut(tmp, "the uploaded clip")
        finally:
            os.unlink(tmp)

    def _cut_uri(self, uri: str) -> tuple[np.ndarray, list[int], list[dict]]:
        with self._fetched(uri) as path:
            return self._cut(path, uri)

    async def clip(self, data: bytes | None = None, uri: str | None = None) -> dict:
        """A short video (uploaded bytes, or an s3:// URI the ingress allowed) cut into shots and tagged like the
        batch job."""
        try:
            if data is not None:
                crops, counts, meta = await asyncio.to_thread(self._cut_upload, data)
            else:
                crops, counts, meta = await asyncio.to_thread(self._cut_uri, uri)
        except Refused as exc:
            return {"status": exc.status, "error": exc.reason}
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
    @counted
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
