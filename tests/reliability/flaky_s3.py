"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the moto S3 server: a busy, flaky object store.

A share of requests is answered `503 SlowDown` (S3's throttling answer), a share has its connection
reset, a share is delayed; the rest are forwarded as they are. Faults strike before the request
reaches the store, as S3's own throttling does, so a fault never leaves a write half-done.
"""

from __future__ import annotations

import collections
import http.client
import random
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

SLOWDOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "trailer", "upgrade"}


class FlakyProxy:
    def __init__(
        self,
        upstream: str,
        slowdown: float = 0.15,
        reset: float = 0.05,
        delay: float = 0.1,
        delay_s: tuple[float, float] = (0.05, 0.4),
        seed: int = 0,
    ):
        self.upstream = urlparse(upstream)
        self.shares = (slowdown, reset, delay)
        self.delay_s = delay_s
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts: collections.Counter = collections.Counter()
        self.enabled = True
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FlakyProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _fate(self) -> str:
        with self.lock:
            r = self.random.random()
        slowdown, reset, delay = self.shares if self.enabled else (0, 0, 0)
        fate = (
            "slowdown"
            if r < slowdown
            else "reset"
            if r < slowdown + reset
            else "delay"
            if r < slowdown + reset + delay
            else "forward"
        )
        with self.lock:
            self.counts[fate] += 1
        return fate

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return out
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                body = self._body()
                fate = proxy._fate()
                if fate == "slowdown":
                    self.send_response(503, "Slow Down")
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOWDOWN)
                    return
                if fate == "reset":  # RST, not a clean close
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    self.connection.close()
                    return
                if fate == "delay":
                    time.sleep(proxy.random.uniform(*proxy.delay_s))
                up = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                up.request(self.command, self.path, body=body or None, headers=headers)
                resp = up.getresponse()
                data = resp.read()
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() not in HOP and k.lower() != "content-length":
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                up.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _serve

        return Handler
