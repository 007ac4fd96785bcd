"""`movielib serve`: Ray Serve on this machine (or the cluster in RAY_ADDRESS), until Ctrl-C."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from movielib.errors import ConfigError
from movielib.serving.config import ServeConfig

if TYPE_CHECKING:
    from movielib.pipeline.resources import ClusterDescription


class ServeSummary(str):
    """What `movielib serve` answers once it returns: the written config's path, or that Serve stopped."""

    exit_code = 0

    def render(self) -> str:
        return str(self)


def run(cfg: ServeConfig, args=None) -> ServeSummary:
    """`movielib serve`: deploy and serve until Ctrl-C, or (--write-serve-config PATH) write Serve's config file."""
    target = getattr(args, "write_serve_config", None)
    if target:
        from movielib.serving.app import serve_config
        from movielib.serving.manifest import write_serve_config

        return ServeSummary(write_serve_config(serve_config(cfg), target))
    return ServeSummary(f"stopped serving {start(cfg)}")


def check_fits(cfg: ServeConfig, cluster: ClusterDescription) -> None:
    """The deployments' minimum replicas fit what the cluster has or can autoscale to; else a ConfigError naming
    the fields, at once (Serve itself would log "replicas have taken more than 30s to be scheduled" forever)."""
    deployments = cfg.deployments()
    for resource, field in (("CPU", "num_cpus"), ("GPU", "num_gpus")):
        asks = {name: d.min_replicas * getattr(d, field) for name, d in deployments.items()}
        need, most = sum(asks.values()), cluster.most(resource)
        if need > most + 1e-9:
            parts = ", ".join(
                f"{name} {d.min_replicas} x {getattr(d, field):g}" for name, d in deployments.items() if asks[name]
            )
            raise ConfigError(
                f"the deployments' min_replicas ask {need:g} {resource}s ({parts}), more than this cluster has or can "
                f"autoscale to ({most:g}): lower <deployment>.{field} or <deployment>.min_replicas"
            )


def start(cfg: ServeConfig, block: bool = True) -> str:
    """Deploy the app (HTTP on cfg.host:cfg.port); returns its URL. `block`: wait until interrupted."""
    from ray import serve

    from movielib.pipeline.resources import ClusterDescription
    from movielib.runtime import init_ray
    from movielib.serving.app import CONTROLLER_OPTIONS, build_apps, http_options
    from movielib.serving.checks import api_key

    apps = build_apps(cfg)  # weights are checked here, before Ray or any replica starts
    api_key(cfg.auth.api_key_env)  # a key named but not set fails here, not in a replica
    init_ray(cfg.ray_address)
    check_fits(cfg, ClusterDescription.from_ray())
    url = f"http://{cfg.host}:{cfg.port}"
    try:  # Ctrl-C while the replicas start (they can take a minute) stops Serve as Ctrl-C while serving does
        serve.start(http_options=http_options(cfg), controller_options=CONTROLLER_OPTIONS)
        for name, (prefix, app) in apps.items():
            serve.run(app, name=name, route_prefix=prefix)
        if cfg.model.random_weights:
            print(
                "!! RANDOM WEIGHTS: the CLIP model was not trained; its tags and embeddings are meaningless.",
                flush=True,
            )
        print(
            f"serving on {url}: /healthz /version /embed/text /embed/image /tag /heads/<name> (OpenAPI: {url}/docs)",
            flush=True,
        )
        while block:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
    return url
