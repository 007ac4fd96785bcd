"""Training: Ray Train + DeepSpeed launcher and the pretraining methods (DESIGN §2-4) built on it."""

import importlib

# the public API, imported on first use: a light submodule (a config, for the CLI) does not pull in torch
_PUBLIC = {
    "launch": "movielib.train.launcher",
    "Worker": "movielib.train.launcher",
    "ScalingSection": "movielib.train.config",
    "DeepSpeedSection": "movielib.train.config",
    "RunLog": "movielib.train.runlog",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
