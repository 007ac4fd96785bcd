"""A head's training set from the catalog's tables: features joined to targets with Ray Data, split by video.

Two recipes:
  clean_tags   MovieCLIP §5.1: the tags table's clean shots (top-1 >= 0.4) with labels_multi (multi-label)
               or their top-1 label (single-label), over any features table, per shot
  a file       CSV / Parquet with `video_id` (+ `shot_idx`) and `label`; keyed by video only, the targets
               are movie-level and each video's shot features are averaged over its shots (the long-range
               pretraining paper's protocol)

The split is by video (a movie's shots are all on one side), from a seeded permutation of the
video ids, and written down with the results. The joined rows end as numpy arrays that the driver
puts in the object store once; every trial reads them from there (heads train on features, which
are small next to the videos they came from).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movielib.errors import ConfigError
from movielib.heads.config import DataSection
from movielib.store import SHOT_KEYS, CatalogStore, not_null

SPLITS = ("train", "val", "test")


@dataclass
class HeadData:
    """Features and targets per split, what the labels mean, and where they came from."""

    task: str  # multilabel | single | regression
    level: str  # shot | movie
    label_names: list[str]  # multi-label / single-label classes, in target column order ([] for regression)
    features: str  # the features table
    feature_model: str  # its model (and version) the head expects at serving time
    x: dict[str, np.ndarray]  # split -> (n, in_dim) float32
    y: dict[str, np.ndarray]  # split -> (n, labels) 0/1 float32 | (n,) int64 classes | (n,) float32
    split: dict[str, str]  # video_id -> split

    @property
    def in_dim(self) -> int:
        return int(self.x["train"].shape[1])

    @property
    def out_dim(self) -> int:
        return len(self.label_names) if self.task != "regression" else 1

    def split_table(self) -> pa.Table:
        ids = sorted(self.split)
        return pa.table({"video_id": ids, "split": [self.split[v] for v in ids]})


def _read_labels(path: str) -> pa.Table:
    from movielib.io.uri import read_tabular

    table = read_tabular(
        path, ["video_id", "label"], "data.labels: the labels file (video_id, label, and shot_idx for shot labels)"
    )
    return table.select([c for c in ("video_id", "shot_idx", "label") if c in table.column_names])


def _check_ids(store: CatalogStore, labels: pa.Table, path: str) -> None:
    videos = store.read_table("videos", columns=["video_id", "status"])
    ok = videos.filter(pc.equal(videos["status"], "ok"))["video_id"]
    ids = pc.unique(labels["video_id"].cast(pa.string()))
    unknown = ids.filter(pc.invert(pc.is_in(ids, value_set=ok))).to_pylist()
    if unknown:
        raise ConfigError(
            f"data.labels: {len(unknown)} of the {len(ids)} video ids in {path!r} are not tagged videos "
            f"of the catalog (e.g. {', '.join(map(str, unknown[:5]))})"
        )


def _features(store: CatalogStore, data: DataSection):
    names = store.table_names()
    if data.features not in names:
        raise ConfigError(
            f"data.features: the catalog {data.catalog!r} has no {data.features} table (has "
            f"{', '.join(n for n in names if n.startswith('features/')) or 'no features tables'})"
        )
    model = store.feature_model(data.features, data.model, "data.model")
    version = store.feature_version(data.features, model, data.version, "data.version")  # never a mix of versions
    columns = [*SHOT_KEYS, "model", "model_version", "embedding"]
    ds = store.dataset(data.features, columns=columns, model=model, version=version or None)
    return ds.filter(expr=not_null("embedding")), f"{model}/{version}" if version else model


def _mean_per_video(group: pa.Table) -> pa.Table:
    emb = np.stack(group["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    return pa.table(
        {
            "video_id": [group["video_id"][0].as_py()],
            "model_version": [group["model_version"][0].as_py()],
            "embedding": pa.array([emb.mean(axis=0)], pa.list_(pa.float32())),
        }
    )


def joined_rows(store: CatalogStore, data: DataSection) -> tuple[pa.Table, str, str]:
    """The features joined to their targets (Ray Data joins), as one Arrow table; its level and feature model."""
    import ray.data

    feats, model = _features(store, data)
    if data.labels == "clean_tags":
        if "tags" not in store.table_names():
            raise ConfigError(f"data.labels: clean_tags needs the tags table, and {data.catalog!r} has none")
        tags = store.dataset("tags", columns=[*SHOT_KEYS, "clean", "labels", "labels_multi"])
        from ray.data.expressions import col

        tags = tags.filter(expr=col("clean") == True)  # noqa: E712 (an expression, not a comparison)
        ds, level = feats.join(tags, join_type="inner", num_partitions=4, on=SHOT_KEYS), "shot"
    else:
        labels = _read_labels(data.labels)
        _check_ids(store, labels, data.labels)
        labels = labels.set_column(0, "video_id", labels["video_id"].cast(pa.string()))
        if "shot_idx" in labels.column_names:
            labels = labels.set_column(1, "shot_idx", labels["shot_idx"].cast(pa.int32()))
            ds, level = (
                feats.join(ray.data.from_arrow(labels), join_type="inner", num_partitions=4, on=SHOT_KEYS),
                "shot",
            )
        else:
            per_video = feats.groupby("video_id").map_groups(_mean_per_video, batch_format="pyarrow")
            ds, level = (
                per_video.join(ray.data.from_arrow(labels), join_type="inner", num_partitions=4, on=("video_id",)),
                "movie",
            )
    blocks = [ray.get(ref) for ref in ds.to_arrow_refs()]
    rows = pa.concat_tables([b for b in blocks if b.num_rows] or [blocks[0]]) if blocks else None
    if rows is None or rows.num_rows == 0:
        raise ConfigError(
            f"data.labels: no row of {data.features} has a target from {data.labels!r}"
            + (" (no clean shots: is the catalog's CLIP untrained?)" if data.labels == "clean_tags" else "")
        )
    # one order whatever order the joins delivered: every trial, and a rebuild, see the same rows
    rows = rows.sort_by([(k, "ascending") for k in (SHOT_KEYS if level == "shot" else ("video_id",))])
    return rows, level, model


def _targets(rows: pa.Table, data: DataSection) -> tuple[str, list[str], list]:
    """Task, label names and per-row targets (label lists, class names or numbers)."""
    if data.labels == "clean_tags":
        if data.multi:
            return (
                "multilabel",
                sorted({x for r in rows["labels_multi"].to_pylist() for x in r or []}),
                rows["labels_multi"].to_pylist(),
            )
        top1 = [r[0] for r in rows["labels"].to_pylist()]
        return "single", sorted(set(top1)), top1
    values = rows["label"].to_pylist()
    task = data.task
    if task == "auto":
        if pa.types.is_list(rows["label"].type) or any(isinstance(v, str) and "|" in v for v in values):
            task = "multilabel"
        elif pa.types.is_integer(rows["label"].type) or pa.types.is_floating(rows["label"].type):
            task = "regression"
        else:
            task = "single"
    if task == "multilabel":
        sets = [v if isinstance(v, list) else [x.strip() for x in str(v).split("|") if x.strip()] for v in values]
        return task, sorted({x for s in sets for x in s}), sets
    if task == "single":
        return task, sorted({str(v) for v in values}), [str(v) for v in values]
    return task, [], [float(v) for v in values]


def split_videos(video_ids: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """Seeded split of the videos (not the shots) into train / val / test."""
    ids = sorted(set(video_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test, n_val = int(round(test * len(ids))), int(round(val * len(ids)))
    out = {}
    for rank, i in enumerate(order):
        out[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


def build(store: CatalogStore, data: DataSection) -> HeadData:
    """The head's data: joined rows -> targets encoded -> split by video."""
    rows, level, feature_model = joined_rows(store, data)
    task, names, targets = _targets(rows, data)
    x = np.stack(rows["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
    if task == "multilabel":
        index = {n: i for i, n in enumerate(names)}
        y = np.zeros((len(targets), len(names)), np.float32)
        for row, labels in enumerate(targets):
            y[row, [index[label] for label in labels]] = 1.0
    elif task == "single":
        index = {n: i for i, n in enumerate(names)}
        y = np.array([index[t] for t in targets], np.int64)
    else:
        y = np.array(targets, np.float32)
    vids = rows["video_id"].to_pylist()
    split = split_videos(vids, data.val_fraction, data.test_fraction, data.seed)
    side = np.array([split[v] for v in vids])
    if not (side == "train").any():
        raise ConfigError(
            f"data: no video is left for training ({len(split)} videos; lower data.val_fraction / data.test_fraction)"
        )
    return HeadData(
        task,
        level,
        names,
        data.features,
        feature_model,
        {s: x[side == s] for s in SPLITS},
        {s: y[side == s] for s in SPLITS},
        split,
    )
