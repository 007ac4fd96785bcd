"""The HTTP ingress (FastAPI on Ray Serve) and the application builder `serve/app.py` and `movielib serve` use.

    GET  /healthz            {"status": "ok"} (the only route that needs no API key)
    GET  /readyz             200 when every deployment has a running replica, else 503 naming the ones without
    GET  /version            movielib's version, the CLIP model and weights, the labels, every head
    POST /embed/text         {"texts": ["a beach", ...]}                    -> {"embeddings": [[...], ...]}
    POST /embed/image        image bytes (image/*), or {"images": [base64]} -> {"embeddings": [[...], ...]}
    POST /tag                image bytes (image/*): one shot; video bytes (video/*, application/octet-stream):
                             its shots; {"frames": [base64, ...]}: one shot; {"uri": "s3://..."}: a clip in S3
                             (off unless `uri.enabled`, and only under `uri.allow`)
                             -> {"shots": [{"labels", "scores", "clean", "labels_multi", "start_s", "end_s"}]}
    POST /heads/{name}       {"features": [[...], ...]} -> {"predictions": [{"labels", "scores"}]} ({"value"})
    GET  /docs               OpenAPI docs (FastAPI)

Bad input is a 4xx with {"detail": reason}: 400 malformed JSON, 401 a missing or wrong API key, 413 past a
limit (`limits.*`, named in the reason), 415 a body that is not an image / video / JSON or a clip in a
container `limits.clip_formats` does not allow, 422 wrong JSON types or an image / clip that cannot be
decoded, 404 an unknown head or route. Overload is a 503 with Retry-After (a full queue) or a 504 (a model
past `limits.request_timeout_s`), never a pile-up. The ingress reaches the model deployments through their
handles (model composition); each scales and batches on its own. (No `from __future__ import annotations`
here: FastAPI must see the request models' real types, or it reads them as query fields.)
"""

import asyncio
import base64
import json
import os
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from ray import serve
from ray.serve.exceptions import BackPressureError

import movielib
from movielib.errors import ConfigError
from movielib.serving.config import DeploymentSection, LimitsSection, ServeConfig, UriSection
from movielib.serving.guard import Guard, Policy
from movielib.serving.media import Refused, read_image

api = FastAPI(
    title="movielib",
    version=movielib.__version__,
    description="CLIP text / image encoders, the MovieCLIP scene tagger and exported heads",
)
api.add_middleware(Guard)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 whose detail is one sentence naming the fields, like every other 4xx here (never echoing the input)."""
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'the body'}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": where}, 422)


DEPLOYMENTS = ("Ingress", "TextEncoder", "ImageEncoder", "Tagger", "Heads")


def _body_doc(json_schema: dict, *binary: str) -> dict:
    """OpenAPI for a route that reads its body itself: the media types it takes (the docs, and schemathesis)."""
    content = {kind: {"schema": {"type": "string", "format": "binary"}} for kind in binary}
    return {"requestBody": {"required": True, "content": {**content, "application/json": {"schema": json_schema}}}}


B64_LIST = {"type": "array", "items": {"type": "string", "format": "byte"}, "minItems": 1}
TAG_BODY = _body_doc(
    {"type": "object", "properties": {"frames": B64_LIST, "uri": {"type": "string"}}},
    "image/png", "image/jpeg", "video/mp4", "application/octet-stream",
)  # fmt: skip
IMAGE_BODY = _body_doc(
    {"type": "object", "properties": {"images": B64_LIST}, "required": ["images"]}, "image/png", "image/jpeg"
)


class Texts(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    texts: list[str]


class Features(BaseModel):
    model_config = ConfigDict(extra="forbid")
    features: list[list[float]]


def _refused(exc: Refused) -> HTTPException:
    return HTTPException(exc.status, exc.reason)


def _answer(result: dict) -> dict:
    if "error" in result:
        raise HTTPException(result.get("status", 422), result["error"])
    return result


def api_key(env: str | None) -> str | None:
    """The key in `auth.api_key_env`'s variable; a named variable that is unset is an error, not an open door."""
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(f"auth.api_key_env names {env}, which is not set (or empty) where the ingress runs")
    return key


