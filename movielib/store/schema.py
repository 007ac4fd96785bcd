"""Arrow schemas of the output tables (DESIGN.md, Data model). Frame numbers are 0-based, end exclusive."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("duration_s", pa.float64()),
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("n_frames", pa.int64()),
        ("status", pa.string()),  # ok | error
        ("error", pa.string()),  # null when ok
    ]
)

SHOTS = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_idx", pa.int32()),
        ("start_frame", pa.int64()),
        ("end_frame", pa.int64()),  # exclusive
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("keyframes", pa.list_(pa.int64())),  # the frames sampled for scoring
        ("keyframe_s", pa.list_(pa.float64())),
    ]
)

TAGS = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_idx", pa.int32()),
        ("labels", pa.list_(pa.string())),  # top-k, best first
        ("scores", pa.list_(pa.float32())),  # CLIPSceneScore of each label in `labels`
        ("clean", pa.bool_()),  # top-1 score >= 0.4
        ("labels_multi", pa.list_(pa.string())),  # top-1 + top-2..k with score > 0.1, when clean
        ("face_count", pa.int32()),  # person/face detector stage; null when it is off
        ("largest_face_frac", pa.float32()),
        ("person_present", pa.bool_()),
        ("model", pa.string()),  # CLIP architecture / weights version that scored the shot
    ]
)

# opt-in (features.keyframes): each shot's middle sampled frame, model-size, for trainers that need pixels
KEYFRAMES = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_idx", pa.int32()),
        ("frame_s", pa.float64()),  # when the frame is on screen
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("jpeg", pa.binary()),
    ]
)

# opt-in (features.cues): each sidecar subtitle cue with its times and its own text embedding, the language tokens
# with times that `movielib pretrain multimodal` aligns to shots (a cue on screen across two shots counts for both)
CUES = pa.schema(
    [
        ("video_id", pa.string()),
        ("cue_idx", pa.int32()),  # the cue's place in the subtitle file, 0-based
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("text", pa.string()),
        ("model", pa.string()),  # the text encoder, as in features/text
        ("model_version", pa.string()),
        ("embedding", pa.list_(pa.float32())),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "videos": VIDEOS,
    "shots": SHOTS,
    "tags": TAGS,
    "keyframes": KEYFRAMES,
    "cues": CUES,
}


FEATURE_MODALITIES = ("image", "keyframe", "audio", "motion", "text")


# Delta Lake has no fixed-size lists: an embedding is a list<float32> whose length is the model's width.
FEATURES = pa.schema(
    [
        ("video_id", pa.string()),
        ("shot_idx", pa.int32()),
        ("model", pa.string()),
        ("model_version", pa.string()),
        ("embedding", pa.list_(pa.float32())),  # null when the input is absent (no audio track, no subtitle)
    ]
)


@dataclass(frozen=True)
class FeatureSpec:
    """What a feature stage writes: the features/<modality> table's model, version and width."""

    modality: str
    model: str
    version: str
    dim: int


SHOT_TABLES = ("shots", "tags", "keyframes")  # keyed by (video_id, shot_idx), like every features/<modality> table
VIDEO_TABLES = (*SHOT_TABLES, "cues")  # rows of a video, written before its videos row (what debris can be in)


def has_models(name: str) -> bool:
    """Tables whose rows say which model (and model_version) wrote them: features/<m> and cues."""
    return name.startswith("features/") or name == "cues"


def table_schema(name: str) -> pa.Schema:
    """Schema of a table by name: videos, shots, tags, or features/<modality>."""
    return FEATURES if name.startswith("features/") else TABLES[name]
