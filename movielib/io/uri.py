"""URIs to pyarrow filesystems: local paths and s3:// (AWS or any S3-compatible endpoint).

Every stage opens objects through `filesystem_for`, so one S3Options value (endpoint,
region, credentials from the usual AWS environment) reaches the driver and the Ray
workers alike: it is a small frozen dataclass that pickles into tasks.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.fs as pafs

from movielib.errors import StorageError

SIDECAR_EXTENSIONS = (".srt", ".vtt")  # subtitles next to videos: read by the text stage, never "ignored"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv")


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: endpoint override for S3-compatible stores, region, credentials, retries.

    Credentials given in the config travel here (never in repr, logs or errors); without them
    pyarrow's default AWS chain reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_PROFILE /
    instance roles on each worker. Every request is retried `max_attempts` times with exponential
    backoff (AWS's standard strategy: throttling, 5xx, resets and timeouts).
    """

    endpoint_url: str | None = None
    region: str | None = None
    connect_timeout_s: float = 5.0
    request_timeout_s: float = 60.0
    max_attempts: int = 10
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, endpoint_url: str | None = None, region: str | None = None, **kwargs) -> S3Options:
        """Explicit values win; otherwise AWS_ENDPOINT_URL(_S3) and AWS_REGION / AWS_DEFAULT_REGION."""
        endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        reg = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        return cls(endpoint_url=endpoint or None, region=reg, **kwargs)

    @classmethod
    def from_config(cls, cfg) -> S3Options:
        """From a job's `s3` config section (movielib.config.S3Config)."""

        def secret(v):
            return v.get_secret_value() if v is not None else None

        return cls.from_env(
            cfg.endpoint_url,
            cfg.region,
            connect_timeout_s=cfg.connect_timeout_s,
            request_timeout_s=cfg.request_timeout_s,
            max_attempts=cfg.max_attempts,
            access_key_id=secret(cfg.access_key_id),
            secret_access_key=secret(cfg.secret_access_key),
        )

    def filesystem(self) -> pafs.S3FileSystem:
        kwargs: dict = dict(
            region=self.region or "us-east-1",
            connect_timeout=self.connect_timeout_s,
            request_timeout=self.request_timeout_s,
            retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
        )
        if self.access_key_id:
            kwargs.update(access_key=self.access_key_id, secret_key=self.secret_access_key)
        if self.endpoint_url:
            parsed = urlparse(self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}")
            kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
        return pafs.S3FileSystem(**kwargs)


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def filesystem_for(uri: str, s3: S3Options | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for an s3:// URI or a local path (file:// accepted)."""
    if is_s3(uri):
        path = uri[len("s3://") :].rstrip("/")
        if not path:
            raise StorageError(f"{uri!r}: an s3:// URI needs a bucket name")
        return (s3 or S3Options.from_env()).filesystem(), path
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" in uri:
        raise StorageError(f"{uri!r}: unsupported URI scheme (use s3:// or a local path)")
    return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())


def read_tabular(path: str, columns: list[str], what: str, s3: S3Options | None = None):
    """A CSV or Parquet file (local or s3://) that users hand in: ConfigError, naming `what`, when it cannot be
    read or lacks one of `columns`."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from movielib.errors import ConfigError

    try:
        fs, where = filesystem_for(path, s3)
        with fs.open_input_file(where) as f:
            table = pq.read_table(f) if path.endswith(".parquet") else pcsv.read_csv(f)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"{what} {path!r} cannot be read: {exc}") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ConfigError(
            f"{what} {path!r} needs columns {', '.join(columns)}; missing {', '.join(missing)} "
            f"(has {', '.join(table.column_names)})"
        )
    return table


def download(fs: pafs.FileSystem, path: str, target: str | os.PathLike) -> None:
    """Stream one object to a local file, 8 MiB at a time."""
    with fs.open_input_stream(path) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, length=8 << 20)


def to_uri(fs: pafs.FileSystem, path: str) -> str:
    """Inverse of filesystem_for: pyarrow paths carry no scheme, so put s3:// back."""
    return f"s3://{path}" if isinstance(fs, pafs.S3FileSystem) else path


@dataclass(frozen=True)
class VideoRef:
    """One catalog entry: where it is and the facts that make its id stable."""

    uri: str
    size: int  # -1 when the object does not exist
    mtime_ns: int

    @property
    def video_id(self) -> str:
        """Stable id: a changed object (new size or mtime) is a new video (DESIGN data model)."""
        key = f"{self.uri}|{self.size}|{self.mtime_ns}".encode()
        return hashlib.sha1(key, usedforsecurity=False).hexdigest()[:20]  # an id, not a signature


@dataclass
class SourceListing:
    videos: list[VideoRef]
    ignored: list[str]  # objects under a prefix that are neither videos nor subtitle sidecars


def _ref(fs: pafs.FileSystem, info: pafs.FileInfo) -> VideoRef:
    exists = info.type == pafs.FileType.File
    mtime = (info.mtime_ns or 0) if exists else 0
    return VideoRef(uri=to_uri(fs, info.path), size=info.size if exists else -1, mtime_ns=mtime)


def list_source(
    source: str, s3: S3Options | None = None, extensions: tuple[str, ...] = VIDEO_EXTENSIONS
) -> SourceListing:
    """The whole listing at once (see `iter_source`)."""
    parts = list(iter_source(source, s3, extensions))
    return SourceListing(videos=[v for p in parts for v in p.videos], ignored=[i for p in parts for i in p.ignored])


