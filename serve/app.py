"""The Ray Serve application, for `serve run` / `serve deploy` and a RayService (application builders:
Serve passes the config file's `args`, a movielib serve config, to `app` and `tag_app`).

    movielib serve --config serve/movielib.yaml --write-serve-config serve/serve_config.yaml
    serve run serve/serve_config.yaml          # or: movielib serve --config serve/movielib.yaml
"""

from movielib.config import build_config
from movielib.serving.app import build_app, build_tag_app
from movielib.serving.config import ServeConfig


def app(args: dict):
    """The main application (/): the encoders and heads."""
    return build_app(build_config(ServeConfig, args))


def tag_app(args: dict):
    """The tagging application (/tag): the tagger is its own ingress."""
    return build_tag_app(build_config(ServeConfig, args))
