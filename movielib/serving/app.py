"""The HTTP ingresses (FastAPI on Ray Serve) and the application builders `serve/app.py` and `movielib serve` use.

Two applications on one proxy:
    movielib (/)
    GET  /healthz            {"status": "ok"} (the only route that needs no API key)
    GET  /readyz             200 when every deployment has a running replica, else 503 naming the ones without
    GET  /version            movielib's version, the CLIP model and weights, the labels, every head
    POST /embed/text         {"texts": ["a beach", ...]}                    -> {"embeddings": [[...], ...]}
    POST /embed/image        image bytes (image/*), or {"images": [base64]} -> {"embeddings": [[...], ...]}
    POST /heads/{name}       {"features": [[...], ...]} -> {"predictions": [{"labels", "scores"}]} ({"value"})
    GET  /docs               OpenAPI docs (FastAPI)
    movielib-tag (/tag): the tagger is its own ingress, so a tagging request crosses one hop
    POST /tag                image bytes (image/*): one shot; video bytes (video/*, application/octet-stream):
                             its shots; {"frames": [base64, ...]}: one shot; {"uri": "s3://..."}: a clip in S3
                             (off unless `uri.enabled`, and only under `uri.allow`)
                             -> {"shots": [{"labels", "scores", "clean", "labels_multi", "start_s", "end_s"}]}
    GET  /tag/docs           its OpenAPI docs

Bad input is a 4xx with {"detail": reason}: 400 malformed JSON, 401 a missing or wrong API key, 403 a URI
outside `uri.allow`, 413 past a limit (`limits.*`, named in the reason), 415 a body that is not an image /
video / JSON or a clip in a container `limits.clip_formats` does not allow, 422 wrong JSON types or an image /
clip that cannot be decoded, 404 an unknown head or route. Overload is a 503 with Retry-After (a full queue)
or a 504 (past `limits.request_timeout_s`), never a pile-up. The main ingress reaches the model deployments
through their handles (model composition); each scales and batches on its own. (No `from __future__ import
annotations` here: FastAPI must see the request models' real types, or it reads them as query fields.)
"""

import asyncio
from typing import NamedTuple

import numpy as np
from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from ray import serve

import movielib
from movielib.serving.checks import Checks, answer, content_type, new_api
from movielib.serving.config import DeploymentSection, LimitsSection, ServeConfig
from movielib.serving.models import Tagger

api = new_api("CLIP text / image encoders and exported heads (the scene tagger: /tag, its own app)")
tag_api = new_api("The MovieCLIP scene tagger: an image, frames or a clip -> scene tags per shot")
APP, TAG_APP = "movielib", "movielib-tag"
DEPLOYMENTS = {APP: ("Ingress", "TextEncoder", "ImageEncoder", "Heads"), TAG_APP: ("Tagger",)}


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


@serve.ingress(api)
class Ingress(Checks):
    """Routes requests to the model deployments; checks every input before any model sees it."""

    def __init__(self, text, image, heads, info: dict, limits: dict, uri: dict, api_key_env: str | None):
        self.text, self.image, self.heads, self.info = text, image, heads, info
        self.guard(api, limits, uri, api_key_env)

    @api.get("/healthz")
    async def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        """200 when every deployment of both apps has a running replica (what a load balancer should route on)."""
        apps = (await asyncio.to_thread(serve.status)).applications
        missing = [name for app, names in DEPLOYMENTS.items() for name in names
                   if app not in apps or not apps[app].deployments.get(name)
                   or not apps[app].deployments[name].replica_states.get("RUNNING")]  # fmt: skip
        if missing:
            return JSONResponse({"detail": f"no running replica: {', '.join(missing)}"}, 503)
        return JSONResponse({"status": "ready"})

    @api.get("/version")
    async def version(self) -> dict:
        return {**self.info, "heads": await self.within(self.heads.describe.remote())}

    @api.post("/embed/text")
    async def embed_text(self, body: Texts) -> dict:
        if not body.texts:
            raise HTTPException(422, "texts must not be empty")
        self.count(len(body.texts), "max_texts", "texts")
        self.count(max(len(t) for t in body.texts), "max_text_chars", "characters in a text")
        emb = await self.within(self.text.embed.remote(body.texts))
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/embed/image", openapi_extra=IMAGE_BODY)
    async def embed_image(self, request: Request) -> dict:
        kind = content_type(request)
        if kind.startswith("image/"):
            images = self.decode([await request.body()], "the body")
        elif kind == "application/json":
            payload = await self.json_body(request)
            data = self.b64_images(payload.get("images") if isinstance(payload, dict) else None, "images")
            images = self.decode(data, "images")
        else:
            raise HTTPException(415, f'send an image (image/*) or JSON {{"images": [base64]}}, not {kind or "no type"}')
        emb = await self.within(self.image.embed.remote(images))
        return {"model": self.info["clip"], "embeddings": emb.tolist()}

    @api.post("/heads/{name}")
    async def head(self, name: str, body: Features) -> dict:
        self.count(len(body.features), "max_rows", "feature rows")
        if not body.features or len({len(row) for row in body.features}) != 1:
            raise HTTPException(422, "features must be at least one row, every row the same length")
        features = np.asarray(body.features, np.float32)
        if not np.isfinite(features).all():
            raise HTTPException(422, "features must be finite numbers")
        return answer(await self.within(self.heads.predict.remote(name, features)))

    async def stats(self) -> dict:
        """Batch sizes each model deployment ran (load tests read it through the app handle)."""
        return {name: await getattr(self, name).stats.remote() for name in ("text", "image", "heads")}


