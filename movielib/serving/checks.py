"""What both HTTP ingresses check before any model sees a request, and how they answer when it fails.

The service is two Serve applications on one proxy: `movielib` (/healthz, /readyz, /version, /embed/*, /heads/*)
and `movielib-tag` (/tag), whose ingress is the tagger itself, so a tagging request crosses one handle hop, not
two. Both build their FastAPI app here (the body / key guard, one-sentence 422s) and share these checks.
"""

import asyncio
import base64
import json
import os
from collections.abc import Awaitable
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from ray.serve.exceptions import BackPressureError

import movielib
from movielib.errors import ConfigError
from movielib.serving.config import LimitsSection, UriSection
from movielib.serving.guard import Guard, Policy
from movielib.serving.media import Refused, read_image


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 whose detail is one sentence naming the fields, like every other 4xx here (never echoing the input)."""
    where = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'the body'}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": where}, 422)


def new_api(description: str) -> FastAPI:
    """A FastAPI app behind the guard (API key, body limit), with one-sentence validation errors."""
    api = FastAPI(title="movielib", version=movielib.__version__, description=description)
    api.add_middleware(Guard)
    api.add_exception_handler(RequestValidationError, _invalid)
    return api


def api_key(env: str | None) -> str | None:
    """The key in `auth.api_key_env`'s variable; a named variable that is unset is an error, not an open door."""
    if env is None:
        return None
    key = os.environ.get(env, "")
    if not key:
        raise ConfigError(f"auth.api_key_env names {env}, which is not set (or empty) where the ingress runs")
    return key


def answer(result: dict) -> dict:
    """A model deployment's result, or its {"error", "status"} as that 4xx."""
    if "error" in result:
        raise HTTPException(result.get("status", 422), result["error"])
    return result


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip()


class Checks:
    """The limits and URI rules of an ingress replica, and the checks every route runs with them."""

    limits: LimitsSection
    uri: UriSection

    def guard(self, api: FastAPI, limits: dict, uri: dict, api_key_env: str | None) -> None:
        """Set this replica's limits, and the policy its app's guard enforces."""
        self.limits, self.uri = LimitsSection(**limits), UriSection(**uri)
        api.state.policy = Policy(int(self.limits.max_body_mb * 2**20), api_key(api_key_env))

    async def within(self, work: Awaitable) -> Any:
        """`work`'s answer within `limits.request_timeout_s` (504), or 503 + Retry-After when a model's queue is
        full: a burst past capacity is shed at once instead of piling up."""
        try:
            return await asyncio.wait_for(work, self.limits.request_timeout_s)
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

    async def json_body(self, request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"the body is not valid JSON: {exc}") from None

    def count(self, n: int, limit: str, what: str) -> None:
        if n > getattr(self.limits, limit):
            raise HTTPException(413, f"{n} {what}, more than limits.{limit} ({getattr(self.limits, limit)})")

    def b64_images(self, items: Any, field: str) -> list[bytes]:
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise HTTPException(422, f"{field} must be a non-empty list of base64-encoded images")
        self.count(len(items), "max_images", field)
        out = []
        for i, item in enumerate(items):
            try:
                out.append(base64.b64decode(item, validate=True))
            except ValueError:
                raise HTTPException(422, f"{field}[{i}] is not base64") from None
        return out

    def decode(self, data: list[bytes], field: str) -> list[np.ndarray]:
        try:
            return [read_image(d, self.limits, f"{field}[{i}]") for i, d in enumerate(data)]
        except Refused as exc:
            raise HTTPException(exc.status, exc.reason) from None
