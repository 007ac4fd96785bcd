"""Delta Lake tables under one prefix (local folder or s3://), through delta-rs (`deltalake`).

Everything movielib writes is a Delta table, so any engine reads it; this module is the one
place that knows how a movielib URI and S3Options become delta-rs storage options, and how
an append is made idempotent (a Delta application transaction per writer and batch).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from movielib.errors import StorageError
from movielib.io.uri import S3Options, filesystem_for, is_s3

_AWS_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def storage_options(uri: str, s3: S3Options | None) -> dict[str, str] | None:
    """delta-rs options for `uri`: S3 endpoint, region, credentials from the usual environment, and
    conditional puts (`etag`), so concurrent commits need no lock service on S3-compatible stores."""
    if not is_s3(uri):
        return None
    s3 = s3 or S3Options.from_env()
    opts = {"AWS_REGION": s3.region or "us-east-1", "conditional_put": "etag"}
    if s3.endpoint_url:
        endpoint = s3.endpoint_url if "://" in s3.endpoint_url else f"https://{s3.endpoint_url}"
        opts["AWS_ENDPOINT_URL"] = endpoint
        if urlparse(endpoint).scheme == "http":
            opts["AWS_ALLOW_HTTP"] = "true"
    opts.update({k: os.environ[k] for k in _AWS_ENV if os.environ.get(k)})
    if s3.access_key_id:  # the config's credentials win over the environment's
        opts.update(AWS_ACCESS_KEY_ID=s3.access_key_id, AWS_SECRET_ACCESS_KEY=s3.secret_access_key)
        opts.pop("AWS_SESSION_TOKEN", None)
        opts.pop("AWS_PROFILE", None)
    return opts


def client_options(s3: S3Options | None) -> dict[str, str]:
    """delta-rs's own retry and timeout settings (object_store keys other Delta readers do not all take).
    object_store retries reads and unconditional writes itself; a commit (a conditional put) is retried
    by DeltaTables.append, whose application transaction makes the retry safe."""
    s3 = s3 or S3Options.from_env()
    return {
        "max_retries": str(s3.max_attempts),
        "timeout": f"{s3.request_timeout_s:g}s",
        "connect_timeout": f"{s3.connect_timeout_s:g}s",
    }


@dataclass(frozen=True)
class TableInfo:
    name: str
    version: int
    rows: int
    files: int
    bytes: int


class DeltaTables:
    """The Delta tables under one root, by name (e.g. "videos", "features/image")."""

    def __init__(self, root: str, s3: S3Options | None = None):
        self.s3 = s3
        self.fs, self.path = filesystem_for(root, s3)
        self.root = f"s3://{self.path}" if is_s3(root) else self.path
        self.options = storage_options(self.root, s3)  # what any Delta reader takes (Ray Data, polars)
        self._rs = {**self.options, **client_options(s3)} if self.options else None  # delta-rs's own calls

    def uri(self, name: str) -> str:
        return f"{self.root}/{name}"

    def open(self, name: str, version: int | None = None) -> DeltaTable | None:
        """The table's latest snapshot (or `version`); None when it was never written."""
        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self._rs)
        except TableNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read Delta table {self.uri(name)}: {exc}") from exc

    def create(self, name: str, schema: pa.Schema) -> DeltaTable:
        """An empty table with `schema`, or the table as it is when a concurrent writer created it first."""
        try:
            DeltaTable.create(self.uri(name), schema, mode="ignore", storage_options=self._rs)
        except Exception:  # lost the race to write version 0: the winner's table is ours too
            pass
        table = self.open(name)
        if table is None:
            raise StorageError(f"cannot create Delta table {self.uri(name)}")
        return table

    def append(
        self,
        name: str,
        data: pa.Table,
        app_id: str | None = None,
        version: int | None = None,
        snapshot: DeltaTable | None = None,
        metadata: dict[str, str] | None = None,
        attempts: int = 5,
    ) -> bool:
        """Append `data` in one Delta commit; returns False when (app_id, version) was committed already.

        With an application transaction the append is idempotent: a retry after a lost response,
        or a second writer with the same (app_id, version), never adds the rows twice. With a
        `snapshot`, a concurrent commit by the same app_id makes this one fail (CommitFailedError),
        which is how the claims table serializes its writers.
        """
        props = CommitProperties(
            custom_metadata=metadata, app_transactions=[Transaction(app_id, version)] if app_id else None
        )
        for attempt in range(attempts):
            target = snapshot
            if app_id and snapshot is None:  # the snapshot read for the check is the one the write starts from
                target = self.open(name)
                if target is not None and (target.transaction_version(app_id) or -1) >= version:
                    return False
            try:
                write_deltalake(
                    target if target is not None else self.uri(name),
                    data,
                    mode="append",
                    storage_options=self._rs,
                    commit_properties=props,
                )
                return True
            except CommitFailedError:
                if snapshot is not None:
                    raise
                time.sleep(0.05 * (2**attempt))
            except OSError as exc:
                if attempt == attempts - 1:
                    raise StorageError(f"cannot commit to {self.uri(name)}: {exc}") from exc
                time.sleep(0.2 * (2**attempt))
        raise StorageError(f"cannot commit to {self.uri(name)}: {attempts} conflicting commits in a row")

    def newest(self, name: str, column: str, filter: pds.Expression | None = None) -> list:
        """The values of `column` (in rows matching `filter`) in the most recently written data file that holds
        any: what the latest commit of them added (delta-rs's add actions carry each file's write time)."""
        dt = self.open(name)
        if dt is None:
            return []
        actions = dt.get_add_actions(flatten=True)
        files = sorted(zip(actions["modification_time"].to_pylist(), actions["path"].to_pylist()), reverse=True)
        for _, path in files:
            part = pds.dataset(f"{self.path}/{name}/{path}", format="parquet", filesystem=self.fs)
            values = part.to_table(columns=[column], filter=filter)[column].unique().to_pylist()
            if values:
                return values
        return []

    def read(
        self,
        name: str,
        columns: list[str] | None = None,
        filter: pds.Expression | None = None,
        schema: pa.Schema | None = None,
        limit: int | None = None,
    ) -> pa.Table:
        """Rows of a table as Arrow (only `columns`, only rows matching `filter`, the first `limit` of them: the scan
        stops there); empty when never written."""
        dt = self.open(name)
        if dt is None:
            empty = schema.empty_table() if schema is not None else pa.table({})
            return empty.select(columns) if columns and schema is not None else empty
        if limit is not None:
            return dt.to_pyarrow_dataset().head(limit, columns=columns, filter=filter)
        return dt.to_pyarrow_dataset().to_table(columns=columns, filter=filter)

    def delete(
        self, name: str, ids: list[str], key: str = "video_id", match: dict[str, str] | None = None, attempts: int = 5
    ) -> int:
        """Delete the rows whose `key` is one of `ids` (and whose columns equal `match`) in one commit;
        returns how many went.

        A replace-where overwrite with no rows, not DeltaTable.delete: deltalake 1.6's delete rewrites
        string columns as string_view, after which every filtered pyarrow read of the table fails
        (delta-rs #4579); the overwrite writes the table's own types.
        """

        def sql(v: str) -> str:
            return "'" + v.replace("'", "''") + "'"

        predicate = f"{key} IN ({', '.join(sql(i) for i in ids)})" + "".join(
            f" AND {col} = {sql(v)}" for col, v in (match or {}).items()
        )
        expr = pds.field(key).isin(pa.array(ids, pa.string()))
        for col, v in (match or {}).items():
            expr = expr & (pds.field(col) == v)
        for attempt in range(attempts):
            dt = self.open(name)
            if dt is None or not ids:
                return 0
            dataset = dt.to_pyarrow_dataset()
            n = dataset.count_rows(filter=expr)
            if not n:
                return 0
            try:
                write_deltalake(
                    dt, dataset.schema.empty_table(), mode="overwrite", predicate=predicate, storage_options=self._rs
                )
                return n
            except CommitFailedError:  # a concurrent commit touched the same files: read again
                time.sleep(0.05 * (2**attempt))
        # nosec B608: an error message, not SQL (bandit reads "delete from" as a query)
        raise StorageError(f"cannot delete from {self.uri(name)}: {attempts} conflicting commits in a row")  # nosec B608

    def names(self) -> list[str]:
        """Every Delta table under the root (folders holding a _delta_log), sorted."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True, allow_not_found=True))
        logs = {i.path.rsplit("/_delta_log", 1)[0] for i in infos if i.path.endswith("/_delta_log")}
        return sorted(p[len(self.path) + 1 :] for p in logs)

    def info(self, name: str) -> TableInfo:
        dt = self.open(name)
        adds = pa.table(dt.get_add_actions(flatten=True))
        return TableInfo(
            name,
            dt.version(),
            int(pc.sum(adds["num_records"]).as_py() or 0),
            adds.num_rows,
            int(pc.sum(adds["size_bytes"]).as_py() or 0),
        )

    def compact(self, name: str, target_size: int | None = None) -> dict:
        """Rewrite small files into large ones (Delta optimize); readers see the same rows."""
        return self.open(name).optimize.compact(target_size=target_size)

    def vacuum(self, name: str, retention_hours: int, dry_run: bool = False) -> list[str]:
        """Delete files no version newer than `retention_hours` needs (Delta vacuum)."""
        return self.open(name).vacuum(
            retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False
        )
