"""The cluster manifests parse, and the job they submit is one the CLI accepts."""

import shlex
from pathlib import Path

import yaml

from conftest import ROOT
from movielib.cli import build_parser


def test_rayjob_entrypoint_is_a_valid_tag_command():
    job = yaml.safe_load((ROOT / "cluster/kuberay/rayjob-tag.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["python", "jobs/tag_catalog.py"] and (ROOT / argv[1]).exists()
    args = build_parser().parse_args(["tag", *argv[2:]])
    assert args.source.startswith("s3://") and args.weights.startswith("s3://")


def test_gpu_groups_scale_from_zero():
    for path in ("cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob-tag.yaml"):
        doc = yaml.safe_load((ROOT / path).read_text())
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        assert spec["enableInTreeAutoscaling"] is True
        gpu = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"][0]
        assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] > 0
    launcher = yaml.safe_load((ROOT / "cluster/ray-cluster.yaml").read_text())
    assert launcher["available_node_types"]["gpu_worker"]["min_workers"] == 0


def test_gpu_node_types_declare_their_gpus_explicitly():
    """What `scoring.num_gpus: auto` resolves against: a GPU node type the autoscaler knows, even at zero workers."""
    launcher = yaml.safe_load((ROOT / "cluster/ray-cluster.yaml").read_text())
    assert launcher["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1
    for path in ("cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob-tag.yaml"):
        doc = yaml.safe_load((ROOT / path).read_text())
        spec = doc["spec"].get("rayClusterSpec", doc["spec"])
        gpu = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"][0]
        limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert gpu["rayStartParams"]["num-gpus"] == limits["nvidia.com/gpu"] == "1"
    job = yaml.safe_load((ROOT / "cluster/kuberay/rayjob-tag.yaml").read_text())
    assert "scoring.num_gpus=1" in job["spec"]["entrypoint"]


def test_launcher_config_validates_against_rays_own_schema():
    import json

    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(yaml.safe_load((ROOT / "cluster/ray-cluster.yaml").read_text()), schema)
