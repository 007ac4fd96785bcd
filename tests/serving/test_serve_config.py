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
    app = doc["applications"][0]
    assert app["import_path"] == "serve.app:app" and app["args"]["heads"] == {"genre": "s3://b/head.pt"}
    deployments = {d["name"]: d for d in app["deployments"]}
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
