"""The HTTP ingress (FastAPI on Ray Serve) and the application builder `serve/app.py` and `movielib serve` use.

    GET  /healthz            {"status": "ok"}
    GET  /version            movielib's version, the CLIP model and weights, the labels, every head
    POST /embed/text         {"texts": ["a beach", ...]}                    -> {"embeddings": [[...], ...]}
    POST /embed/image        image bytes (image/*), or {"images": [base64]} -> {"embeddings": [[...], ...]}
    POST /tag                image bytes (image/*): one shot; video bytes (video/*, application/octet-stream):
                             its shots; {"frames": [base64, ...]}: one shot; {"uri": "s3://..."}: a clip in S3
                             -> {"shots": [{"labels", "scores", "clean", "labels_multi", "start_s", "end_s"}]}
    POST /heads/{name}       {"features": [[...], ...]} -> {"predictions": [{"labels", "scores"}]} ({"value"})
    GET  /docs               OpenAPI docs (FastAPI)

Bad input is a 4xx with {"detail": reason}: 400 malformed JSON, 413 a body past `max_body_mb`,
415 a body that is not an image / video / JSON, 422 wrong JSON types or an image / clip that cannot
be decoded, 404 an unknown head or route. The ingress reaches the model deployments through their
handles (model composition); each scales and batches on its own. (No `from __future__ import
annotations` here: FastAPI must see the request models' real types, or it reads them as query fields.)
"""

import base64
import json
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict
from ray import serve

import movielib
from movielib.serving.config import DeploymentSection, ServeConfig

api = FastAPI(
    title="movielib",
    version=movielib.__version__,
    description="CLIP text / image encoders, the MovieCLIP scene tagger and exported heads",
)


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str]


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[list[float]]


