"""The tagging core: MovieCLIP's CLIPSceneScore and clean rules, the SceneTagger that applies them to frames,
and the VideoCutter that turns one video into shots and model-size crops. The batch job's Ray Data stages
and the Serve deployments are thin shells over these."""

from movielib import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "SceneTagger": "movielib.tagging.tagger",
        "TaggedShot": "movielib.tagging.tagger",
        "CleanRules": "movielib.tagging.scene_score",
        "clip_scene_score": "movielib.tagging.scene_score",
        "VideoCutter": "movielib.tagging.video",
        "CutShot": "movielib.tagging.video",
    },
)
