"""What travels between the tagging stages: per-shot rows, tensor columns, per-stage timings."""

from __future__ import annotations

import functools
import time

import numpy as np
import pyarrow as pa
from ray.data.extensions import ArrowVariableShapedTensorArray

from movielib.store.schema import SHOTS, TAGS, VIDEOS

# Columns every per-shot row carries between stages; error rows have shot_idx == -1.
SHOT_ROW = pa.schema(
    [
        *VIDEOS,
        ("n_shots", pa.int32()),
        *[f for f in SHOTS if f.name != "video_id"],
    ]
)
SCORE_COLUMNS = [TAGS.field(n) for n in ("labels", "scores", "clean", "labels_multi", "model")]
PEOPLE_COLUMNS = [TAGS.field(n) for n in ("face_count", "largest_face_frac", "person_present")]
EMBEDDING = pa.list_(pa.float32())
# the sidecar cues that start in a shot (features.cues): the sink writes each as a row of table cues
CUE_LIST = pa.list_(
    pa.struct([("cue_idx", pa.int32()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string())])
)
NO_AUDIO = np.zeros(0, np.float32)


def with_stage_time(table: pa.Table, stage: str, seconds: float) -> pa.Table:
    """Spread a stage's wall time over the rows it produced (column t_<stage>); the sink sums it."""
    return table.append_column(
        f"t_{stage}", pa.array([seconds / max(1, table.num_rows)] * table.num_rows, pa.float64())
    )


def timed(stage: str):
    """Decorate a stage's __call__(batch) -> table so its wall time lands in column t_<stage>."""

    def wrap(call):
        @functools.wraps(call)
        def timed_call(self, batch: pa.Table) -> pa.Table:
            t0 = time.perf_counter()
            out = call(self, batch)
            return with_stage_time(out, stage, time.perf_counter() - t0)

        return timed_call

    return wrap


def tensor_column(table: pa.Table, name: str) -> list[np.ndarray]:
    return [a for chunk in table.column(name).chunks for a in chunk.to_numpy()]


def with_tensor_column(table: pa.Table, name: str, arrays: list[np.ndarray]) -> pa.Table:
    return table.append_column(name, ArrowVariableShapedTensorArray.from_numpy(arrays))


def encode_frame(rgb: np.ndarray) -> bytes:
    """Detector frames travel PNG-encoded: lossless, and a fraction of the raw size."""
    import cv2

    ok, buf = cv2.imencode(".png", rgb[..., ::-1])
    return buf.tobytes()


def decode_frame(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