def decode_image(data: bytes, what: str = "the body") -> np.ndarray:
    """Image bytes -> RGB uint8, or a 422 naming what could not be read."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise HTTPException(422, f"{what} is not an image that can be decoded (JPEG, PNG, WebP, BMP, ...)")
    return np.ascontiguousarray(image[..., ::-1])


def _b64_images(items: Any, field: str) -> list[np.ndarray]:
    if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
        raise HTTPException(422, f"{field} must be a non-empty list of base64-encoded images")
    out = []
    for i, item in enumerate(items):
        try:
            data = base64.b64decode(item, validate=True)
        except ValueError:
            raise HTTPException(422, f"{field}[{i}] is not base64") from None
        out.append(decode_image(data, f"{field}[{i}]"))
    return out


def _answer(result: dict) -> dict:
    if "error" in result:
        raise HTTPException(result.get("status", 422), result["error"])
    return result


@serve.ingress(api)
class Ingress:
    """Routes requests to the model deployments; checks every input before any model sees it."""

    def __init__(self, text, image, tagger, heads, info: dict, max_body_mb: float):
        self.text, self.image, self.tagger, self.heads = text, image, tagger, heads
        self.info, self.max_body = info, int(max_body_mb * 2**20)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise HTTPException(
                413, f"the body is {int(declared)} bytes, more than max_body_mb ({self.max_body} bytes)"
            )
        body = await request.body()
        if len(body) > self.max_body:
            raise HTTPException(413, f"the body is {len(body)} bytes, more than max_body_mb ({self.max_body} bytes)")
        return body

    async def _json(self, request: Request) -> Any:
        body = await self._body(request)
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"the body is not valid JSON: {exc}") from None

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/version")
    async def version(self) -> dict:
        return {**self.info, "heads": await self.heads.describe.remote()}

    @api.post("/embed/text")
    async def embed_text(self, body: Texts) -> dict:
        if not body.texts:
            raise HTTPException(422, "texts must not be empty")
        emb = await self.text.embed.remote(body.texts)
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/embed/image")
    async def embed_image(self, request: Request) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind.startswith("image/"):
            images = [decode_image(await self._body(request))]
        elif kind == "application/json":
            payload = await self._json(request)
            images = _b64_images(payload.get("images") if isinstance(payload, dict) else None, "images")
        else:
            raise HTTPException(415, f'send an image (image/*) or JSON {{"images": [base64]}}, not {kind or "no type"}')
        emb = await self.image.embed.remote(images)
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/tag")
    async def tag(self, request: Request) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind.startswith("image/"):
            return _answer(await self.tagger.image.remote(await self._body(request)))
        if kind.startswith("video/") or kind == "application/octet-stream":
            body = await self._body(request)
            if not body:
                raise HTTPException(422, "the clip is empty")
            return _answer(await self.tagger.clip.remote(data=body))
        if kind == "application/json":
            payload = await self._json(request)
            if isinstance(payload, dict) and "frames" in payload:
                return _answer(await self.tagger.frames.remote(_b64_images(payload["frames"], "frames")))
            if isinstance(payload, dict) and isinstance(payload.get("uri"), str) and payload["uri"].startswith("s3://"):
                return _answer(await self.tagger.clip.remote(uri=payload["uri"]))
            raise HTTPException(422, 'send {"frames": [base64 images]} or {"uri": "s3://bucket/clip.mp4"}')
        raise HTTPException(
            415,
            f"send an image (image/*), a clip (video/* or application/octet-stream) or JSON, not {kind or 'no type'}",
        )

    @api.post("/heads/{name}")
    async def head(self, name: str, body: Features) -> dict:
        features = np.asarray(body.features, np.float32)
        if features.size == 0:
            raise HTTPException(422, "features must hold at least one row")
        return _answer(await self.heads.predict.remote(name, features))

    async def stats(self) -> dict:
        """Batch sizes each model deployment ran (load tests read it through the app handle)."""
        return {name: await getattr(self, name).stats.remote() for name in ("text", "image", "tagger", "heads")}


def _options(d: DeploymentSection) -> dict:
    return {
        "autoscaling_config": {
            "min_replicas": d.min_replicas,
            "max_replicas": d.max_replicas,
            "target_ongoing_requests": d.target_ongoing_requests,
        },
        "max_ongoing_requests": d.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
        "user_config": {"max_batch_size": d.max_batch_size, "batch_wait_timeout_s": d.batch_wait_timeout_s},
    }


def build_app(cfg: ServeConfig) -> serve.Application:
    """The application graph: four model deployments bound into the ingress."""
    from movielib.models.clip import ClipSpec
    from movielib.serving.models import Heads, ImageEncoder, Tagger, TextEncoder

    spec = {"name": cfg.model.name, "weights": cfg.model.weights, "random_weights": cfg.model.random_weights}
    clip = ClipSpec(**spec)
    clip.validate()  # weights that are missing or do not fit fail here, naming the field, before any replica
    t = cfg.tagger
    s3 = {"endpoint_url": cfg.s3.endpoint_url, "region": cfg.s3.region}
    text = serve.deployment(TextEncoder, name="TextEncoder").options(**_options(cfg.text)).bind(spec)
    image = serve.deployment(ImageEncoder, name="ImageEncoder").options(**_options(cfg.image)).bind(spec)
    tagger = (
        serve.deployment(Tagger, name="Tagger")
        .options(**_options(cfg.scenes))
        .bind(
            spec,
            t.labels,
            t.prompt,
            {"top_k": t.top_k, "clean_threshold": t.clean_threshold, "multi_threshold": t.multi_threshold},
            t.fps,
            t.max_frames,
            s3,
        )
    )
    heads = serve.deployment(Heads, name="Heads").options(**_options(cfg.head)).bind(dict(cfg.heads))
    info = {
        "movielib": movielib.__version__,
        "clip": f"{clip.arch}/{clip.version}",
        "random_weights": cfg.model.random_weights,
        "labels": t.labels or "movieclip-179",
    }
    ingress = {k: v for k, v in _options(cfg.ingress).items() if k != "user_config"}
    return (
        serve.deployment(Ingress, name="Ingress")
        .options(**ingress)
        .bind(text, image, tagger, heads, info, cfg.max_body_mb)
    )


def serve_config(cfg: ServeConfig, import_path: str = "serve.app:app") -> dict:
    """The Ray Serve config file for this config (`serve run` / `serve deploy`, a RayService's serveConfigV2)."""
    deployments = [
        {
            "name": name,
            **({k: v for k, v in _options(d).items() if k != "user_config"} if name == "Ingress" else _options(d)),
        }
        for name, d in (
            ("Ingress", cfg.ingress),
            ("TextEncoder", cfg.text),
            ("ImageEncoder", cfg.image),
            ("Tagger", cfg.scenes),
            ("Heads", cfg.head),
        )
    ]
    args = cfg.to_dict()
    for name in ("ingress", "text", "image", "scenes", "head"):
        args.pop(name)
    return {
        "http_options": {"host": cfg.host, "port": cfg.port},
        "applications": [
            {
                "name": "movielib",
                "route_prefix": "/",
                "import_path": import_path,
                "args": args,
                "deployments": deployments,
            }
        ],
    }
