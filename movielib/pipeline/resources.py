"""What a stage needs from the scheduler, and what the cluster can give: mapped onto Ray in one place.

`scoring.num_gpus: auto` means "a GPU per scoring actor whenever the cluster can have GPUs": GPUs
up now, or a node type the autoscaler can add (a GPU group at zero workers included). Reading
only `ray.cluster_resources()` at submit time would miss the second case, so the scorer would ask
for no GPU and the autoscaler would never start one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResources:
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory_bytes: int | None = None  # reserved per task/actor so the scheduler does not overpack

    def ray_args(self) -> dict:
        """Keyword arguments for `map_batches` (num_cpus / num_gpus / memory)."""
        args: dict = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        if self.memory_bytes:
            args["memory"] = self.memory_bytes
        return args


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can start (cluster launcher node type, KubeRay worker group)."""

    name: str
    resources: dict[str, float]
    min_workers: int = 0
    max_workers: int = 0  # -1: unbounded


@dataclass(frozen=True)
class ClusterDescription:
    """What a cluster has now and what it can grow to."""

    resources: dict[str, float] = field(default_factory=dict)
    node_types: tuple[NodeType, ...] = ()

    def can_have(self, resource: str) -> bool:
        if self.resources.get(resource, 0) > 0:
            return True
        return any(t.resources.get(resource, 0) > 0 and t.max_workers != 0 for t in self.node_types)

    def most(self, resource: str) -> float:
        """The most of `resource` the cluster can have: what it has now plus what its node types can add."""
        extra = 0.0
        for t in self.node_types:
            if t.resources.get(resource, 0) > 0 and t.max_workers != 0:
                extra += float("inf") if t.max_workers < 0 else t.resources[resource] * t.max_workers
        return self.resources.get(resource, 0.0) + extra

    @classmethod
    def from_ray(cls) -> ClusterDescription:
        """The connected cluster: its resources now, and the node types its autoscaler reported to the GCS."""
        import ray

        types: list[NodeType] = []
        try:  # private API (what Ray Data's own autoscaler reads); absent on clusters without an autoscaler
            from ray._private.state import state

            config = state.get_cluster_config()
            for group in config.node_group_configs if config else []:
                types.append(NodeType(group.name, dict(group.resources), group.min_count, group.max_count))
        except Exception as exc:  # pragma: no cover - depends on the Ray build
            log.debug("no autoscaler cluster config: %s", exc)
        return cls(resources=dict(ray.cluster_resources()), node_types=tuple(types))


def resolve_num_gpus(
    setting: str | float, cluster: ClusterDescription, per_actor: float = 1.0, field: str = "scoring.num_gpus"
) -> float:
    """`auto` -> `per_actor` GPUs when the cluster has or can autoscale GPU nodes, else 0; numbers pass through.

    A GPU request the cluster can never grant would leave the job waiting forever: it is a ConfigError.
    """
    if setting == "auto":
        return per_actor if cluster.can_have("GPU") else 0.0
    if float(setting) > 0 and not cluster.can_have("GPU"):
        from movielib.errors import ConfigError

        raise ConfigError(
            f"{field} is {setting}, but this cluster has no GPUs and no GPU node type it can start "
            f"(set {field}: 0, or add a GPU worker group)"
        )
    return float(setting)


def resolve_decode_cpus(setting: str | float, scorer_gpus: float) -> float:
    """`auto` -> 1 CPU per decode task when scoring runs on GPUs; 0.5 when the scorer actors share the CPUs
    (a scorer actor reserves a logical CPU it is mostly idle on while decode is the bottleneck)."""
    if setting == "auto":
        return 1.0 if scorer_gpus else 0.5
    return float(setting)


def decode_concurrency(
    cluster: ClusterDescription, decode_cpus: float, scorer: StageResources, scorer_actors: int
) -> int | None:
    """How many decode tasks may run at once: the CPUs the cluster can have, less the scorer actors' on
    CPU-only clusters, over each task's CPUs. Ray Data then submits no more than can run (without the
    cap and without per-operator reservations it queues every task of the chunk at once, and runs slower);
    None (no cap) when the cluster can grow without bound."""
    cpus = cluster.most("CPU")
    if cpus == float("inf"):
        return None
    free = cpus - (0 if scorer.num_gpus else scorer.num_cpus * scorer_actors)
    return max(1, int(free / decode_cpus))
