"""The catalog under DEST: Delta Lake tables, committed a batch of whole videos at a time.

    DEST/videos            one row per video (ok or error): the completion mark
    DEST/shots, DEST/tags  one row per (video_id, shot_idx)
    DEST/features/<m>      one row per (video_id, shot_idx) and model, m in image / audio / text
    DEST/cues              one row per (video_id, cue_idx): a subtitle cue, its times and embedding (opt-in)
    DEST/_movielib/claims  which run works on which video (store/claims.py)
    DEST/_movielib/fingerprint.json, DEST/_movielib/runs/<run>.json   what produced DEST; run summaries

Exactly once (README, "Resuming"): a batch holds whole videos only. Its shot-level tables are
committed first and its videos rows last, each append an idempotent Delta application
transaction (app_id = run id, version = batch number). A video is done exactly when its videos
row exists, and its videos row is written only after every one of its shot rows. A run that dies
between two commits leaves shot rows of videos without a videos row; the next run that claims
such a video deletes them before writing its own (claims make sure that run is the only writer).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs

from movielib.io.uri import S3Options
from movielib.store.delta import DeltaTables, TableInfo
from movielib.store.schema import TABLES, VIDEO_TABLES, has_models, table_schema

if TYPE_CHECKING:
    import ray.data

META = "_movielib"


class CatalogStore:
    """Reads and commits the catalog's tables under DEST (local folder or s3:// prefix)."""

    def __init__(self, dest: str, s3: S3Options | None = None):
        self.dest = dest
        self.s3 = s3
        self.tables = DeltaTables(dest, s3)
        self.fs, self.root = self.tables.fs, self.tables.path  # pyarrow filesystem and path of DEST

    def meta_path(self, *parts: str) -> str:
        """A path under DEST/_movielib in the store's filesystem."""
        return "/".join([self.root, META, *parts])

    # -- reading -------------------------------------------------------------------------------
    def table_names(self) -> list[str]:
        """The catalog's tables (videos, shots, tags, features/<m>, and any later ones), not the bookkeeping."""
        return [n for n in self.tables.names() if not n.startswith(META)]

    def video_tables(self) -> list[str]:
        """Tables of a video's rows (shots, tags, keyframes, cues, features/<m>) that exist in DEST: what a
        video's debris can be in."""
        return [n for n in self.table_names() if n in VIDEO_TABLES or n.startswith("features/")]

    def video_ids(self) -> pa.Array:
        """Every video with a videos row (done: ok or error), as one Arrow column, not Python objects."""
        return self.tables.read("videos", columns=["video_id"], schema=table_schema("videos"))[
            "video_id"
        ].combine_chunks()

    def read_table(
        self,
        name: str,
        video_id: str | None = None,
        columns: list[str] | None = None,
        filter: pds.Expression | None = None,
        model: str | None = None,
        version: str | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """One table as Arrow: only `columns`, rows of one video, of one model (and version) when asked, the first
        `limit` of them when asked (the scan stops there).

        For large reads use `dataset` (Ray Data), which never gathers rows on the driver.
        """
        expr = _filter(name, video_id, filter, model, version)
        schema = table_schema(name) if name in TABLES or name.startswith("features/") else None
        return self.tables.read(name, columns=columns, filter=expr, schema=schema, limit=limit)

    def read_tables(self, *names: str, video_id: str | None = None) -> dict[str, pa.Table]:
        return {name: self.read_table(name, video_id=video_id) for name in names}

    def read_shots(self, *names: str, model: str | None = None, version: str | None = None) -> pa.Table:
        """shots joined with other shot-level tables (e.g. "tags", "features/image") on (video_id, shot_idx)."""
        keys = list(SHOT_KEYS)
        out = self.read_table("shots")
        for name in names:
            other = self.read_table(name, model=model, version=version)
            other = other.rename_columns([_joined_name(name, c, out.column_names) for c in other.column_names])
            # Arrow's hash join takes no list columns: join the keys with row numbers, then take rows
            pairs = (
                out.select(keys)
                .append_column("_l", pa.array(range(out.num_rows), pa.int64()))
                .join(
                    other.select(keys).append_column("_r", pa.array(range(other.num_rows), pa.int64())),
                    keys=keys,
                    join_type="inner",
                )
            )
            left, right = out.take(pairs["_l"]), other.take(pairs["_r"])
            for c in right.column_names:
                if c not in keys:
                    left = left.append_column(c, right[c])
            out = left
        return out.sort_by([(k, "ascending") for k in keys])

    def feature_model(self, table: str, model: str | None, field: str) -> str:
        """The model whose rows of a features table a reader takes: `model` when the table holds it, else the
        table's only one; ConfigError naming `field` (the config field that chose it) otherwise."""
        from movielib.errors import ConfigError

        models = sorted(set(self.read_table(table, columns=["model"])["model"].unique().to_pylist()))
        if model is None and len(models) > 1:
            raise ConfigError(f"{field}: {table} holds several models ({', '.join(models)}): name one")
        if model is not None and model not in models:
            raise ConfigError(f"{field}: {model!r} is not in {table} (has {', '.join(models)})")
        return model or models[0]

    def feature_version(self, table: str, model: str, version: str | None, field: str) -> str:
        """The model_version of `model`'s rows a reader takes: `version` when the table holds it, else the newest
        (the one the latest commit of `model`'s rows wrote: an embed run of new weights adds a version beside the
        old, and readers never mix them). ConfigError naming `field` when `version` is not there."""
        from movielib.errors import ConfigError

        models = self.read_table(table, columns=["model_version"], model=model)
        versions = sorted(set(models["model_version"].unique().to_pylist()))
        if version is not None:
            if version not in versions:
                raise ConfigError(f"{field}: {model} has no version {version!r} in {table} (has {', '.join(versions)})")
            return version
        if len(versions) <= 1:
            return versions[0] if versions else ""
        newest = self.tables.newest(table, "model_version", pds.field("model") == model)
        return sorted(newest)[-1]

    def dataset(
        self, name: str, columns: list[str] | None = None, model: str | None = None, version: str | None = None
    ) -> ray.data.Dataset:
        """One table as a Ray Dataset (`ray.data.read_delta`), filtered by model / version when asked."""
        import ray.data

        expr = _filter(name, None, None, model, version)
        wanted = columns
        if expr is not None and columns is not None:  # the filter reads model (and model_version) too
            wanted = list(
                dict.fromkeys([*columns, "model", *(["model_version"] if has_models(name) and version else [])])
            )
        ds = ray.data.read_delta(self.tables.uri(name), storage_options=self.tables.options, columns=wanted)
        if expr is None:
            return ds
        # a pyarrow expression, applied per block (Ray Data's own expressions have no starts_with for tags' model)
        return ds.map_batches(_Where(expr, columns), batch_format="pyarrow", batch_size=None)

    def dataset_of_shots(
        self, *names: str, model: str | None = None, version: str | None = None, num_partitions: int = 8
    ) -> ray.data.Dataset:
        """shots joined with other shot-level tables on (video_id, shot_idx), as a Ray Dataset."""
        ds = self.dataset("shots")
        for name in names:
            other = self.dataset(name, model=model, version=version)
            ours = ds.columns()
            clashes = {c: new for c in other.columns() if (new := _joined_name(name, c, ours)) != c}
            if clashes:
                other = other.rename_columns(clashes)
            ds = ds.join(other, join_type="inner", num_partitions=num_partitions, on=SHOT_KEYS)
        return ds

    # -- writing -------------------------------------------------------------------------------
    def commit(self, tables: dict[str, pa.Table], run_id: str, seq: int) -> None:
        """Commit one batch of whole videos: shot-level tables first, the videos rows (completion marks) last.

        Each append is the application transaction (run_id, seq): repeating a commit that landed
        (a retry after a lost response, or a resumed commit sequence) adds nothing.
        """
        for name in sorted(n for n in tables if n != "videos") + ["videos"]:
            table = tables[name]
            if table.num_rows:
                self.tables.append(
                    name,
                    table.cast(table_schema(name)),
                    app_id=run_id,
                    version=seq,
                    metadata={"movielib.run_id": run_id, "movielib.batch": str(seq)},
                )

    def remove_debris(self, video_ids: list[str]) -> int:
        """Delete shot-level rows of videos that have no videos row (left by a run that died mid-commit).

        Only called by the run that holds the claim on these videos, before it writes them.
        """
        if not video_ids:
            return 0
        done = self.video_ids()
        ids = pa.array(video_ids, pa.string())
        ids = ids.filter(pc.invert(pc.is_in(ids, value_set=done))).to_pylist()
        return sum(self.tables.delete(name, ids) for name in self.video_tables())

    # -- what produced DEST, and what each run did -----------------------------------------------
    def read_json(self, *parts: str) -> dict | None:
        path = self.meta_path(*parts)
        if self.fs.get_file_info(path).type == pafs.FileType.NotFound:
            return None
        with self.fs.open_input_stream(path) as f:
            return json.loads(f.read())

    def write_json(self, data: dict, *parts: str) -> str:
        """Whole-object write: S3 PUTs are atomic; local files are written aside and renamed."""
        path = self.meta_path(*parts)
        self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        tmp = path if isinstance(self.fs, pafs.S3FileSystem) else f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(json.dumps(data, indent=2, default=str).encode())
        if tmp != path:
            self.fs.move(tmp, path)
        return path

    def remove_json(self, *parts: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.delete_file(self.meta_path(*parts))

    def write_run_summary(self, run_id: str, summary: dict) -> str:
        return self.write_json(summary, "runs", f"{run_id}.json")

    # -- housekeeping ----------------------------------------------------------------------------
    def _every_table(self) -> list[str]:
        """The catalog's tables, then the bookkeeping ones (the claims table)."""
        return sorted(self.tables.names(), key=lambda n: (n.startswith(META), n))

    def info(self) -> list[TableInfo]:
        """Every Delta table under DEST, the claims table included."""
        return [self.tables.info(n) for n in self._every_table()]

    def compact(self) -> dict[str, dict]:
        """Small files into large ones, every table (Delta optimize); the rows stay the same."""
        return {n: self.tables.compact(n) for n in self._every_table()}

    def vacuum(self, retention_hours: int, dry_run: bool = False) -> dict[str, list[str]]:
        """Delete files older than the retention that no table version needs (compacted-away files, and
        data files of commits that never landed), and the to-do chunks of runs that died. Never run at
        start-up: a live run's files may be young."""
        out = {n: self.tables.vacuum(n, retention_hours, dry_run) for n in self._every_table()}
        out[f"{META}/runs"] = self._old_run_folders(retention_hours, dry_run)
        return out

    def _old_run_folders(self, retention_hours: int, dry_run: bool) -> list[str]:
        """A run removes its to-do chunks when it ends; a folder still there is a dead run's."""
        cutoff = time.time_ns() - retention_hours * 3600 * 10**9
        runs = self.meta_path("runs")
        infos = self.fs.get_file_info(pafs.FileSelector(runs, recursive=True, allow_not_found=True))
        folders: dict[str, list[pafs.FileInfo]] = {}
        for i in infos:
            rel = i.path[len(runs) + 1 :]
            if "/" in rel and i.type == pafs.FileType.File:
                folders.setdefault(rel.split("/", 1)[0], []).append(i)
        old = [f"{runs}/{run}" for run, files in folders.items() if all((f.mtime_ns or 0) < cutoff for f in files)]
        if not dry_run:
            for folder in old:
                self.fs.delete_dir(folder)
        return old


SHOT_KEYS = ("video_id", "shot_idx")


class _Where:
    """A block's rows that match a pyarrow expression (only `columns` of them, when given)."""

    def __init__(self, expr: pds.Expression, columns: list[str] | None = None):
        self.expr, self.columns = expr, columns

    def __call__(self, block: pa.Table) -> pa.Table:
        rows = block.filter(self.expr)
        return rows.select(self.columns) if self.columns is not None else rows


def _joined_name(table: str, column: str, taken: list[str]) -> str:
    """A joined table's column keeps its name unless the left side has it: then it is prefixed with the
    table's last part (tags.model -> tags_model, features/image.model -> image_model); keys stay."""
    if column in SHOT_KEYS or column not in taken:
        return column
    return f"{table.split('/')[-1]}_{column}"


def _filter(
    name: str, video_id: str | None, extra: pds.Expression | None, model: str | None, version: str | None
) -> pds.Expression | None:
    """Row filter: one video, and for tags / features one model (and weights version)."""
    parts = [] if extra is None else [extra]
    if video_id:
        parts.append(pds.field("video_id") == video_id)
    if has_models(name):
        if model:
            parts.append(pds.field("model") == model)
        if version:
            parts.append(pds.field("model_version") == version)
    elif name == "tags" and (model or version):
        parts.append(
            pds.field("model") == f"{model}/{version}"
            if model and version
            else pc.starts_with(pds.field("model"), f"{model}/")
            if model
            else pc.ends_with(pds.field("model"), f"/{version}")
        )
    expr = None
    for p in parts:
        expr = p if expr is None else expr & p
    return expr


def not_null(column: str):
    """A Ray Data filter expression: rows whose `column` holds a value (features of shots without audio /
    subtitles are null)."""
    from ray.data.expressions import col

    return col(column).is_not_null()


def video_in(ids, inside: bool = True):
    """A Ray Data filter expression: rows whose video_id is (`inside`) or is not one of `ids` (a pushed-down
    filter, no Python function per row)."""
    import pyarrow as pa
    from ray.data.expressions import col

    values = pa.array(sorted(ids), pa.string())
    return col("video_id").is_in(values) if inside else col("video_id").not_in(values)


def new_run_id() -> str:
    return f"{os.environ.get('MOVIELIB_RUN_PREFIX', 'run')}-{uuid.uuid4().hex[:12]}"