@serve.ingress(tag_api)
class TagIngress(Checks, Tagger):
    """The tagger as its app's ingress: a request is checked and tagged in this replica, one hop from the proxy
    (the main ingress in front of it cost a second hop: about 4 ms a request on 2 cores)."""

    def __init__(self, spec: dict, tagging: dict, s3: dict, limits: dict, uri: dict, api_key_env: str | None):
        Tagger.__init__(self, spec, **tagging, s3=s3, limits=limits, uri_max_mb=uri["max_mb"])
        self.guard(tag_api, limits, uri, api_key_env)

    @tag_api.post("/", openapi_extra=TAG_BODY)
    async def tag(self, request: Request) -> dict:
        kind = content_type(request)
        if kind.startswith("image/"):
            return answer(await self.within(self.image(await request.body())))
        if kind.startswith("video/") or kind == "application/octet-stream":
            body = await request.body()
            if not body:
                raise HTTPException(422, "the clip is empty")
            return answer(await self.within(self.clip(data=body)))
        if kind == "application/json":
            payload = await self.json_body(request)
            if isinstance(payload, dict) and "frames" in payload:
                frames = self.decode(self.b64_images(payload["frames"], "frames"), "frames")
                return answer(await self.within(self.frames(frames)))
            if isinstance(payload, dict) and isinstance(payload.get("uri"), str):
                if not self.uri.allows(payload["uri"]):
                    raise HTTPException(403, "clips are not read by URI here, or not from that location (uri.allow)")
                return answer(await self.within(self.clip(uri=payload["uri"])))
            raise HTTPException(422, 'send {"frames": [base64 images]} or {"uri": "s3://bucket/clip.mp4"}')
        raise HTTPException(
            415,
            f"send an image (image/*), a clip (video/* or application/octet-stream) or JSON, not {kind or 'no type'}",
        )


# Ray Serve's throughput-optimized mode for the controller, its proxies and every replica: handlers and the router
# on the replica's own event loop (the defaults hand every request across to a second thread and loop), gRPC between
# the proxy and the replicas, the garbage collector frozen after start-up, request logs buffered. Measured on 2
# cores (`python -m bench --quick --only serve`), Serve's p50 over the in-process tagger: +11.7 ms -> +7.1..8.8 ms,
# batched 0.96x -> 1.30..1.40x of unbatched. Direct ingress (each ingress replica its own HTTP server) stays off:
# without an HAProxy in front it buys nothing here and holds every ingress replica 30 s at shutdown. A handler that
# blocks (a CPU batch) holds the replica's health checks for its length, well inside the 30 s they allow; decoding
# clips runs in a thread (`asyncio.to_thread`). The mode is set by its parts, which RAY_SERVE_THROUGHPUT_OPTIMIZED=1
# would set (Ray 2.5x's serve/_private/constants.py): that switch also prints an 8-line banner on every start.
SERVE_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_FREEZE_GC_ON_STARTUP": "1",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0",
}
CONTROLLER_OPTIONS = {"runtime_env": {"env_vars": SERVE_ENV}}  # the proxies inherit the controller's


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
        "ray_actor_options": {"num_cpus": d.num_cpus, "num_gpus": d.num_gpus, "runtime_env": {"env_vars": SERVE_ENV}},
        "user_config": {"max_batch_size": d.max_batch_size, "batch_wait_timeout_s": d.batch_wait_timeout_s},
    }


SERVE_NAMES = {"ingress": "Ingress", "text": "TextEncoder", "image": "ImageEncoder", "scenes": "Tagger",
               "head": "Heads"}  # fmt: skip


