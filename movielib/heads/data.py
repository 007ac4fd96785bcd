"""A head's training set from the catalog's tables: features joined to targets with Ray Data, split by video.

Two recipes:
  clean_tags   MovieCLIP §5.1: the tags table's clean shots (top-1 >= 0.4) with labels_multi (multi-label)
               or their top-1 label (single-label), over any features table, per shot
  a file       CSV / Parquet with `video_id` (+ `shot_idx`) and `label`; keyed by video only, the targets
               are movie-level and each video's shot features are averaged over its shots (the long-range
               pretraining paper's protocol)

The split is by video (a movie's shots are all on one side), from a seeded permutation of the
video ids, and written down with the results. The rows never gather on the driver: a first pass
over the joined rows collects what is small (label names, video ids), a second encodes each row's
features and target where Ray Data runs it, sorted into one order, and each split stays as blocks in
Ray's object store (`Split`) that a trial reads block by block through a seeded shuffle buffer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from movielib.errors import ConfigError
from movielib.heads.config import DataSection
from movielib.store import SHOT_KEYS, CatalogStore, not_null

if TYPE_CHECKING:
    import torch

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """One split's rows as numpy blocks {"x": (n, dim) float32, "y": targets} in row order: ObjectRefs into Ray's
    object store (what `build` makes; read one block at a time where the reader runs), or the blocks themselves
    (`from_arrays`, in-process data)."""

    blocks: list
    rows: int
    dim: int

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray) -> Split:
        return cls([{"x": x, "y": y}], len(x), int(x.shape[1]))

    def _block(self, i: int) -> dict:
        import ray

        b = self.blocks[i]
        return ray.get(b) if isinstance(b, ray.ObjectRef) else b

    def _read(self, order) -> Iterator[dict]:
        for i in order:
            block = self._block(int(i))
            if len(block["x"]):  # a filter can leave empty blocks, whose columns have no shape
                yield block

    def __iter__(self) -> Iterator[dict]:
        return self._read(range(len(self.blocks)))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The whole split in memory, where a reader needs it whole (the scikit-learn probe, on a worker)."""
        blocks = list(self)
        if not blocks:
            return np.zeros((0, self.dim), np.float32), np.zeros(0, np.float32)
        return np.concatenate([b["x"] for b in blocks]), np.concatenate([b["y"] for b in blocks])

    def targets(self) -> np.ndarray:
        """Every row's target, in row order (val / test metrics need them all; the features stay in blocks)."""
        blocks = [b["y"] for b in self]
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)

    def batches(self, batch_size: int, generator: torch.Generator, buffer_rows: int = 262_144):
        """(x, y) training batches of one pass: blocks in a seeded order into a buffer of at least `buffer_rows`
        rows, shuffled as a whole (one buffer, a full permutation, when the split fits). Ray Data's local shuffle
        buffer does the same, but a head makes hundreds of passes over a small set and its executor's start-up
        per pass would dominate them."""
        import torch  # here, not at the top: Ray Data's tasks unpickle this module's callables without torch

        n = len(self.blocks)
        xs, ys, held = [], [], 0
        for block in self._read(torch.randperm(n, generator=generator) if n > 1 else range(n)):
            xs.append(block["x"])
            ys.append(block["y"])
            held += len(block["x"])
            if held >= buffer_rows:
                x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
                perm = torch.randperm(len(x), generator=generator)
                stop = len(x) - len(x) % batch_size
                yield from ((x[idx], y[idx]) for idx in perm[:stop].split(batch_size))
                xs, ys, held = [x[perm[stop:]].numpy()], [y[perm[stop:]].numpy()], len(x) - stop
        if held:
            x, y = torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))
            yield from ((x[idx], y[idx]) for idx in torch.randperm(len(x), generator=generator).split(batch_size))


@dataclass
class HeadData:
    """Features and targets per split, what the labels mean, and where they came from."""

    task: str  # multilabel | single | regression
    level: str  # shot | movie
    label_names: list[str]  # multi-label / single-label classes, in target column order ([] for regression)
    features: str  # the features table
    feature_model: str  # its model (and version) the head expects at serving time
    splits: dict[str, Split]  # train / val / test; y: (n, labels) 0/1 float32 | (n,) int64 classes | (n,) float32
    split: dict[str, str]  # video_id -> split
    untrained: list[str] = dataclasses.field(default_factory=list)  # multi-label: labels no training row has

    @property
    def in_dim(self) -> int:
        return self.splits["train"].dim

    @classmethod
    def from_arrays(cls, task, level, label_names, features, feature_model, x: dict, y: dict, split) -> HeadData:
        """In-process data (tests, small scripts): arrays per split."""
        splits = {s: Split.from_arrays(x[s], y[s]) for s in SPLITS}
        return cls(task, level, label_names, features, feature_model, splits, split)

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


