"""Claims: which run works on which video, so runs sharing a DEST never write a key twice.

A run claims a chunk of videos before any work on them, in the Delta table
DEST/_movielib/claims (video_id, run_id, claimed_at, expires_at). Every claim commit carries the
same Delta application transaction id with the next version number, and is made against the
snapshot the claimant read: if another claim landed in between, delta-rs refuses the commit
("concurrent transaction") and the claimant reads again. Claims are therefore serialized, and
the rule "a video whose live claim belongs to another run is not mine" is decided on a snapshot
nobody else changed before the decision landed.

A claim expires after `ttl_s`; a run renews its claims while it works. A video whose earlier
claim expired without its videos row being committed was left by a run that died: the new
claimant gets it back as `stale`, and deletes whatever shot rows the dead run had committed
before writing its own (DESIGN: exactly one row per key however a run dies).
"""

from __future__ import annotations

import collections
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
from deltalake.exceptions import CommitFailedError

from movielib.errors import StorageError
from movielib.store.delta import DeltaTables
from movielib.store.schema import VIDEOS

CLAIMS_TABLE = "_movielib/claims"
CLAIMS_APP = "movielib-claims"
TS = pa.timestamp("us", tz="UTC")
CLAIMS = pa.schema([("video_id", pa.string()), ("run_id", pa.string()), ("claimed_at", TS), ("expires_at", TS)])


@dataclass
class ClaimResult:
    won: list[str]  # this run holds these now (it may write them until `expires_at`)
    expires_at: datetime
    done: int = 0  # already complete in the videos table
    held: dict[str, int] = field(default_factory=dict)  # other live run -> how many of the asked videos it holds
    stale: list[str] = field(default_factory=list)  # won videos a dead run claimed before: may have its debris


def claim(
    tables: DeltaTables,
    run_id: str,
    ids: list[str],
    ttl_s: float,
    attempts: int = 50,
    dead: Callable[[str], bool] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ClaimResult:
    """Claim `ids` for `run_id` (renewing its own claims); skips complete videos and live claims of others.
    `dead(run)` says a run is known to be gone before its claims expire (its process on this machine ended);
    `clock` is the time claims are made and judged at (tests drive expiry with one of their own)."""
    wanted = pa.array(sorted(set(ids)), pa.string())
    for attempt in range(attempts):
        snapshot = tables.open(CLAIMS_TABLE) or tables.create(CLAIMS_TABLE, CLAIMS)
        now = clock()
        prior = snapshot.to_pyarrow_dataset().to_table(
            columns=["video_id", "run_id", "expires_at"], filter=pds.field("video_id").isin(wanted)
        )
        done = tables.read("videos", columns=["video_id"], filter=pds.field("video_id").isin(wanted), schema=VIDEOS)[
            "video_id"
        ].combine_chunks()
        others = prior.filter(pc.not_equal(prior["run_id"], run_id))
        live = others.filter(pc.greater(others["expires_at"], pa.scalar(now, TS)))
        gone = [r for r in pc.unique(live["run_id"]).to_pylist() if dead and dead(r)]
        if gone:
            live = live.filter(pc.invert(pc.is_in(live["run_id"], value_set=pa.array(gone, pa.string()))))
        blocked = pa.concat_arrays([done, live["video_id"].combine_chunks()])
        won = wanted.filter(pc.invert(pc.is_in(wanted, value_set=blocked)))
        expires = now + timedelta(seconds=ttl_s)
        claimed_before = pc.unique(others["video_id"])
        result = ClaimResult(
            won=won.to_pylist(),
            expires_at=expires,
            done=len(pc.unique(done)),
            held=dict(collections.Counter(live["run_id"].to_pylist())),
            stale=claimed_before.filter(pc.is_in(claimed_before, value_set=won)).to_pylist(),
        )
        if not len(won):
            return result
        rows = pa.table(
            {
                "video_id": won,
                "run_id": pa.array([run_id] * len(won)),
                "claimed_at": pa.array([now] * len(won), TS),
                "expires_at": pa.array([expires] * len(won), TS),
            },
            schema=CLAIMS,
        )
        version = (snapshot.transaction_version(CLAIMS_APP) or 0) + 1
        try:
            tables.append(
                CLAIMS_TABLE,
                rows,
                app_id=CLAIMS_APP,
                version=version,
                snapshot=snapshot,
                metadata={"movielib.run_id": run_id},
            )
            return result
        except CommitFailedError:
            time.sleep(random.uniform(0.01, 0.05) * min(attempt + 1, 10))  # another claim landed first: read again
    raise StorageError(f"could not claim videos in {tables.uri(CLAIMS_TABLE)}: {attempts} conflicting claims in a row")


def release(tables: DeltaTables, run_id: str, ids: list[str]) -> None:
    """Drop this run's claims on `ids` (videos it gives back undone), so another run may take them now."""
    if ids:
        tables.delete(CLAIMS_TABLE, ids, match={"run_id": run_id})


def this_process() -> dict:
    """What identifies the running job process: a later run on the same host can tell whether it is gone."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _start_time(os.getpid())}


def process_gone(record: dict) -> bool:
    """True when `record` (this_process() of some run) names a process on this host that no longer runs;
    False when it runs, is elsewhere, or cannot be told (then only the claim's expiry frees its videos)."""
    if record.get("host") != socket.gethostname() or not record.get("started"):
        return False
    started = _start_time(int(record["pid"]))
    return started is None or started != record["started"]  # gone, or the pid now belongs to another process


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux); None when no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def dead_runs(store) -> Callable[[str], bool]:
    """`dead` for claim(): a run whose liveness record (DEST/_movielib/live/<run>.json) names a gone process.
    A run that ended normally removed its record; one without a record is left to its claims' expiry."""
    seen: dict[str, bool] = {}

    def dead(run_id: str) -> bool:
        if run_id not in seen:
            record = store.read_json("live", f"{run_id}.json")
            seen[run_id] = record is not None and process_gone(record)
        return seen[run_id]

    return dead
