"""The cluster manifests parse, and the job they submit is one the CLI accepts."""

import shlex

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
