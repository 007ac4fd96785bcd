"""Ray Serve on 127.0.0.1 with a random-init tiny CLIP: every route, online == batch, the bad-input matrix,
every limit a hostile request can hit, the API key, clips by URI, a bounded load test that shows batching and
a burst past capacity that is shed (real HTTP)."""

import asyncio
import base64
import io
import os
import time

import aiohttp
import numpy as np
import pytest
import requests
import schemathesis
from conftest import LIGHT, SERVE_KEY_ENV, TINY
from hypothesis import HealthCheck, given, settings
from PIL import Image

from movielib.config import build_config
from movielib.demo.s3server import free_port
from movielib.demo.samples import Segment, generate_clip
from movielib.heads.data import HeadData
from movielib.heads.train import export_bytes, fit
from movielib.io.ffmpeg import run_ffmpeg
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.serving.config import ServeConfig
from movielib.store.store import CatalogStore

pytestmark = pytest.mark.slow
SMALL = {"num_cpus": 0.2, "max_batch_size": 8, "max_ongoing_requests": 32}  # the default batch wait: 0
LIMITS = {"max_body_mb": 1, "max_texts": 4, "max_text_chars": 100, "max_images": 3, "max_pixels": 1_000_000,
          "max_rows": 8, "max_clip_s": 10, "max_clip_pixels": 640 * 480}  # fmt: skip
