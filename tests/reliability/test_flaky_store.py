"""A flaky object store (503 SlowDown, reset connections, delays) in front of moto: the run retries with backoff
and its tables are complete. A missing bucket or an endpoint nobody listens on fails before any work."""

import json

import pytest
from conftest import LIGHT, TINY, assert_each_key_once
from flaky_s3 import FlakyProxy

from movielib.errors import StorageError
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.store import CatalogStore


def _cfg(endpoint, **extra):
    return load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            **LIGHT,
            "s3.endpoint_url": endpoint,
            "output.rows_per_file": 3,
            "reliability.backoff_s": 0.1,
            **extra,
        },
    )


@pytest.mark.slow
def test_a_run_through_a_flaky_store_is_complete(ray_local, s3_server, bucket, clips):
    client = s3_server.client()
    expected = {}
    for n in range(2):
        for name, (path, cuts) in clips.items():
            client.upload_file(str(path), bucket, f"catalog/{n}/{name}")
            expected[f"{n}/{name}"] = len(cuts) + 1
    proxy = FlakyProxy(s3_server.endpoint_url, slowdown=0.15, reset=0.05, delay=0.1).start()
    try:
        summary = run_tagging(plan_tagging(_cfg(proxy.url), f"s3://{bucket}/catalog/", f"s3://{bucket}/out"))
    finally:
        proxy.stop()
    print("proxy:", dict(proxy.counts))
    assert proxy.counts["slowdown"] >= 10 and proxy.counts["reset"] >= 3 and proxy.counts["delay"] >= 5, proxy.counts
    assert (summary.videos_ok, summary.videos_error, summary.videos_retryable) == (len(expected), 0, 0)
    store = CatalogStore(f"s3://{bucket}/out", S3Options.from_env(s3_server.endpoint_url))
    assert_each_key_once(store, len(expected), sum(expected.values()))


def test_a_missing_bucket_fails_before_any_work(s3_server, bucket, tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"0")
    with pytest.raises(StorageError, match="DEST bucket 'no-such-bucket' does not exist"):
        plan_tagging(_cfg(s3_server.endpoint_url), str(tmp_path), "s3://no-such-bucket/out")
    with pytest.raises(StorageError, match="SOURCE 's3://no-such-bucket/catalog/' does not exist"):
        plan_tagging(_cfg(s3_server.endpoint_url), "s3://no-such-bucket/catalog/", str(tmp_path / "out"))


def test_an_endpoint_nobody_listens_on_fails_before_any_s3_request_naming_it(tmp_path, refused_url):
    """Only the connection check names the endpoint "takes no connections", and it runs before any S3 request:
    with 100 attempts of backed-off retries a request would hang here for many minutes. The planning runs in a
    process of its own with its own timeout: a hang in native code (S3 retries) ignores SIGALRM, and a thread
    timeout would end the whole test session."""
    import subprocess
    import sys

    plan = (
        "import json, sys\n"
        "from movielib.errors import StorageError\n"
        "from movielib.pipeline.config import load_tag_config\n"
        "from movielib.pipeline.tagging import plan_tagging\n"
        "cfg = load_tag_config(None, json.loads(sys.argv[1]))\n"
        "try:\n"
        "    plan_tagging(cfg, 's3://bucket/catalog/', sys.argv[2])\n"
        "except StorageError as exc:\n"
        "    print(f'StorageError: {exc}')\n"
    )
    overrides = {"model.name": TINY, "model.random_weights": True, **LIGHT, "s3.endpoint_url": refused_url,
                 "s3.max_attempts": 100, "reliability.backoff_s": 0.1}  # fmt: skip
    try:
        out = subprocess.run(
            [sys.executable, "-c", plan, json.dumps(overrides), str(tmp_path / "out")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("planning against an endpoint nobody listens on still runs after 60 s: it retried S3 requests")
    assert f"StorageError: S3 endpoint {refused_url} takes no connections" in out.stdout, out.stdout + out.stderr
