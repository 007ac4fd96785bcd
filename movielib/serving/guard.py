"""What every request passes before a route sees it: the API key, then the body limit, counted as it streams.

A pure ASGI middleware (not a route dependency) so no route can forget it: pydantic-parsed routes read
their body after this has bounded it, and a chunked body without Content-Length is refused at the byte
that crosses `limits.max_body_mb`, never read whole first.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

OPEN_PATHS = ("/healthz",)  # liveness probes carry no key


@dataclass(frozen=True)
class Policy:
    max_body: int  # bytes
    api_key: str | None = None


async def _refuse(send, status: int, detail: str, headers: tuple = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: 401 without the key (when one is set), 413 past the body limit; the policy is the app's
    `state.policy`, set by the ingress replica from its config."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        policy: Policy | None = getattr(scope.get("app").state, "policy", None) if scope.get("app") else None
        if scope["type"] == "http" and scope["path"] and scope["path"] == scope.get("root_path"):
            # POST /tag is the tag app's root: route it there, not through a 307 to /tag/ (which re-sends the body)
            scope = {**scope, "path": scope["path"] + "/", "raw_path": scope.get("raw_path", b"") + b"/"}
        if scope["type"] != "http" or policy is None or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if policy.api_key is not None:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + policy.api_key.encode()):
                return await _refuse(send, 401, "send the API key: Authorization: Bearer <key>",
                                     ((b"www-authenticate", b"Bearer"),))  # fmt: skip
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > policy.max_body:
            return await _refuse(send, 413, f"the body is {int(declared)} bytes, more than limits.max_body_mb "
                                 f"({policy.max_body} bytes)")  # fmt: skip
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > policy.max_body:
                return await _refuse(send, 413, f"the body is more than limits.max_body_mb ({policy.max_body} bytes)")
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