CLIPS = "serve-clips"
http = requests.Session()  # carries the API key the server fixture turns on (auth.api_key_env)


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
def server(ray_local, s3_server, tagged_clip, tmp_path_factory):
    from ray import serve

    from movielib.serving.run import start
    from movielib.train.genre.job import head_file

    tmp = tmp_path_factory.mktemp("serve")
    s3 = s3_server.client()
    s3.create_bucket(Bucket=CLIPS)
    s3.put_object(Bucket=CLIPS, Key="allowed/three.mp4", Body=tagged_clip[0].read_bytes())
    s3.put_object(Bucket=CLIPS, Key="allowed/big.mp4", Body=bytes(600_000))
    s3.put_object(Bucket=CLIPS, Key="elsewhere/three.mp4", Body=tagged_clip[0].read_bytes())
    http.headers["Authorization"] = f"Bearer {os.environ[SERVE_KEY_ENV]}"
    (tmp / "genre-head.pt").write_bytes(head_file(_genre_model()[0], "genre-embedding"))
    cfg = build_config(
        ServeConfig,
        {
            "model": {"name": TINY, "random_weights": True},
            "port": free_port(),  # drawn outside the ephemeral range: no client socket takes it first
            "heads": {"genre": _head(tmp / "head.pt"), "trailer-genres": str(tmp / "genre-head.pt")},
            "limits": LIMITS,
            "uri": {"enabled": True, "allow": [f"s3://{CLIPS}/allowed/", "s3://no-such-bucket/clips/"], "max_mb": 0.5},
            "auth": {"api_key_env": SERVE_KEY_ENV},
            **{d: SMALL for d in ("text", "image", "scenes", "head")},
            "ingress": {**SMALL, "max_batch_size": 1, "max_ongoing_requests": 16, "max_queued_requests": 32},
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
    assert http.get(f"{url}/healthz").json() == {"status": "ok"}
    version = http.get(f"{url}/version").json()
    assert version["clip"].startswith(TINY) and version["random_weights"] is True
    assert version["heads"]["genre"]["labels"] == ["action", "comedy", "drama"]
    emb = http.post(f"{url}/embed/text", json={"texts": ["a beach", "a kitchen"]}).json()["embeddings"]
    assert np.array(emb).shape == (2, 64) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    one = http.post(f"{url}/embed/image", data=_png(), headers={"Content-Type": "image/png"}).json()["embeddings"]
    two = http.post(f"{url}/embed/image", json={"images": [base64.b64encode(_png()).decode()] * 2}).json()
    assert np.array(one).shape == (1, 64) and np.allclose(two["embeddings"][1], one[0], atol=1e-5)
    tagged = http.post(f"{url}/tag", data=_png(), headers={"Content-Type": "image/png"}, allow_redirects=False)
    assert tagged.status_code == 200  # /tag is the tag app's root itself, not a 307 to /tag/ that re-sends the body
    shot = tagged.json()["shots"][0]
    assert len(shot["labels"]) == 5 and shot["scores"] == sorted(shot["scores"], reverse=True)
    pred = http.post(f"{url}/heads/genre", json={"features": [[0.0] * 16, [1.0] * 16]}).json()["predictions"]
    assert len(pred) == 2 and sorted(pred[0]["labels"]) == ["action", "comedy", "drama"]
    assert http.get(f"{url}/openapi.json").json()["info"]["title"] == "movielib"


def test_the_genre_models_exported_classifier_is_served_like_any_head(server):
    """`movielib train genre` writes genre-head.pt; posting trailer embeddings gives the model's own genres back."""
    url, _ = server
    _, embeddings, probabilities = _genre_model()
    described = http.get(f"{url}/version").json()["heads"]["trailer-genres"]
    assert described["labels"] == ["noir", "musical", "western"] and described["in_dim"] == 12
    pred = http.post(f"{url}/heads/trailer-genres", json={"features": embeddings.tolist()}).json()["predictions"]
    for p, expected in zip(pred, probabilities):
        got = dict(zip(p["labels"], p["scores"]))
        assert np.allclose([got[g] for g in ("noir", "musical", "western")], expected, atol=1e-5)


def test_a_clip_tagged_online_gets_the_tags_the_batch_job_wrote(server, tagged_clip):
    url, _ = server
    clip, batch = tagged_clip
    online = http.post(f"{url}/tag", data=clip.read_bytes(), headers={"Content-Type": "video/mp4"}).json()["shots"]
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
    r = getattr(http, method)(f"{url}{path}", **kwargs)
    assert r.status_code == status, (what, r.status_code, r.text)
    _a_reason_and_no_internals(r)
    ok = http.post(f"{url}/tag", data=_png(), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200 and ok.json()["shots"]


def test_a_bounded_load_test_batches_and_loses_no_request(server):
    from ray import serve

    url, _ = server
    png = _png((10, 200, 40))

    async def client(session, n, statuses):
        for i in range(n):
            if i % 2:
                async with session.post(f"{url}/tag", data=png, headers={"Content-Type": "image/png"}) as r:
                    statuses.append(r.status if r.status == 200 else (r.status, await r.text()))
            else:
                async with session.post(f"{url}/embed/text", json={"texts": [f"label {i}"]}) as r:
                    statuses.append(r.status if r.status == 200 else (r.status, await r.text()))

    async def load():
        statuses: list[int] = []
        async with aiohttp.ClientSession(headers={"Authorization": http.headers["Authorization"]}) as session:
            await asyncio.gather(*(client(session, 10, statuses) for _ in range(20)))
        return statuses

    statuses = asyncio.run(load())
    assert len(statuses) == 200 and set(statuses) == {200}, [s for s in statuses if s != 200]
    stats = {**serve.get_app_handle("movielib").stats.remote().result(),
             "tagger": serve.get_app_handle("movielib-tag").stats.remote().result()}  # fmt: skip
    print("observed batch sizes:", {k: max(v["batch_sizes"] or [0]) for k, v in stats.items()})
    assert max(stats["tagger"]["batch_sizes"]) > 1 and max(stats["text"]["batch_sizes"]) > 1


def _a_reason_and_no_internals(r) -> str:
    """The 4xx's reason: there, and naming no server path, traceback or storage error text."""
    detail = r.json()["detail"]
    assert detail and isinstance(detail, str), r.text
    for leak in ("/tmp", "movielib-", "Traceback", 'File "', "botocore", "AWS Error", "NoSuchKey", "errno"):
        assert leak not in detail, (leak, detail)
    return detail


def _png_bomb(side: int = 4000) -> bytes:
    """A PNG of one colour: 16 M pixels (48 MB decoded) in a few KB."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 0).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 100_000
    return buf.getvalue()


def _chunked(n: int):
    """A body sent chunked, with no Content-Length: the limit must be counted as it streams."""
    yield b'{"texts": ["'
    for _ in range(n // 65536):
        yield b"a" * 65536
    yield b'"]}'


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Clips that break one limit each, and a playlist that would make ffmpeg fetch a URL."""
    tmp = tmp_path_factory.mktemp("hostile")
    generate_clip(tmp / "long.mp4", [Segment("testsrc", 12)], fps=5, size=(64, 48), audio=False)
    generate_clip(tmp / "wide.mp4", [Segment("testsrc", 1)], fps=5, size=(800, 600), audio=False)
    run_ffmpeg(["-i", str(tmp / "wide.mp4"), "-c", "copy", "-f", "flv", str(tmp / "clip.flv")])
    (tmp / "list.m3u8").write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nhttp://169.254.169.254/a.ts\n"
                                    b"#EXT-X-ENDLIST\n")  # fmt: skip
    return {p.name: p.read_bytes() for p in tmp.iterdir()}


JSON = {"Content-Type": "application/json"}
LIMIT_CASES = [  # (what, path, request kwargs (or a name in `hostile`), status, the reason names)
    ("a chunked body past the limit", "/embed/text", {"data": "chunked", "headers": JSON}, 413, "max_body_mb"),
    ("JSON past the limit to a parsed route", "/heads/genre", {"data": "big-json", "headers": JSON}, 413,
     "max_body_mb"),
    ("too many texts", "/embed/text", {"json": {"texts": ["a"] * 5}}, 413, "max_texts"),
    ("a text too long", "/embed/text", {"json": {"texts": ["a" * 101]}}, 413, "max_text_chars"),
    ("too many images", "/embed/image", {"json": {"images": "png*4"}}, 413, "max_images"),
    ("too many frames", "/tag", {"json": {"frames": "png*4"}}, 413, "max_images"),
    ("too many feature rows", "/heads/genre", {"json": {"features": [[0.0] * 16] * 9}}, 413, "max_rows"),
    ("ragged feature rows", "/heads/genre", {"json": {"features": [[0.0] * 16, [0.0]]}}, 422, "same length"),
    ("a decompression bomb to /tag", "/tag", {"data": "bomb", "headers": {"Content-Type": "image/png"}}, 413,
     "max_pixels"),
    ("a decompression bomb to /embed/image", "/embed/image", {"data": "bomb", "headers": {"Content-Type": "image/png"}},
     413, "max_pixels"),
    ("a clip too long", "/tag", {"data": "long.mp4", "headers": {"Content-Type": "video/mp4"}}, 413, "max_clip_s"),
    ("a clip too large a frame", "/tag", {"data": "wide.mp4", "headers": {"Content-Type": "video/mp4"}}, 413,
     "max_clip_pixels"),
    ("a playlist posing as a clip", "/tag", {"data": "list.m3u8", "headers": {"Content-Type": "video/mp4"}}, 422,
     "cannot be opened"),
    ("a container not in clip_formats", "/tag", {"data": "clip.flv", "headers": {"Content-Type": "video/x-flv"}}, 415,
     "clip_formats"),
    ("a URI outside uri.allow", "/tag", {"json": {"uri": f"s3://{CLIPS}/elsewhere/three.mp4"}}, 403, "uri.allow"),
    ("a URI climbing out of uri.allow", "/tag", {"json": {"uri": f"s3://{CLIPS}/allowed/../elsewhere/three.mp4"}},
     403, "uri.allow"),
    ("an object past uri.max_mb", "/tag", {"json": {"uri": f"s3://{CLIPS}/allowed/big.mp4"}}, 413, "uri.max_mb"),
]  # fmt: skip


@pytest.mark.parametrize("what,path,kwargs,status,names", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_every_limit_is_enforced_before_the_work_and_named_in_the_answer(
    server, hostile, what, path, kwargs, status, names
):
    url, _ = server
    png = base64.b64encode(_png()).decode()
    bodies = {"chunked": _chunked(2 * 2**20), "big-json": b'{"features": [[' + b"0.0," * 400_000 + b"0.0]]}",
              "bomb": _png_bomb(), **hostile}  # fmt: skip
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("data"), str):
        kwargs["data"] = bodies[kwargs["data"]]
    for field in ("images", "frames"):
        if kwargs.get("json", {}).get(field) == "png*4":
            kwargs["json"] = {field: [png] * 4}
    r = http.post(f"{url}{path}", **kwargs)
    assert r.status_code == status, (what, r.status_code, r.text)
    assert names in _a_reason_and_no_internals(r), (what, r.text)


def test_a_clip_read_by_uri_is_tagged_like_an_upload_and_missing_reads_like_forbidden(server, tagged_clip):
    url, _ = server
    clip = http.post(f"{url}/tag", json={"uri": f"s3://{CLIPS}/allowed/three.mp4"})
    assert clip.status_code == 200, clip.text
    upload = http.post(f"{url}/tag", data=tagged_clip[0].read_bytes(), headers={"Content-Type": "video/mp4"}).json()
    assert [s["labels"] for s in clip.json()["shots"]] == [s["labels"] for s in upload["shots"]]
    missing = http.post(f"{url}/tag", json={"uri": f"s3://{CLIPS}/allowed/none.mp4"})
    no_bucket = http.post(f"{url}/tag", json={"uri": "s3://no-such-bucket/clips/three.mp4"})
    assert missing.status_code == no_bucket.status_code == 404
    reasons = [_a_reason_and_no_internals(r) for r in (missing, no_bucket)]
    assert reasons[0].split(": ", 1)[1] == reasons[1].split(": ", 1)[1]  # the same words, whatever S3 said


def test_without_the_api_key_every_route_but_healthz_answers_401(server):
    url, _ = server
    assert requests.get(f"{url}/healthz").status_code == 200
    routes = [
        ("get", "/version", None, {}),
        ("get", "/readyz", None, {}),
        ("get", "/openapi.json", None, {}),
        ("post", "/embed/text", None, {"json": {"texts": ["a"]}}),
        ("post", "/tag", "image/png", {"data": _png()}),
    ]
    for method, path, kind, kwargs in routes:
        for auth in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": os.environ[SERVE_KEY_ENV]}):
            headers = {**({"Content-Type": kind} if kind else {}), **auth}
            r = getattr(requests, method)(f"{url}{path}", headers=headers, **kwargs)
            assert r.status_code == 401 and "Authorization: Bearer" in r.json()["detail"], (path, auth, r.text)
    assert http.get(f"{url}/version").status_code == 200


def test_ready_when_every_deployment_has_a_running_replica(server):
    url, _ = server
    r = http.get(f"{url}/readyz")
    assert r.status_code == 200 and r.json() == {"status": "ready"}, r.text


def test_a_burst_past_capacity_is_shed_with_503_and_the_service_recovers(server):
    """Far more requests at once than the ingress takes in flight plus queued: each answers 200, or 503 with
    Retry-After at once, or 504, within the timeout; afterwards every request succeeds."""
    url, _ = server
    png = _png((30, 60, 90))

    async def one(session):
        t = time.monotonic()
        async with session.post(f"{url}/tag", data=png, headers={"Content-Type": "image/png"}) as r:
            await r.read()
            return r.status, r.headers.get("Retry-After"), time.monotonic() - t

    async def burst():
        headers = {"Authorization": http.headers["Authorization"]}
        async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as session:
            return await asyncio.gather(*(one(session) for _ in range(300)))

    answers = asyncio.run(burst())
    statuses = [s for s, _, _ in answers]
    print("burst:", {s: statuses.count(s) for s in set(statuses)})
    assert set(statuses) <= {200, 503, 504} and statuses.count(503) > 0 and statuses.count(200) > 0
    assert all(retry for s, retry, _ in answers if s == 503)  # a client knows when to come back
    assert max(took for _, _, took in answers) < 30 + 5  # limits.request_timeout_s (+ the proxy's margin)
    after = [http.post(f"{url}/tag", data=png, headers={"Content-Type": "image/png"}).status_code for _ in range(20)]
    assert after == [200] * 20


def test_generated_requests_from_the_openapi_schema_never_get_a_5xx_and_every_4xx_has_a_reason(server):
    """schemathesis: requests generated from the live app's own OpenAPI schema, valid and not, for every operation;
    each answer is < 500 and a 4xx carries a reason that names no internals."""
    url, _ = server
    cases: list[tuple[str, int]] = []
    for prefix in ("", "/tag"):  # both applications: the main one and the tagger's own
        api = schemathesis.openapi.from_dict(http.get(f"{url}{prefix}/openapi.json").json())
        for result in api.get_all_operations():
            _fuzz(result.ok(), f"{url}{prefix}", cases)
    statuses = {s: sum(x == s for _, x in cases) for s in sorted({s for _, s in cases})}
    print(f"schemathesis: {len(cases)} cases, {sum(s >= 500 for _, s in cases)} 5xx, statuses {statuses}")
    assert {"POST /embed/text", "POST /", "POST /heads/{name}", "POST /embed/image"} <= {op for op, _ in cases}
    assert any(s == 200 for op, s in cases if op == "POST /embed/text")  # valid cases got through too


def _fuzz(operation, url: str, cases: list) -> None:
    """Requests schemathesis generates for `operation`, sent to `url`: each answer < 500, each 4xx with a reason."""

    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def answers(case):
        r = case.call(base_url=url, session=http, timeout=60)
        cases.append((case.operation.label, r.status_code))
        assert r.status_code < 500, (case.operation.label, r.status_code, r.text[:300])
        if r.status_code >= 400:
            _a_reason_and_no_internals(r)

    answers()