@serve.ingress(api)
class Ingress:
    """Routes requests to the model deployments; checks every input before any model sees it."""

    def __init__(self, text, image, tagger, heads, info: dict, limits: dict, uri: dict, api_key_env: str | None):
        self.text, self.image, self.tagger, self.heads = text, image, tagger, heads
        self.info, self.limits, self.uri = info, LimitsSection(**limits), UriSection(**uri)
        api.state.policy = Policy(int(self.limits.max_body_mb * 2**20), api_key(api_key_env))

    async def _call(self, response) -> Any:
        """A model deployment's answer within `limits.request_timeout_s` (504), or 503 + Retry-After when its
        queue is full: a burst past capacity is shed at once instead of piling up."""

        async def answer():
            return await response

        try:
            return await asyncio.wait_for(answer(), self.limits.request_timeout_s)
        except TimeoutError:
            raise HTTPException(
                504, f"no answer within limits.request_timeout_s ({self.limits.request_timeout_s:g} s)"
            ) from None
        except BackPressureError:
            raise HTTPException(
                503,
                "the service is at capacity (the model's max_queued_requests): retry later",
                headers={"Retry-After": str(self.limits.retry_after_s)},
            ) from None

    async def _json(self, request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"the body is not valid JSON: {exc}") from None

    def _count(self, n: int, limit: str, what: str) -> None:
        if n > getattr(self.limits, limit):
            raise HTTPException(413, f"{n} {what}, more than limits.{limit} ({getattr(self.limits, limit)})")

    def _b64_images(self, items: Any, field: str) -> list[bytes]:
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise HTTPException(422, f"{field} must be a non-empty list of base64-encoded images")
        out = []
        for i, item in enumerate(items):
            try:
                out.append(base64.b64decode(item, validate=True))
            except ValueError:
                raise HTTPException(422, f"{field}[{i}] is not base64") from None
        return out

    def _decode(self, data: list[bytes], field: str) -> list[np.ndarray]:
        try:
            return [read_image(d, self.limits, f"{field}[{i}]") for i, d in enumerate(data)]
        except Refused as exc:
            raise _refused(exc) from None

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """200 when every deployment of the app has a running replica (what a load balancer should route on)."""
        status = await asyncio.to_thread(serve.status)
        app = next((a for a in status.applications.values() if "Ingress" in a.deployments), None)
        missing = [name for name in DEPLOYMENTS
                   if app is None or not app.deployments.get(name)
                   or not app.deployments[name].replica_states.get("RUNNING")]  # fmt: skip
        if missing:
            return JSONResponse({"detail": f"no running replica: {', '.join(missing)}"}, 503)
        return JSONResponse({"status": "ready"})

    @api.get("/version")
    async def version(self) -> dict:
        return {**self.info, "heads": await self._call(self.heads.describe.remote())}

    @api.post("/embed/text")
    async def embed_text(self, body: Texts) -> dict:
        if not body.texts:
            raise HTTPException(422, "texts must not be empty")
        self._count(len(body.texts), "max_texts", "texts")
        self._count(max(len(t) for t in body.texts), "max_text_chars", "characters in a text")
        emb = await self._call(self.text.embed.remote(body.texts))
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/embed/image", openapi_extra=IMAGE_BODY)
    async def embed_image(self, request: Request) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind.startswith("image/"):
            images = self._decode([await request.body()], "the body")
        elif kind == "application/json":
            payload = await self._json(request)
            data = self._b64_images(payload.get("images") if isinstance(payload, dict) else None, "images")
            self._count(len(data), "max_images", "images")
            images = self._decode(data, "images")
        else:
            raise HTTPException(415, f'send an image (image/*) or JSON {{"images": [base64]}}, not {kind or "no type"}')
        emb = await self._call(self.image.embed.remote(images))
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/tag", openapi_extra=TAG_BODY)
    async def tag(self, request: Request) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        if kind.startswith("image/"):
            return _answer(await self._call(self.tagger.image.remote(await request.body())))
        if kind.startswith("video/") or kind == "application/octet-stream":
            body = await request.body()
            if not body:
                raise HTTPException(422, "the clip is empty")
            return _answer(await self._call(self.tagger.clip.remote(data=body)))
        if kind == "application/json":
            payload = await self._json(request)
            if isinstance(payload, dict) and "frames" in payload:
                frames = self._b64_images(payload["frames"], "frames")
                self._count(len(frames), "max_images", "frames")
                return _answer(await self._call(self.tagger.frames.remote(self._decode(frames, "frames"))))
            if isinstance(payload, dict) and isinstance(payload.get("uri"), str):
                if not self.uri.allows(payload["uri"]):
                    raise HTTPException(403, "clips are not read by URI here, or not from that location (uri.allow)")
                return _answer(await self._call(self.tagger.clip.remote(uri=payload["uri"])))
            raise HTTPException(422, 'send {"frames": [base64 images]} or {"uri": "s3://bucket/clip.mp4"}')
        raise HTTPException(
            415,
            f"send an image (image/*), a clip (video/* or application/octet-stream) or JSON, not {kind or 'no type'}",
        )

    @api.post("/heads/{name}")
    async def head(self, name: str, body: Features) -> dict:
        self._count(len(body.features), "max_rows", "feature rows")
        if not body.features or len({len(row) for row in body.features}) != 1:
            raise HTTPException(422, "features must be at least one row, every row the same length")
        features = np.asarray(body.features, np.float32)
        if not np.isfinite(features).all():
            raise HTTPException(422, "features must be finite numbers")
        return _answer(await self._call(self.heads.predict.remote(name, features)))

    async def stats(self) -> dict:
        """Batch sizes each model deployment ran (load tests read it through the app handle)."""
        return {name: await getattr(self, name).stats.remote() for name in ("text", "image", "tagger", "heads")}


