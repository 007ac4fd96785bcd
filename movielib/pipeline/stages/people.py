"""DetectPeople: face count, largest face fraction and person presence per shot (MovieCLIP §4.3's closeups)."""

from __future__ import annotations

import pyarrow as pa

from movielib.models.faces import PersonFaceDetector
from movielib.pipeline.stages.columns import PEOPLE_COLUMNS, decode_frame, timed


class DetectPeople:
    """Per shot, over its sampled frames: most faces in one frame, largest face's area fraction,
    whether any frame shows a person. Consumes the `people_frames` column."""

    def __init__(self, detector: PersonFaceDetector):
        self.detector = detector

    @timed("people")
    def __call__(self, batch: pa.Table) -> pa.Table:
        counts, fracs, persons = [], [], []
        for frames in batch.column("people_frames").to_pylist():
            found = [self.detector.detect(decode_frame(f)) for f in frames or []]
            counts.append(max((len(p.faces) for p in found), default=None))
            fracs.append(max((p.largest_face_frac for p in found), default=None))
            persons.append(any(p.person for p in found) if found else None)
        out = batch.drop_columns(["people_frames"])
        for field, values in zip(PEOPLE_COLUMNS, (counts, fracs, persons)):
            out = out.append_column(field, pa.array(values, field.type))
        return out