def joined_rows(store: CatalogStore, data: DataSection):
    """The features joined to their targets (Ray Data joins), as a Dataset; its level and feature model."""
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
    return ds, level, model


class _Survey:
    """Per batch of joined rows, what is small: its video ids, its label values (not numbers), how the task looks."""

    def __init__(self, clean_tags: bool, multi: bool):
        self.clean_tags, self.multi = clean_tags, multi

    def __call__(self, rows: pa.Table) -> pa.Table:
        if self.clean_tags:
            column = rows["labels_multi"] if self.multi else pc.list_element(rows["labels"], 0)
            kind = "multilabel" if self.multi else "single"
        else:
            column = rows["label"]
            kind = _kind(column)
        values = pc.list_flatten(column) if pa.types.is_list(column.type) else column
        if kind == "regression":
            labels = []
        elif kind == "multilabel" and not pa.types.is_list(column.type):
            labels = sorted({x for v in values.to_pylist() for x in _label_set(v)})
        else:
            labels = sorted({str(v) for v in pc.unique(values).to_pylist() if v is not None})
        return pa.table(
            {
                "videos": [pc.unique(rows["video_id"]).to_pylist()],
                "labels": [labels],
                "kind": [kind],
                "dim": [len(rows["embedding"][0]) if rows.num_rows else 0],
            }
        )


def _kind(label: pa.ChunkedArray) -> str:
    """The task a labels file's column implies (data.task: auto)."""
    if pa.types.is_list(label.type) or any(isinstance(v, str) and "|" in v for v in label.to_pylist()):
        return "multilabel"
    if pa.types.is_integer(label.type) or pa.types.is_floating(label.type):
        return "regression"
    return "single"


def _label_set(value) -> list[str]:
    return value if isinstance(value, list) else [x.strip() for x in str(value).split("|") if x.strip()]


class _Encode:
    """Per batch of joined rows: features as (n, in_dim) float32, targets encoded, each row's split."""

    def __init__(self, data: DataSection, task: str, names: list[str], split: dict[str, str], keys: tuple):
        self.data, self.task, self.split, self.keys = data, task, split, keys
        self.index = {n: i for i, n in enumerate(names)}

    def _values(self, rows: pa.Table) -> list:
        if self.data.labels == "clean_tags":
            if self.task == "multilabel":
                return rows["labels_multi"].to_pylist()
            return [r[0] for r in rows["labels"].to_pylist()]
        return rows["label"].to_pylist()

    def __call__(self, rows: pa.Table) -> dict[str, np.ndarray]:
        values = self._values(rows)
        if self.task == "multilabel":
            y = np.zeros((len(values), len(self.index)), np.float32)
            for row, v in enumerate(values):
                y[row, [self.index[label] for label in _label_set(v or [])]] = 1.0
        elif self.task == "single":
            y = np.array([self.index[str(v)] for v in values], np.int64)
        else:
            y = np.array([float(v) for v in values], np.float32)
        x = np.stack(rows["embedding"].to_numpy(zero_copy_only=False)).astype(np.float32)
        keys = {k: rows[k].to_numpy(zero_copy_only=False) for k in self.keys}
        side = np.array([self.split[v] for v in rows["video_id"].to_pylist()])
        return {**keys, "x": x, "y": y, "split": side}


def _task(data: DataSection, kinds: set[str]) -> str:
    if data.labels == "clean_tags" or data.task == "auto":
        for kind in ("multilabel", "single", "regression"):  # a batch of text labels makes the file single-label
            if kind in kinds:
                return kind
    return data.task


