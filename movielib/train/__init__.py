"""Training: Ray Train + DeepSpeed launcher and the pretraining methods (DESIGN §2-4) built on it."""

from movielib import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "launch": "movielib.train.launcher",
        "Worker": "movielib.train.launcher",
        "ScalingSection": "movielib.train.config",
        "DeepSpeedSection": "movielib.train.config",
        "RunLog": "movielib.train.runlog",
    },
)