def iter_source(
    source: str, s3: S3Options | None = None, extensions: tuple[str, ...] = VIDEO_EXTENSIONS, batch_size: int = 20_000
) -> Iterator[SourceListing]:
    """List a catalog: a folder / s3 prefix (videos by extension), one video, or a manifest file of URIs.

    A manifest lists one URI per line ('#' at a line's start or after a space starts a comment, so
    keys may hold '#'; relative paths are relative to the manifest). Every listed URI becomes a
    VideoRef, also when it is missing or not a video, so the job records an error row for it
    instead of dropping it silently. A manifest is read and
    probed `batch_size` URIs at a time, so a million-line manifest never sits in memory as objects.
    """
    fs, path = filesystem_for(source, s3)
    info = _file_info(fs, path, source)
    if info.type == pafs.FileType.Directory:
        try:
            infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        except OSError as exc:
            raise StorageError(f"cannot list {source!r}: {exc}") from exc
        files = sorted((i for i in infos if i.type == pafs.FileType.File), key=lambda i: i.path)
        videos = [_ref(fs, i) for i in files if i.path.lower().endswith(extensions)]
        ignored = [to_uri(fs, i.path) for i in files if not i.path.lower().endswith((*extensions, *SIDECAR_EXTENSIONS))]
        yield SourceListing(videos=videos, ignored=ignored)
    elif info.type == pafs.FileType.NotFound:
        raise StorageError(f"SOURCE {source!r} does not exist")
    elif path.lower().endswith(extensions):
        yield SourceListing(videos=[_ref(fs, info)], ignored=[])
    else:
        for uris in _manifest_uris(fs, path, batch_size):
            yield SourceListing(videos=_probe(uris, s3), ignored=[])


_COMMENT = re.compile(r"(^|\s)#.*$")


def _manifest_uris(fs: pafs.FileSystem, path: str, batch_size: int) -> Iterator[list[str]]:
    base = path.rsplit("/", 1)[0]
    batch: list[str] = []
    with fs.open_input_stream(path) as raw:
        for line in io.TextIOWrapper(raw, encoding="utf-8", errors="replace"):
            line = _COMMENT.sub("", line).strip()  # '#' inside a key (s3://b/take#2.mp4) is part of it
            if not line:
                continue
            if not is_s3(line) and "://" not in line and not line.startswith("/"):
                line = to_uri(fs, f"{base}/{line}")
            batch.append(line)
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


PROBE_BATCH, PROBE_THREADS = 500, 32


def _probe(uris: list[str], s3: S3Options | None) -> list[VideoRef]:
    """Size and mtime of every URI. Local paths: one stat each (microseconds). S3: one HEAD each,
    batches of them in parallel threads (pyarrow releases the GIL): one at a time, a million URIs
    through a 20 ms link would take hours."""
    from concurrent.futures import ThreadPoolExecutor

    local = pafs.LocalFileSystem()
    on_s3 = [n for n, u in enumerate(uris) if is_s3(u)]
    refs: list[VideoRef | None] = [None] * len(uris)
    if len(on_s3) < len(uris):
        here = [n for n, u in enumerate(uris) if not is_s3(u)]
        paths = [os.path.abspath(os.path.expanduser(uris[n].removeprefix("file://"))) for n in here]
        for n, info in zip(here, local.get_file_info(paths)):
            refs[n] = _ref(local, info)
    if on_s3:
        fs = (s3 or S3Options.from_env()).filesystem()
        batches = [on_s3[i : i + PROBE_BATCH] for i in range(0, len(on_s3), PROBE_BATCH)]
        with ThreadPoolExecutor(PROBE_THREADS) as pool:
            for batch, infos in zip(
                batches, pool.map(lambda b: fs.get_file_info([uris[n][len("s3://") :] for n in b]), batches)
            ):
                for n, info in zip(batch, infos):
                    refs[n] = _ref(fs, info)
    return refs  # type: ignore[return-value]


def _file_info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as exc:
        raise StorageError(f"cannot reach {uri!r}: {exc}") from exc


def check_endpoint(s3: S3Options) -> None:
    """Fail at once, naming it, when an S3-compatible endpoint takes no connections: S3 requests to it
    would each be retried with backoff for a minute and more before saying so."""
    if not s3.endpoint_url:
        return
    url = urlparse(s3.endpoint_url if "://" in s3.endpoint_url else f"https://{s3.endpoint_url}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=s3.connect_timeout_s).close()
    except OSError as exc:
        raise StorageError(
            f"S3 endpoint {s3.endpoint_url} takes no connections ({exc.strerror or exc}): "
            f"check s3.endpoint_url / AWS_ENDPOINT_URL"
        ) from None


def check_destination(dest: str, s3: S3Options | None = None) -> None:
    """Fail before any work when DEST cannot take output: missing bucket, unreachable endpoint."""
    fs, path = filesystem_for(dest, s3)
    if isinstance(fs, pafs.S3FileSystem):
        bucket = path.split("/", 1)[0]
        info = _file_info(fs, bucket, f"s3://{bucket}")
        if info.type == pafs.FileType.NotFound:
            endpoint = (s3 or S3Options.from_env()).endpoint_url or "AWS"
            raise StorageError(f"DEST bucket {bucket!r} does not exist (endpoint: {endpoint})")
        return
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.File:
        raise StorageError(f"DEST {dest!r} is a file; give a folder or prefix")
    try:
        fs.create_dir(path, recursive=True)
    except OSError as exc:
        raise StorageError(f"DEST {dest!r} cannot be created: {exc}") from exc