def split_videos(video_ids: list[str], val: float, test: float, seed: int) -> dict[str, str]:
    """Seeded split of the videos (not the shots) into train / val / test."""
    ids = sorted(set(video_ids))
    order = np.random.default_rng(seed).permutation(len(ids))
    n_test, n_val = int(round(test * len(ids))), int(round(val * len(ids)))
    out = {}
    for rank, i in enumerate(order):
        out[ids[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return out


class _Count:
    """Per batch of encoded rows: per split its rows and, per label, the rows that have it (classes: the rows of
    the class)."""

    def __init__(self, task: str, labels: int):
        self.task, self.labels = task, labels

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, per_label = [], []
        for s in SPLITS:
            y = batch["y"][batch["split"] == s]
            rows.append(len(y))
            if self.task == "single":
                per_label.append(np.bincount(y, minlength=self.labels))
            elif self.task == "multilabel":
                per_label.append(y.sum(axis=0).astype(np.int64) if len(y) else np.zeros(self.labels, np.int64))
            else:
                per_label.append(np.zeros(self.labels, np.int64))
        return {"split": np.array(SPLITS), "rows": np.array(rows), "per_label": np.stack(per_label)}


def _label_counts(encoded, task: str, labels: int) -> dict[str, tuple[int, np.ndarray]]:
    """Per split: its rows and each label's rows (summed where Ray Data runs; the driver adds a row a batch)."""
    out = {s: (0, np.zeros(labels, np.int64)) for s in SPLITS}
    counted = encoded.select_columns(["y", "split"]).map_batches(_Count(task, labels), batch_format="numpy")
    for row in counted.iter_rows():
        rows, per = out[row["split"]]
        out[row["split"]] = (rows + int(row["rows"]), per + np.asarray(row["per_label"], np.int64))
    return out


def check_splits(task: str, level: str, names: list[str], counts: dict[str, tuple[int, np.ndarray]]) -> list[str]:
    """Refuse, before any trial, splits a head cannot be trained and judged on: a split with no row (its metric
    would be undefined every epoch), a class no training row has (single-label: the head cannot learn it). The
    error names the label and its counts per split. Multi-label: the labels no training row has, returned (a
    catalog's rare tags; a head still learns the others)."""
    unit = "videos" if level == "movie" else "shots"
    sizes = ", ".join(f"{s} {counts[s][0]}" for s in SPLITS)
    for s in SPLITS:
        if counts[s][0] == 0:
            fix = "lower data.val_fraction / data.test_fraction" if s == "train" else f"raise data.{s}_fraction"
            raise ConfigError(f"data: the {s} split holds no {unit} ({unit}: {sizes}); {fix}, or label more videos")
    unlearnable = [j for j, n in enumerate(counts["train"][1]) if n == 0]
    if task == "multilabel":
        return [names[j] for j in unlearnable]
    if unlearnable:
        j = unlearnable[0]
        per = ", ".join(f"{s} {int(counts[s][1][j])}" for s in SPLITS)
        more = f", and {len(unlearnable) - 1} more labels" if len(unlearnable) > 1 else ""
        raise ConfigError(
            f"data: label {names[j]!r} has no {unit} in the train split ({unit} with it: {per}; in all: {sizes}"
            f"{more}): the head cannot learn it; label more videos with it, or change data.seed or "
            "data.val_fraction / data.test_fraction"
        )
    return []


def build(store: CatalogStore, data: DataSection) -> HeadData:
    """The head's data: joined rows surveyed (label names, videos), encoded and split by video where Ray Data runs
    them, one sorted order, each split's blocks left in the object store."""
    from ray.data.expressions import col

    ds, level, feature_model = joined_rows(store, data)
    ds = ds.materialize()  # joined once, in the object store: the survey and the encoding both read it
    survey = ds.map_batches(_Survey(data.labels == "clean_tags", data.multi), batch_format="pyarrow").take_all()
    videos = sorted({v for row in survey for v in row["videos"]})
    if not videos:
        raise ConfigError(
            f"data.labels: no row of {data.features} has a target from {data.labels!r}"
            + (" (no clean shots: is the catalog's CLIP untrained?)" if data.labels == "clean_tags" else "")
        )
    task = _task(data, {row["kind"] for row in survey})
    names = sorted({x for row in survey for x in row["labels"]}) if task != "regression" else []
    split = split_videos(videos, data.val_fraction, data.test_fraction, data.seed)
    if "train" not in split.values():
        raise ConfigError(
            f"data: no video is left for training ({len(split)} videos; lower data.val_fraction / data.test_fraction)"
        )
    keys = SHOT_KEYS if level == "shot" else ("video_id",)
    # one order whatever order the joins delivered: every trial, and a rebuild, see the same rows
    encoded = (
        ds.map_batches(_Encode(data, task, names, split, keys), batch_format="pyarrow", batch_size=4096)
        .sort(list(keys))
        .materialize()
    )
    untrained = check_splits(task, level, names, _label_counts(encoded, task, len(names)))
    dim = max(row["dim"] for row in survey)
    splits = {}
    for s in SPLITS:
        part = encoded.filter(expr=col("split") == s).select_columns(["x", "y"]).materialize()
        splits[s] = Split(part.to_numpy_refs(), part.count(), dim)
    return HeadData(task, level, names, data.features, feature_model, splits, split, untrained)
