"""Ray Data stages of the tagging job. Each is a plain callable on a batch, testable without Ray.

    DecodeAndDetect (CPU task)   video row -> per-shot rows: sampled crops, detector frames,
                                 audio samples, subtitle text (decode.py; one decode pass)
    DetectPeople    (CPU task)   + face_count, largest_face_frac, person_present (people.py)
    EmbedAudio      (CPU task)   + audio_embedding (embed.py)
    EmbedMotion     (CPU task)   + motion_embedding (optical-flow statistics of the sampled frames; embed.py)
    EmbedText       (CPU task)   + text_embedding (subtitles; embed.py)
    ClipSceneScorer (actor pool) + top-k CLIPSceneScore tags, image_embedding (score.py, a SceneTagger)

What each stage needs (CPUs, GPUs, memory) is part of the job config (decode.*, scoring.*) and
is mapped onto Ray in one place, `movielib.pipeline.tagging.build_dataset`.
"""

from movielib.pipeline.stages.columns import tensor_column
from movielib.pipeline.stages.decode import DecodeAndDetect
from movielib.pipeline.stages.embed import EmbedAudio, EmbedMotion, EmbedText
from movielib.pipeline.stages.people import DetectPeople
from movielib.pipeline.stages.score import ClipSceneScorer
from movielib.store.schema import FeatureSpec

__all__ = [
    "ClipSceneScorer",
    "DecodeAndDetect",
    "DetectPeople",
    "EmbedAudio",
    "EmbedMotion",
    "EmbedText",
    "FeatureSpec",
    "tensor_column",
]