def _options(d: DeploymentSection, limits: LimitsSection) -> dict:
    return {
        "autoscaling_config": {
            "min_replicas": d.min_replicas,
            "max_replicas": d.max_replicas,
            "target_ongoing_requests": d.target_ongoing_requests,
        },
        "max_ongoing_requests": d.max_ongoing_requests,
        "max_queued_requests": d.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": limits.retry_after_s},
        "ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus},
        "user_config": {"max_batch_size": d.max_batch_size, "batch_wait_timeout_s": d.batch_wait_timeout_s},
    }


def _deployment_options(cfg: ServeConfig) -> dict[str, dict]:
    """Each deployment's Serve options by its Serve name (the ingress batches nothing: no user_config)."""
    names = dict(zip(cfg.deployments(), DEPLOYMENTS))
    out = {names[field]: _options(d, cfg.limits) for field, d in cfg.deployments().items()}
    out["Ingress"].pop("user_config")
    return out


def http_options(cfg: ServeConfig) -> dict:
    """The proxy's options: its own end-to-end timeout a little past the ingress's, so a 504 names the limit."""
    return {"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.limits.request_timeout_s + 5}


def build_app(cfg: ServeConfig) -> serve.Application:
    """The application graph: four model deployments bound into the ingress."""
    from movielib.models.clip import ClipSpec
    from movielib.serving.models import Heads, ImageEncoder, Tagger, TextEncoder

    spec = {"name": cfg.model.name, "weights": cfg.model.weights, "random_weights": cfg.model.random_weights}
    clip = ClipSpec(**spec)
    clip.validate()  # weights that are missing or do not fit fail here, naming the field, before any replica
    t = cfg.tagger
    opts = _deployment_options(cfg)
    limits = cfg.limits.model_dump()
    s3 = {"endpoint_url": cfg.s3.endpoint_url, "region": cfg.s3.region}
    text = serve.deployment(TextEncoder, name="TextEncoder").options(**opts["TextEncoder"]).bind(spec)
    image = serve.deployment(ImageEncoder, name="ImageEncoder").options(**opts["ImageEncoder"]).bind(spec)
    rules = {"top_k": t.top_k, "clean_threshold": t.clean_threshold, "multi_threshold": t.multi_threshold}
    tagger = (
        serve.deployment(Tagger, name="Tagger")
        .options(**opts["Tagger"])
        .bind(spec, t.labels, t.prompt, rules, t.fps, t.max_frames, s3, limits, cfg.uri.max_mb)
    )
    heads = serve.deployment(Heads, name="Heads").options(**opts["Heads"]).bind(dict(cfg.heads))
    info = {
        "movielib": movielib.__version__,
        "clip": f"{clip.arch}/{clip.version}",
        "random_weights": cfg.model.random_weights,
        "labels": t.labels or "movieclip-179",
    }
    return (
        serve.deployment(Ingress, name="Ingress")
        .options(**opts["Ingress"])
        .bind(text, image, tagger, heads, info, limits, cfg.uri.model_dump(), cfg.auth.api_key_env)
    )


def serve_config(cfg: ServeConfig, import_path: str = "serve.app:app") -> dict:
    """The Ray Serve config file for this config (`serve run` / `serve deploy`, a RayService's serveConfigV2)."""
    deployments = [{"name": name, **options} for name, options in _deployment_options(cfg).items()]
    args = cfg.to_dict()
    for name in cfg.deployments():
        args.pop(name)
    return {
        "http_options": http_options(cfg),
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
