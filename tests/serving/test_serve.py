"""Ray Serve on 127.0.0.1 with a random-init tiny CLIP: every route, online == batch, the bad-input matrix,
and a bounded load test that shows batching (real HTTP)."""

import asyncio
import base64
import io
import socket

import aiohttp
import numpy as np
import pytest
import requests
from conftest import LIGHT, TINY
from PIL import Image

from movielib.config import build_config
from movielib.demo.samples import Segment, generate_clip
from movielib.heads.data import HeadData
from movielib.heads.train import export_bytes, fit
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.serving.config import ServeConfig
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow
SMALL = {"num_cpus": 0.2, "max_batch_size": 8, "max_ongoing_requests": 32, "batch_wait_timeout_s": 0.02}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _head(path) -> str:
    rng = np.random.default_rng(0)
    x = {s: rng.normal(size=(40, 16)).astype(np.float32) for s in ("train", "val", "test")}
    y = {s: (v[:, :3] > 0).astype(np.float32) for s, v in x.items()}
    data = HeadData.from_arrays(
        "multilabel", "movie", ["action", "comedy", "drama"], "features/image", "tiny/random-init", x, y, {}
    )
    params = {
        "name": "mlp2",
        "width": 32,
        "dropout": 0.0,
        "lr": 1e-2,
        "weight_decay": 0.0,
        "batch_size": 16,
        "epochs": 2,
    }
    last = {}
    fit(data, params, lambda m, state: last.update(state))
    path.write_bytes(export_bytes(last, params, data))
    return str(path)


def _genre_model():
    """A small genre model as `movielib train genre` exports it (genre.pt) and a batch of its trailer embeddings."""
    import torch

    from movielib.train.genre.config import GenreModelSection
    from movielib.train.genre.model import GenreModel

    torch.manual_seed(0)
    m = GenreModelSection(expert_dim=8, gate_hidden=8, clip_dim=4, clips=2, sequences=2, sequence_dim=8,
                          bottleneck=12, head_hidden=6)  # fmt: skip
    model = GenreModel({"image": 5}, 3, m).eval()
    blob = io.BytesIO()
    torch.save({"state_dict": model.state_dict(), "dims": {"image": 5}, "genres": ["noir", "musical", "western"],
                "model": m.model_dump(), "threshold": 0.3, "experts": {}}, blob)  # fmt: skip
    with torch.no_grad():
        out = model({"image": torch.randn(2, 4, 5), "image_valid": torch.ones(2, 4, dtype=torch.bool)})
    return blob.getvalue(), out.embedding.numpy(), torch.sigmoid(out.logits).numpy()


@pytest.fixture(scope="module")
def tagged_clip(ray_local, tmp_path_factory):
    """A clip and the tags the batch job wrote for it, made before Serve's replicas hold the CPUs."""
    tmp = tmp_path_factory.mktemp("batch")
    clip = tmp / "clips" / "three.mp4"
    generate_clip(clip, [Segment("testsrc", 1.5), Segment("smptebars", 1.5), Segment("color:darkblue", 1.5)])
    cfg = load_tag_config(None, {"model.name": TINY, "model.random_weights": True, **LIGHT})
    run_tagging(plan_tagging(cfg, str(clip.parent), str(tmp / "dest")))
    tags = CatalogStore(str(tmp / "dest")).read_table("tags").to_pylist()
    return clip, sorted(tags, key=lambda r: r["shot_idx"])


@pytest.fixture(scope="module")
def server(ray_local, tagged_clip, tmp_path_factory):
    from ray import serve

    from movielib.serving.run import start
    from movielib.train.genre.job import head_file

    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "genre-head.pt").write_bytes(head_file(_genre_model()[0], "genre-embedding"))
    cfg = build_config(
        ServeConfig,
        {
            "model": {"name": TINY, "random_weights": True},
            "port": _port(),
            "heads": {"genre": _head(tmp / "head.pt"), "trailer-genres": str(tmp / "genre-head.pt")},
            "max_body_mb": 1,
            **{d: SMALL for d in ("text", "image", "scenes", "head")},
            "ingress": {**SMALL, "max_batch_size": 1},
        },
    )
    url = start(cfg, block=False)
    yield url, tmp
    serve.shutdown()