def _deployment_options(cfg: ServeConfig) -> dict[str, dict]:
    """Each deployment's Serve options by its Serve name (the main ingress batches nothing: no user_config)."""
    out = {SERVE_NAMES[field]: _options(d, cfg.limits) for field, d in cfg.deployments().items()}
    out["Ingress"].pop("user_config")
    return out


def http_options(cfg: ServeConfig) -> dict:
    """The proxy's options: its own end-to-end timeout a little past the ingress's, so a 504 names the limit."""
    return {"host": cfg.host, "port": cfg.port, "request_timeout_s": cfg.limits.request_timeout_s + 5}


class _Built(NamedTuple):
    """What both applications are built with, worked out (and the weights checked) once."""

    spec: dict  # the CLIP spec
    limits: dict
    uri: dict
    key_env: str | None  # the API key's variable
    options: dict[str, dict]  # each deployment's Serve options by its Serve name


def _settings(cfg: ServeConfig) -> _Built:
    from movielib.models.clip import ClipSpec

    spec = {"name": cfg.model.name, "weights": cfg.model.weights, "random_weights": cfg.model.random_weights}
    ClipSpec(**spec).validate()  # weights missing or not fitting fail here, naming the field, before any replica
    return _Built(spec, cfg.limits.model_dump(), cfg.uri.model_dump(), cfg.auth.api_key_env, _deployment_options(cfg))


def _main_app(cfg: ServeConfig, built: _Built) -> serve.Application:
    from movielib.models.clip import ClipSpec
    from movielib.serving.models import Heads, ImageEncoder, TextEncoder

    opts = built.options
    text = serve.deployment(TextEncoder, name="TextEncoder").options(**opts["TextEncoder"]).bind(built.spec)
    image = serve.deployment(ImageEncoder, name="ImageEncoder").options(**opts["ImageEncoder"]).bind(built.spec)
    heads = serve.deployment(Heads, name="Heads").options(**opts["Heads"]).bind(dict(cfg.heads))
    clip = ClipSpec(**built.spec)
    info = {
        "movielib": movielib.__version__,
        "clip": f"{clip.arch}/{clip.version}",
        "random_weights": cfg.model.random_weights,
        "labels": cfg.tagger.labels or "movieclip-179",
    }
    ingress = serve.deployment(Ingress, name="Ingress").options(**opts["Ingress"])
    return ingress.bind(text, image, heads, info, built.limits, built.uri, built.key_env)


def _tag_app(cfg: ServeConfig, built: _Built) -> serve.Application:
    t = cfg.tagger
    tagging = {
        "labels": t.labels,
        "prompt": t.prompt,
        "rules": {"top_k": t.top_k, "clean_threshold": t.clean_threshold, "multi_threshold": t.multi_threshold},
        "fps": t.fps,
        "max_frames": t.max_frames,
    }
    s3 = {"endpoint_url": cfg.s3.endpoint_url, "region": cfg.s3.region}
    tagger = serve.deployment(TagIngress, name="Tagger").options(**built.options["Tagger"])
    return tagger.bind(built.spec, tagging, s3, built.limits, built.uri, built.key_env)


def build_app(cfg: ServeConfig) -> serve.Application:
    """The main application: three model deployments bound into the ingress (`serve.app:app`)."""
    return _main_app(cfg, _settings(cfg))


def build_tag_app(cfg: ServeConfig) -> serve.Application:
    """The tagging application: the tagger, its own ingress at /tag (`serve.app:tag_app`)."""
    return _tag_app(cfg, _settings(cfg))


def build_apps(cfg: ServeConfig) -> dict[str, tuple[str, serve.Application]]:
    """Both applications by name: (route prefix, application), the weights checked once for both."""
    built = _settings(cfg)
    return {APP: ("/", _main_app(cfg, built)), TAG_APP: ("/tag", _tag_app(cfg, built))}


def serve_config(cfg: ServeConfig, module: str = "serve.app") -> dict:
    """The Ray Serve config file for this config (`serve run` / `serve deploy`, a RayService's serveConfigV2): both
    applications, built by `module`'s `app` and `tag_app` from the same args."""
    options = _deployment_options(cfg)
    args = cfg.to_dict()
    for name in cfg.deployments():
        args.pop(name)
    apps = ((APP, "/", "app"), (TAG_APP, "/tag", "tag_app"))
    return {
        "http_options": http_options(cfg),
        "controller_options": CONTROLLER_OPTIONS,
        "applications": [
            {
                "name": name,
                "route_prefix": prefix,
                "import_path": f"{module}:{builder}",
                "args": args,
                "deployments": [{"name": d, **options[d]} for d in DEPLOYMENTS[name]],
            }
            for name, prefix, builder in apps
        ],
    }
