"""The scene tagger through Ray Serve (real HTTP, aiohttp clients) vs the same model called in-process on the same
inputs: p50 / p99 latency one request at a time (the overhead Serve adds), and requests/s under 16 concurrent
clients with dynamic batching (max_batch_size 8) vs without (1)."""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np
from PIL import Image

from bench.common import Row, Size, local_ray, sized
from movielib.config import build_config
from movielib.demo.s3server import free_port
from movielib.models.clip import ClipSpec
from movielib.serving.config import LimitsSection, ServeConfig
from movielib.serving.media import read_image
from movielib.tagging.tagger import SceneTagger
from movielib.taxonomy.labels import LabelSet


def _images(n: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)).save(buf, format="JPEG")
        out.append(buf.getvalue())
    return out


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ms = np.array(seconds) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def decode_image(data: bytes):
    return read_image(data, LimitsSection())


def _in_process(model: str, images: list[bytes]) -> list[float]:
    tagger = SceneTagger(ClipSpec(model, random_weights=True), LabelSet.movieclip())
    tagger.tag_frames([[decode_image(images[0])]])  # warm
    times = []
    for data in images:
        t0 = time.perf_counter()
        tagger.tag_frames([[decode_image(data)]])
        times.append(time.perf_counter() - t0)
    return times


async def _http(url: str, images: list[bytes], clients: int) -> tuple[list[float], float]:
    import aiohttp

    times: list[float] = []
    queue = list(images)

    async def client(session):
        while queue:
            data = queue.pop()
            t0 = time.perf_counter()
            async with session.post(f"{url}/tag", data=data, headers={"Content-Type": "image/jpeg"}) as r:
                await r.read()
                assert r.status == 200, r.status
            times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return times, len(images) / (time.perf_counter() - t0)


def _deploy(model: str, batch: int, port: int | None = None) -> str:
    """The app with the tagger batching up to `batch`; a second deploy reuses the running HTTP proxy's port."""
    from movielib.serving.run import start

    port = port or free_port()
    small = {"num_cpus": 0.1, "max_ongoing_requests": 32}
    cfg = build_config(
        ServeConfig,
        {
            "model": {"name": model, "random_weights": True},
            "port": port,
            **{d: small for d in ("text", "image", "head")},
            "scenes": {**small, "num_cpus": 1.0, "max_batch_size": batch},  # the default wait: 0
            "ingress": {**small, "max_batch_size": 1, "max_ongoing_requests": 64},
        },
    )
    return start(cfg, block=False)


def run(size: Size = "full") -> list[Row]:
    from ray import serve

    model = sized(size, "ViT-B-32-quickgelu", "movielib-tiny-clip", "movielib-tiny-clip")
    n = sized(size, 120, 200, 32)
    images = _images(n)
    local = _in_process(model, images)
    l50, l99 = _percentiles(local)
    with local_ray():
        try:
            url = _deploy(model, 8)
            asyncio.run(_http(url, images[:10], 1))  # warm
            one, _ = asyncio.run(_http(url, images, 1))
            s50, s99 = _percentiles(one)
            _, batched = asyncio.run(_http(url, images, 16))
            serve.delete("movielib")
            serve.delete("movielib-tag")
            url = _deploy(model, 1, port=int(url.rsplit(":", 1)[1]))
            asyncio.run(_http(url, images[:10], 1))
            _, unbatched = asyncio.run(_http(url, images, 16))
        finally:
            serve.shutdown()
    case = f"scene tagger, {model} random-init, one 320x240 JPEG a request"
    return [
        Row(
            "serve",
            f"{case}: p50 latency, Serve (HTTP) vs in-process",
            s50,
            l50,
            "ms",
            note=f"Serve adds {s50 - l50:.1f} ms at p50 (target < 10); p99 {s99:.1f} vs {l99:.1f} ms",
        ),
        Row(
            "serve",
            f"{case}: requests/s, 16 clients, batching (8) vs none (1)",
            batched,
            unbatched,
            "req/s",
            target=1.0,
            note=f"in-process one at a time: {1000 / l50:.1f} req/s",
        ),
    ]
