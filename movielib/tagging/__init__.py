"""The tagging core: MovieCLIP's CLIPSceneScore and clean rules, the SceneTagger that applies them to frames,
and the VideoCutter that turns one video into shots and model-size crops. The batch job's Ray Data stages
and the Serve deployments are thin shells over these."""

import importlib

# the public API, imported on first use: a light submodule (a config, for the CLI) does not pull in torch
_PUBLIC = {
    "SceneTagger": "movielib.tagging.tagger",
    "TaggedShot": "movielib.tagging.tagger",
    "CleanRules": "movielib.tagging.scene_score",
    "clip_scene_score": "movielib.tagging.scene_score",
    "VideoCutter": "movielib.tagging.video",
    "CutShot": "movielib.tagging.video",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
