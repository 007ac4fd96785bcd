"""The Ray Serve application, for `serve run` / `serve deploy` and a RayService (an application builder:
Serve passes the config file's `args`, a movielib serve config, to `app`).

    movielib serve --config serve/movielib.yaml --write-serve-config serve/serve_config.yaml
    serve run serve/serve_config.yaml          # or: movielib serve --config serve/movielib.yaml
"""

from movielib.config import build_config
from movielib.serving.app import build_app
from movielib.serving.config import ServeConfig


def app(args: dict):
    return build_app(build_config(ServeConfig, args))
