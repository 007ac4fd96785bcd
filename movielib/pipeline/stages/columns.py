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


class StageClock:
    """A stage's wall and CPU seconds since it (re)started, spread over the rows it produced (columns
    t_<stage> and c_<stage>); the sink sums them. CPU is the whole process's (a Ray task or actor runs
    one stage at a time): the stage's own threads, the decoder's included, count; its waits do not."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stamp(self, table: pa.Table, stage: str) -> pa.Table:
        n = max(1, table.num_rows)
        spent = {"t": time.perf_counter() - self.wall, "c": time.process_time() - self.cpu}
        for kind, seconds in spent.items():
            table = table.append_column(f"{kind}_{stage}", pa.array([seconds / n] * table.num_rows, pa.float64()))
        return table


def timed(stage: str):
    """Decorate a stage's __call__(batch) -> table so its wall and CPU time land in its rows (StageClock)."""

    def wrap(call):
        @functools.wraps(call)
        def timed_call(self, batch: pa.Table) -> pa.Table:
            clock = StageClock()
            return clock.stamp(call(self, batch), stage)

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
