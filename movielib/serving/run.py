"""`movielib serve`: Ray Serve on this machine (or the cluster in RAY_ADDRESS), until Ctrl-C."""

from __future__ import annotations

import time

from movielib.serving.config import ServeConfig


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


def start(cfg: ServeConfig, block: bool = True) -> str:
    """Deploy the app (HTTP on cfg.host:cfg.port); returns its URL. `block`: wait until interrupted."""
    from ray import serve

    from movielib.runtime import init_ray
    from movielib.serving.app import build_app

    app = build_app(cfg)  # weights are checked here, before Ray or any replica starts
    init_ray(cfg.ray_address)
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(app, name="movielib", route_prefix="/")
    url = f"http://{cfg.host}:{cfg.port}"
    if cfg.model.random_weights:
        print("!! RANDOM WEIGHTS: the CLIP model was not trained; its tags and embeddings are meaningless.", flush=True)
    print(
        f"serving on {url}: /healthz /version /embed/text /embed/image /tag /heads/<name> (OpenAPI: {url}/docs)",
        flush=True,
    )
    if block:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            serve.shutdown()
    return url
