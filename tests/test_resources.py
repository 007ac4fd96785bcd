"""`scoring.num_gpus: auto` against what a cluster can grow to, and the one device policy."""

import pytest

from movielib.devices import choose_device, torch_device
from movielib.errors import ConfigError
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.resources import ClusterDescription, NodeType, resolve_num_gpus
from movielib.pipeline.tagging import scorer_resources

CPU_HEAD = NodeType("head", {"CPU": 0}, 0, 0)
CPU_GROUP = NodeType("cpu", {"CPU": 16, "memory": 64e9}, 0, 32)
GPU_AT_ZERO = NodeType("gpu", {"CPU": 8, "GPU": 1}, 0, 8)


@pytest.mark.parametrize(
    "cluster, expected",
    [
        (ClusterDescription({"CPU": 16}, (CPU_HEAD, CPU_GROUP, GPU_AT_ZERO)), 1.0),  # GPU group at zero workers
        (ClusterDescription({"CPU": 16, "GPU": 2}, ()), 1.0),  # GPUs up now, no autoscaler
        (ClusterDescription({"CPU": 16}, (CPU_HEAD, CPU_GROUP)), 0.0),  # no GPU anywhere
        (ClusterDescription({"CPU": 16}, (NodeType("gpu", {"GPU": 1}, 0, 0),)), 0.0),  # a GPU type that may not start
        (ClusterDescription({"CPU": 2}, ()), 0.0),  # a laptop
    ],
)
def test_auto_means_a_gpu_whenever_the_cluster_can_have_one(cluster, expected):
    assert resolve_num_gpus("auto", cluster) == expected
    if expected:
        assert resolve_num_gpus(0.5, cluster) == 0.5  # explicit numbers pass through where GPUs can exist


def test_a_gpu_request_the_cluster_can_never_grant_fails_naming_the_field():
    with pytest.raises(ConfigError, match=r"decode.num_gpus is 0.25, but this cluster has no GPUs"):
        resolve_num_gpus(0.25, ClusterDescription({"CPU": 16}, (CPU_GROUP,)), field="decode.num_gpus")
    assert resolve_num_gpus(0.25, ClusterDescription({"CPU": 16}, (GPU_AT_ZERO,)), field="decode.num_gpus") == 0.25


def test_scorer_reservation_on_a_gpu_cluster_at_zero_gpu_workers():
    cfg = load_tag_config(None, {"scoring.num_cpus": 2})
    res = scorer_resources(cfg, ClusterDescription({"CPU": 16}, (CPU_GROUP, GPU_AT_ZERO)))
    assert res.ray_args() == {"num_cpus": 2.0, "num_gpus": 1.0, "memory": 2 << 30}
    assert "num_gpus" not in scorer_resources(cfg, ClusterDescription({"CPU": 16}, (CPU_GROUP,))).ray_args()


@pytest.mark.parametrize(
    "cuda, in_worker, assigned, expected",
    [
        (True, True, [], "cpu"),  # a CPU stage on a GPU node: GPU 0 is visible but not ours
        (True, True, [0], "cuda"),  # a scoring actor that reserved a GPU
        (True, False, [], "cuda"),  # the driver or a script
        (False, True, [0], "cpu"),
    ],
)
def test_a_stage_uses_a_gpu_only_when_it_reserved_one(cuda, in_worker, assigned, expected):
    assert choose_device(cuda, in_worker, assigned) == expected


def test_device_policy_inside_real_ray_tasks(ray_local):
    @ray_local.remote(num_cpus=1)
    def where():
        from movielib.devices import assigned_gpus, in_ray_worker, torch_device

        return in_ray_worker(), assigned_gpus(), torch_device()

    assert ray_local.get(where.remote()) == (True, [], "cpu")
    import torch

    assert torch_device() == ("cuda" if torch.cuda.is_available() else "cpu")  # the driver: whatever this machine has
    assert ClusterDescription.from_ray().resources.get("CPU") == 2
