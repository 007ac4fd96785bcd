"""The Serve config file movielib writes is one Ray Serve itself accepts; bad serve configs name the field."""

import pytest
import yaml

from movielib.cli import main
from movielib.config import build_config
from movielib.errors import ConfigError
from movielib.serving.config import ServeConfig


def test_the_written_serve_config_passes_ray_serves_own_schema_and_carries_every_deployment(tmp_path):
    from ray.serve.schema import ServeDeploySchema

    out = tmp_path / "serve_config.yaml"
    assert (
        main(
            [
                "serve",
                "--random-weights",
                "--set",
                "scenes.max_batch_size=16",
                "--set",
                "scenes.max_ongoing_requests=32",
                "--set",
                "heads.genre=s3://b/head.pt",
                "--write-serve-config",
                str(out),
            ]
        )
        == 0
    )
    doc = yaml.safe_load(out.read_text())
    ServeDeploySchema.model_validate(doc)  # raises on anything Serve would refuse
    app, tag = doc["applications"]
    assert app["import_path"] == "serve.app:app" and app["args"]["heads"] == {"genre": "s3://b/head.pt"}
    assert (tag["import_path"], tag["route_prefix"], tag["args"]) == ("serve.app:tag_app", "/tag", app["args"])
    deployments = {d["name"]: d for a in (app, tag) for d in a["deployments"]}
    assert [d["name"] for d in tag["deployments"]] == ["Tagger"]  # the tagger is its app's ingress: one hop
    assert set(deployments) == {"Ingress", "TextEncoder", "ImageEncoder", "Tagger", "Heads"}
    assert deployments["Tagger"]["user_config"] == {"max_batch_size": 16, "batch_wait_timeout_s": 0.0}
    assert deployments["Tagger"]["max_ongoing_requests"] == 32 and deployments["Tagger"]["max_queued_requests"] == 64
    assert deployments["Ingress"]["backpressure_config"] == {"status_code": 503, "retry_after_s": 1}
    assert doc["http_options"]["request_timeout_s"] == 35  # limits.request_timeout_s + the proxy's margin
    assert build_config(ServeConfig, app["args"]).model.random_weights  # the args rebuild the same config


def test_a_batch_that_could_never_fill_is_refused_naming_the_field():
    with pytest.raises(ConfigError, match="scenes.max_ongoing_requests must be >= max_batch_size"):
        build_config(ServeConfig, {"scenes": {"max_batch_size": 16, "max_ongoing_requests": 5}})
    with pytest.raises(ConfigError, match="text.min_replicas must be <= max_replicas"):
        build_config(ServeConfig, {"text": {"min_replicas": 3, "max_replicas": 2}})


def test_the_default_deployments_fit_two_cores_and_a_config_that_cannot_fit_fails_naming_the_fields():
    from movielib.pipeline.resources import ClusterDescription, NodeType
    from movielib.serving.run import check_fits

    laptop = ClusterDescription(resources={"CPU": 2.0})
    check_fits(build_config(ServeConfig, {}), laptop)  # the README's command on a 2-core machine
    one_each = {d: {"num_cpus": 1} for d in ("ingress", "text", "image", "scenes", "head")}
    with pytest.raises(ConfigError, match=r"ask 5 CPUs \(ingress 1 x 1, text 1 x 1.*more than .* \(2\).*num_cpus"):
        check_fits(build_config(ServeConfig, one_each), laptop)
    with pytest.raises(ConfigError, match=r"ask 1 GPUs \(scenes 1 x 1\).*min_replicas"):
        check_fits(build_config(ServeConfig, {"scenes": {"num_gpus": 1}}), laptop)
    growing = ClusterDescription({"CPU": 2.0}, (NodeType("gpu", {"CPU": 8, "GPU": 1}, 0, 4),))
    check_fits(build_config(ServeConfig, {**one_each, "scenes": {"num_gpus": 1}}), growing)  # it can autoscale


def test_uris_are_read_only_under_the_allowed_prefixes():
    uri = build_config(ServeConfig, {"uri": {"enabled": True, "allow": ["s3://clips/public/", "s3://other/x"]}}).uri
    assert uri.allows("s3://clips/public/a.mp4") and uri.allows("s3://other/x/b.mp4")
    for refused in ("s3://clips/publicity/a.mp4", "s3://clips/public/../private/a.mp4", "s3://clips/private/a.mp4",
                    "/etc/passwd", "file:///etc/passwd", "s3://other/xy/b.mp4"):  # fmt: skip
        assert not uri.allows(refused), refused
    assert not build_config(ServeConfig, {}).uri.allows("s3://clips/public/a.mp4")  # off by default
    with pytest.raises(ConfigError, match="uri.allow"):
        build_config(ServeConfig, {"uri": {"enabled": True}})
    with pytest.raises(ConfigError, match="uri.allow"):
        build_config(ServeConfig, {"uri": {"enabled": True, "allow": ["clips/public/"]}})


def test_an_api_key_variable_that_is_named_but_unset_is_an_error_not_an_open_door(monkeypatch):
    from movielib.serving.checks import api_key

    monkeypatch.delenv("MOVIELIB_NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError, match="auth.api_key_env names MOVIELIB_NO_SUCH_KEY"):
        api_key("MOVIELIB_NO_SUCH_KEY")
    monkeypatch.setenv("MOVIELIB_NO_SUCH_KEY", "s3cret")
    assert api_key("MOVIELIB_NO_SUCH_KEY") == "s3cret" and api_key(None) is None


def test_a_replica_whose_batches_keep_failing_is_unhealthy_until_one_succeeds():
    import asyncio

    from movielib.serving.models import Batched, counted

    class Model(Batched):
        broken = True

        @counted
        async def run(self, requests):
            if self.broken:
                raise RuntimeError("CUDA error: an illegal memory access")
            return requests

    async def batches(model, n):
        for _ in range(n):
            try:
                await model.run([1])
            except RuntimeError:
                pass

    model = Model()
    asyncio.run(batches(model, 2))
    model.check_health()  # two failures may be two bad requests
    asyncio.run(batches(model, 1))
    with pytest.raises(RuntimeError, match="the last 3 batches failed"):
        model.check_health()
    model.broken = False
    asyncio.run(batches(model, 1))
    model.check_health()
