"""Rows of a planted catalog: one-second shots at 25 fps of 64x64 videos, committed straight into the Delta
tables as one batch. The planted catalogs (heads: planted_heads.py; pretraining: tests/train/planted.py)
differ in what they plant, not in these."""

from __future__ import annotations

import pyarrow as pa

from movielib.store.schema import table_schema
from movielib.store.store import CatalogStore

FPS = 25


def shot_row(video_id: str, shot_idx: int, key_frame: int = 0, key_s: float = 0.0) -> dict:
    """Shot `shot_idx` spans second `shot_idx`; its one keyframe sits `key_frame` frames (`key_s` s) into it."""
    return {
        "video_id": video_id,
        "shot_idx": shot_idx,
        "start_frame": shot_idx * FPS,
        "end_frame": shot_idx * FPS + FPS,
        "start_s": float(shot_idx),
        "end_s": shot_idx + 1.0,
        "keyframes": [shot_idx * FPS + key_frame],
        "keyframe_s": [shot_idx + key_s],
    }


def video_row(video_id: str, shots: int) -> dict:
    return {
        "video_id": video_id,
        "uri": f"s3://planted/{video_id}.mp4",
        "duration_s": float(shots),
        "fps": float(FPS),
        "width": 64,
        "height": 64,
        "n_frames": shots * FPS,
        "status": "ok",
        "error": None,
    }


def commit(dest: str, tables: dict[str, list[dict]]) -> None:
    """Every table's rows in one commit, as a tagging run's batch would land."""
    CatalogStore(dest).commit(
        {n: pa.Table.from_pylist(rows, schema=table_schema(n)) for n, rows in tables.items()}, run_id="planted", seq=0
    )