def _png(color=(200, 30, 30), size=(96, 64)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_every_route_answers_with_the_right_shapes(server):
    url, _ = server
    assert requests.get(f"{url}/healthz").json() == {"status": "ok"}
    version = requests.get(f"{url}/version").json()
    assert version["clip"].startswith(TINY) and version["random_weights"] is True
    assert version["heads"]["genre"]["labels"] == ["action", "comedy", "drama"]
    emb = requests.post(f"{url}/embed/text", json={"texts": ["a beach", "a kitchen"]}).json()["embeddings"]
    assert np.array(emb).shape == (2, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    one = requests.post(f"{url}/embed/image", data=_png(), headers={"Content-Type": "image/png"}).json()["embeddings"]
    two = requests.post(f"{url}/embed/image", json={"images": [base64.b64encode(_png()).decode()] * 2}).json()
    assert np.array(one).shape == (1, 64) and np.allclose(two["embeddings"][1], one[0], atol=1e-5)
    shot = requests.post(f"{url}/tag", data=_png(), headers={"Content-Type": "image/png"}).json()["shots"][0]
    assert len(shot["labels"]) == 5 and shot["scores"] == sorted(shot["scores"], reverse=True)
    pred = requests.post(f"{url}/heads/genre", json={"features": [[0.0] * 16, [1.0] * 16]}).json()["predictions"]
    assert len(pred) == 2 and sorted(pred[0]["labels"]) == ["action", "comedy", "drama"]
    assert requests.get(f"{url}/openapi.json").json()["info"]["title"] == "movielib"


def test_the_genre_models_exported_classifier_is_served_like_any_head(server):
    """`movielib train genre` writes genre-head.pt; posting trailer embeddings gives the model's own genres back."""
    url, _ = server
    _, embeddings, probabilities = _genre_model()
    described = requests.get(f"{url}/version").json()["heads"]["trailer-genres"]
    assert described["labels"] == ["noir", "musical", "western"] and described["in_dim"] == 12
    pred = requests.post(f"{url}/heads/trailer-genres", json={"features": embeddings.tolist()}).json()["predictions"]
    for p, expected in zip(pred, probabilities):
        got = dict(zip(p["labels"], p["scores"]))
        assert np.allclose([got[g] for g in ("noir", "musical", "western")], expected, atol=1e-5)


def test_a_clip_tagged_online_gets_the_tags_the_batch_job_wrote(server, tagged_clip):
    url, _ = server
    clip, batch = tagged_clip
    online = requests.post(f"{url}/tag", data=clip.read_bytes(), headers={"Content-Type": "video/mp4"}).json()["shots"]
    assert len(online) == len(batch) == 3
    for o, b in zip(online, batch):
        assert o["labels"] == b["labels"] and o["clean"] == b["clean"] and o["labels_multi"] == b["labels_multi"]
        assert np.allclose(o["scores"], b["scores"], atol=1e-5)


BAD = [  # (what, method, path, kwargs, status)
    (
        "malformed JSON",
        "post",
        "/embed/text",
        {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
        422,
    ),
    ("wrong JSON types", "post", "/embed/text", {"json": {"texts": "a beach"}}, 422),
    (
        "malformed JSON to /tag",
        "post",
        "/tag",
        {"data": b"{oops", "headers": {"Content-Type": "application/json"}},
        400,
    ),
    (
        "a non-image upload",
        "post",
        "/tag",
        {"data": b"GIF89a not really", "headers": {"Content-Type": "image/gif"}},
        422,
    ),
    ("bad base64 frames", "post", "/tag", {"json": {"frames": ["%%%"]}}, 422),
    (
        "a corrupt clip",
        "post",
        "/tag",
        {"data": b"\x00\x00\x00\x18ftypmp42" + bytes(4000), "headers": {"Content-Type": "video/mp4"}},
        422,
    ),
    ("an oversized payload", "post", "/tag", {"data": bytes(2 * 2**20), "headers": {"Content-Type": "video/mp4"}}, 413),
    ("an unsupported type", "post", "/tag", {"data": b"hello", "headers": {"Content-Type": "text/plain"}}, 415),
    ("an unknown head", "post", "/heads/nope", {"json": {"features": [[0.0] * 16]}}, 404),
    ("features of the wrong width", "post", "/heads/genre", {"json": {"features": [[0.0] * 5]}}, 422),
    ("an unknown route", "get", "/nowhere", {}, 404),
]


@pytest.mark.parametrize("what,method,path,kwargs,status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_4xx_with_a_reason_and_the_next_good_request_succeeds(
    server, what, method, path, kwargs, status
):
    url, _ = server
    r = getattr(requests, method)(f"{url}{path}", **kwargs)
    assert r.status_code == status, (what, r.status_code, r.text)
    assert r.json()["detail"], what
    ok = requests.post(f"{url}/tag", data=_png(), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.json()["shots"]


def test_a_bounded_load_test_batches_and_loses_no_request(server):
    from ray import serve

    url, _ = server
    png = _png((10, 200, 40))

    async def client(session, n, statuses):
        for i in range(n):
            if i % 2:
                async with session.post(f"{url}/tag", data=png, headers={"Content-Type": "image/png"}) as r:
                    statuses.append(r.status)
            else:
                async with session.post(f"{url}/embed/text", json={"texts": [f"label {i}"]}) as r:
                    statuses.append(r.status)

    async def load():
        statuses: list[int] = []
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(client(session, 10, statuses) for _ in range(20)))
        return statuses

    statuses = asyncio.run(load())
    assert len(statuses) == 200 and set(statuses) == {200}
    stats = serve.get_app_handle("movielib").stats.remote().result()
    print("observed batch sizes:", {k: max(v["batch_sizes"] or [0]) for k, v in stats.items()})
    assert max(stats["tagger"]["batch_sizes"]) > 1 and max(stats["text"]["batch_sizes"]) > 1
