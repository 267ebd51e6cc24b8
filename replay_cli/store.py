"""The SQLite store behind `replaycli ingest`: migrations, batched writes, file lookups, run log.

Concurrency rule: WAL + BEGIN IMMEDIATE + busy_timeout, so a second writer waits instead of failing with
'database is locked' halfway through a transaction. Every write takes the
write lock up front with our own `BEGIN IMMEDIATE`; sqlite-utils calls made inside it become SAVEPOINTs.
Its `atomic()` alone issues a plain BEGIN, whose read-to-write upgrade fails with 'database is locked'
under a second writer, so it is never the outer transaction here. This is the only module importing sqlite_utils.

sqlite-utils creates the schema; rows go in with prepared `executemany` statements, because `insert_all`
re-reads the table schema and opens a SAVEPOINT per call, and this one writer's CPU is what the workers lack.
A pool worker's result brings its big child tables packed as a small database (rowpack.py): those are
copied with one `INSERT ... SELECT` per table, several times cheaper per row than binding them here.

One file's rows are written inside a SAVEPOINT of the batch transaction: if they cannot be written (a value
SQLite refuses, a malformed result), that file alone is rolled back and recorded as failed with the kind
`store_error`, and the rest of the batch commits. Only the database itself failing (disk full, locked,
read-only, corrupt) aborts the batch, as StoreError.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from sqlite_utils import Database

from replay_cli.errors import StoreError
from replay_cli.failures import failed_result, one_line
from replay_cli.migrations import (
    CHILD_TABLES,
    FILE_COLUMNS,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    REPLAY_COLUMNS,
    REPLAY_EXTRA_COLUMNS,
    REPLAY_ID_COLUMN,
    REPLAY_QUALITY_COLUMNS,
    RUN_COUNT_NAMES,
    RUN_POOL_COLUMNS,
    child_columns,
    child_insert_verb,
    child_params,
    create_views,
    stale_views,
)
from replay_cli.result import (
    DEPTHS,
    STATUS_FAILED,
    STATUS_FILTERED,
    STATUS_OK,
    STATUS_PARTIAL,
    Result,
    parser_version,
)
from replay_cli.rowpack import LAYOUT as PACKED_LAYOUT
from replay_cli.rowpack import PACKED_TABLES, copy_sql, empty_database, packed_bytes
from replay_cli.rowpack import SCHEMA as PACKED_SCHEMA

PAGE_SIZE = 16384  # bytes, for new databases: the writer spends about a tenth less CPU than at 4096
BUSY_TIMEOUT_MS = 5000  # how long a writer waits for another process's transaction before giving up
LOOKUP_CHUNK = 500  # paths per `IN (...)` query: well under SQLite's bound-variable limit
STATUS_DUPLICATE = "duplicate"  # files.status of a copy whose replay is already stored from another path
SUMMARY_TOP_MAPS = 10
SUMMARY_HEAVIEST = 10
SUMMARY_COST_RELEASES = 15
# Percentiles of parse time and peak memory over a group of files, with window functions: the
# nearest-rank value at p, computed in SQLite so a database of millions of files is not loaded.
_COST_PERCENTILES_SQL = """WITH measured AS (
  SELECT {group} AS grp, parse_seconds, peak_rss_bytes,
         row_number() OVER (PARTITION BY {group} ORDER BY parse_seconds) AS time_rank,
         row_number() OVER (PARTITION BY {group} ORDER BY peak_rss_bytes) AS memory_rank,
         count(*) OVER (PARTITION BY {group}) AS n
  FROM files f {join} WHERE f.parse_seconds IS NOT NULL AND f.peak_rss_bytes IS NOT NULL)
SELECT grp AS {label}, n AS files,
  max(CASE WHEN time_rank = max(1, CAST(ceil(n * 0.5) AS INTEGER)) THEN parse_seconds END) AS p50_seconds,
  max(CASE WHEN time_rank = max(1, CAST(ceil(n * 0.95) AS INTEGER)) THEN parse_seconds END) AS p95_seconds,
  round(max(CASE WHEN memory_rank = max(1, CAST(ceil(n * 0.5) AS INTEGER)) THEN peak_rss_bytes END) / 1048576.0, 1)
    AS p50_peak_mib,
  round(max(CASE WHEN memory_rank = max(1, CAST(ceil(n * 0.95) AS INTEGER)) THEN peak_rss_bytes END) / 1048576.0, 1)
    AS p95_peak_mib,
  round(max(peak_rss_bytes) / 1048576.0, 1) AS max_peak_mib
FROM measured GROUP BY grp ORDER BY files DESC, grp LIMIT ?"""
SUMMARY_LAST_RUNS = 5
FILE_STATUSES_WITH_REPLAY = (STATUS_OK, STATUS_PARTIAL)

_FILE_UPSERT = f"""INSERT INTO files ({", ".join(FILE_COLUMNS)})
VALUES ({", ".join("?" * len(FILE_COLUMNS))})
ON CONFLICT(path) DO UPDATE SET
  {", ".join(f"{c} = excluded.{c}" for c in FILE_COLUMNS if c not in ("path", "attempts", "first_run"))},
  attempts = coalesce(files.attempts, 0) + 1, first_run = coalesce(files.first_run, excluded.first_run)"""
_REPLAY_COLUMN_NAMES = (*REPLAY_COLUMNS, *REPLAY_EXTRA_COLUMNS, *REPLAY_QUALITY_COLUMNS)
# What one file's write can raise without the database being at fault: a value the driver cannot bind
# (OverflowError, an unsupported type, text that is not UTF-8), a constraint the result breaks, or a
# result missing a field. IntegrityError is a DatabaseError: it must be caught before the fatal ones.
_ONE_FILE_ERRORS = (
    sqlite3.IntegrityError, sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.DataError,
    OverflowError, ValueError, TypeError, KeyError, AttributeError, StoreError,
)
# A rewritten replay keeps its id (given), a new one gets the next (NULL): child rows and any
# reference an analyst kept stay valid.
_REPLAY_UPSERT = (
    f"INSERT OR REPLACE INTO replays (id, {', '.join(_REPLAY_COLUMN_NAMES)}) "
    f"VALUES (?, {', '.join('?' * len(_REPLAY_COLUMN_NAMES))})"
)


def _child_insert(table: str) -> str:
    names = [REPLAY_ID_COLUMN, *child_columns(table)]
    return f"{child_insert_verb(table)} INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


_CHILD_INSERTS = {table: _child_insert(table) for table in CHILD_TABLES}
_PACKED_COPIES = {table: copy_sql(table) for table in PACKED_TABLES}


@dataclass(frozen=True, slots=True)
class FileStat:
    """What the CLI saw of a file on disk before parsing it."""

    path: str
    size: int
    mtime_ns: int
    crc32: int | None = None  # a zip member's, from the archive's directory


@dataclass(frozen=True, slots=True)
class FileRecord:
    """The stored `files` row of one path, as the CLI needs it to decide whether to skip the file."""

    path: str
    size: int | None
    mtime_ns: int | None
    status: str
    depth: str | None
    sha256: str | None
    crc32: int | None = None
    filter_key: str | None = None  # the ingest filters a `filtered` row was decided under
    parser_version: str | None = None  # "replaycli/sc2reader" versions that parsed it
    degraded: bool | None = None  # its replay's flag; None when unknown or no replay


@dataclass(frozen=True, slots=True)
class PackRecord:
    """A pack read to the end by a finished run: unchanged, it is skipped without being opened."""

    path: str
    size: int
    mtime_ns: int
    members: int  # replay members, nested packs' included
    depth: str | None
    filter_key: str | None
    whole: bool = True  # read without damage: a bad_pack row an earlier run left under its path is stale


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """How many files of one batch were written with each status."""

    ok: int = 0
    partial: int = 0
    duplicate: int = 0
    failed: int = 0
    filtered: int = 0
    # (path, exception type, one-line reason) of each file whose rows could not be written; in `failed` too.
    store_errors: tuple[tuple[str, str, str], ...] = ()


R = TypeVar("R")  # the record type a lookup builds from each row


def dict_rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
    """Run a query and return its rows as dicts keyed by column name."""
    cursor = conn.execute(sql, params)
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _in_list(values: Sequence[str]) -> tuple[str, list[str | None]]:
    """Placeholders and parameters for `IN (...)`, padded with NULLs to a power of two.

    sqlite3 keeps up to 128 compiled statements per connection, and every list length is a
    statement of its own, large for long lists: padding leaves a handful of shapes, so a long
    `ingest --watch`, whose lookups come in every length, keeps flat memory. NULL matches nothing.
    """
    size = 1 << max(len(values) - 1, 0).bit_length()
    return ", ".join("?" * size), [*values, *([None] * (size - len(values)))]


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _pool_columns(pool: dict[str, Any] | None) -> list[Any]:
    """The RUN_POOL_COLUMNS values, in order, of a run's PoolNumbers.as_dict(); NULLs without one."""
    if pool is None:
        return [None] * len(RUN_POOL_COLUMNS)
    replaced = pool["workers_replaced"]
    flat = {**pool, **{f"replaced_{reason}": count for reason, count in replaced.items()}}
    return [flat.get(name) for name in RUN_POOL_COLUMNS]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _depth_rank(depth: str | None) -> int:
    return DEPTHS.index(depth) if depth in DEPTHS else -1


def _describe(exc: BaseException, busy_timeout_ms: int) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if "locked" in reason or "busy" in reason:
        reason += f" (another process kept it busy for more than {busy_timeout_ms / 1000:g} s)"
    elif "unable to open" in reason:
        reason += " (does the folder exist and is it writable?)"
    return reason


def open_store(path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> Store:
    """Open (creating if needed) the store at `path` and bring its schema up to date.

    `":memory:"` gives a private in-memory store. Raises StoreError when the file cannot be opened,
    is not a SQLite database, or cannot be written (read-only, disk full, locked beyond the timeout).
    """
    where = str(path)
    try:
        # isolation_level=None: the driver never opens transactions behind our back; we BEGIN IMMEDIATE ourselves.
        conn = sqlite3.connect(where, timeout=busy_timeout_ms / 1000, isolation_level=None)
        store = Store(conn, where, busy_timeout_ms)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {where}: {_describe(exc, busy_timeout_ms)}") from exc
    try:
        with store._translate("open"):
            store._configure()
            store._migrate()
        store.ensure_shape()
    except BaseException:
        store.close()
        raise
    return store


class Store:
    """A replay database: call its methods from one thread of the one process that writes it."""

    def __init__(self, conn: sqlite3.Connection, path: str, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        """Wrap an open connection; use open_store() rather than calling this directly."""
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn = conn
        self.db = Database(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; an open transaction is rolled back by SQLite."""
        self._conn.close()

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn sqlite3 errors into a one-line StoreError naming the database."""
        try:
            yield
        except sqlite3.Error as exc:
            reason = _describe(exc, self.busy_timeout_ms)
            raise StoreError(f"cannot {action} database {self.path}: {reason}") from exc

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """Run the block in one BEGIN IMMEDIATE transaction: commit at the end, roll back on any exception."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                with suppress(sqlite3.Error):  # keep the original error, not a failed rollback's
                    self._conn.execute("ROLLBACK")
            raise

    def _configure(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        # Takes effect only on a new, empty database (before WAL): a database is mostly long runs of
        # child rows appended in key order, which 16 KiB pages take with fewer splits than 4 KiB ones.
        self._conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        self._conn.execute("PRAGMA journal_mode = WAL")  # in-memory databases answer 'memory': fine
        # NORMAL in WAL mode is safe against kill -9 and only risks the last commits on power loss.
        self._conn.execute("PRAGMA synchronous = NORMAL")
        # The schema declares each child row's link to its replay, for readers and tools like Datasette,
        # but this connection does not enforce it: this class is the only writer, and it writes a
        # replay before its children and deletes children before their replay inside one SAVEPOINT.
        # Enforcing it costs a parent lookup per child row, a fifth of the writer's CPU at `stats`.
        self._conn.execute("PRAGMA foreign_keys = OFF")
        # Where a pool worker's packed child rows are deserialized, one result at a time (rowpack.py).
        # ATTACH cannot run inside a transaction, so it happens here, once per connection.
        self._conn.execute(f"ATTACH DATABASE ':memory:' AS {PACKED_SCHEMA}")

    def _applied_migrations(self) -> set[str]:
        if not self.db[MIGRATIONS_TABLE].exists():
            return set()
        return {name for (name,) in self._conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE}")}

    def _migrate(self) -> None:
        """Apply each unrecorded migration in its own write transaction, re-checking under the lock.

        Two processes opening a new file at once both see it unmigrated; the second to get the lock finds
        the migration recorded and skips it.
        """
        for migration in MIGRATIONS:
            if migration.__name__ in self._applied_migrations():
                continue
            with self._immediate():
                if migration.__name__ in self._applied_migrations():
                    continue
                self.db[MIGRATIONS_TABLE].create(  # type: ignore[union-attr]
                    {"name": str, "applied_at": str}, pk="name", if_not_exists=True
                )
                migration(self.db)
                self._conn.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                    (migration.__name__, _now()),
                )
            # Move each migration's pages into the database file and empty the WAL, so a new database
            # never holds every migration's copy of the schema (a rebuilt table) in its WAL at once.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def ensure_shape(self) -> None:
        """Create or update the views; writes nothing when they are current. Raises StoreError."""
        with self._translate("update views in"):
            if not stale_views(self.db):
                return
            with self._immediate():
                create_views(self.db, stale_views(self.db))

    def save_batch(
        self, items: Sequence[tuple[FileStat, Result]], run_id: int, *, replace: bool = False,
        filter_key: str | None = None,
    ) -> BatchCounts:
        """Write a batch of parse results in one transaction and return how many got each status.

        Each replay, its child rows and its `files` row land together or not at all. `replace` (--force)
        rewrites a stored replay even when this result is not deeper, once per run. `filter_key` (the
        run's IngestFilters.key()) goes on every files row. Raises StoreError, after rolling the whole
        batch back, when any write fails or a result is malformed.
        """
        counts = dict.fromkeys(("ok", "partial", "duplicate", "failed", "filtered"), 0)
        store_errors: list[tuple[str, str, str]] = []
        stored_at = _now()
        with self._translate("write to"), self._immediate():
            for stat, result in items:
                status, problem = self._save_contained(stat, result, run_id, (replace, filter_key), stored_at)
                counts[status] += 1
                if problem is not None:
                    store_errors.append((stat.path, *problem))
        return BatchCounts(**counts, store_errors=tuple(store_errors))

    def _save_contained(
        self, stat: FileStat, result: Result, run_id: int, how: tuple[bool, str | None], stored_at: str
    ) -> tuple[str, tuple[str, str] | None]:
        """Write one result inside a SAVEPOINT; on a per-file error roll it back and record a store_error.

        Returns the files.status written and, for a store_error, the exception's type and one-line reason.
        """
        problem: tuple[str, str] | None = None
        self._conn.execute("SAVEPOINT one_file")
        try:
            status = self._save_one(stat, result, run_id, how, stored_at)
        except _ONE_FILE_ERRORS as exc:
            self._conn.execute("ROLLBACK TO one_file")
            problem = type(exc).__name__, one_line(f"{type(exc).__name__}: {exc}")
            self._record_store_error(stat, result, run_id, exc, problem[1])
            status = STATUS_FAILED
        self._conn.execute("RELEASE one_file")
        return status, problem

    def _record_store_error(
        self, stat: FileStat, result: Result, run_id: int, exc: BaseException, problem: str
    ) -> None:
        """Write the files row of a result whose own rows could not be written."""
        failure = failed_result(stat.path, "store_error", type(exc).__name__, problem, "store",
                                depth=_text_or_none(result.get("depth_requested")) or DEPTHS[0],
                                sha256=_text_or_none(result.get("sha256")))
        try:
            self._upsert_file(stat, failure, run_id, STATUS_FAILED, None)
        except _ONE_FILE_ERRORS:
            # Even the path cannot be bound (a file name that is not valid UTF-8): record it escaped.
            printable = stat.path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            self._upsert_file(FileStat(printable, stat.size, stat.mtime_ns), failure, run_id, STATUS_FAILED, None)

    def _save_one(
        self, stat: FileStat, result: Result, run_id: int, how: tuple[bool, str | None], stored_at: str
    ) -> str:
        """Write one result and return the files.status it got; `how` is (replace, filter_key)."""
        (replace, filter_key), status, sha = how, result["status"], result["sha256"]
        if status in (STATUS_FAILED, STATUS_FILTERED):
            self._upsert_file(stat, result, run_id, status, result["depth_reached"], filter_key)
            return status
        replay = result["replay"]
        if status not in FILE_STATUSES_WITH_REPLAY or replay is None or sha is None:
            raise StoreError(
                f"cannot store {stat.path}: result has status {status!r} but no replay or sha256"
            )
        depth = result["depth_reached"] or replay["depth"]
        stored = self._conn.execute(
            "SELECT id, depth, stored_run, first_path FROM replays WHERE sha256 = ?", (sha,)
        ).fetchone()
        if stored is None:
            self._write_replay(stat.path, result, run_id, stored_at, None)
        else:
            replay_id, stored_depth, stored_run, first_path = stored
            deeper = _depth_rank(depth) > _depth_rank(stored_depth)
            if deeper or (replace and stored_run != run_id):
                self._write_replay(first_path, result, run_id, stored_at, replay_id)
            elif self._owns(stat.path, sha):
                depth = stored_depth  # re-parse of the path that stored it: keep the deeper stored replay
            else:
                status, depth = STATUS_DUPLICATE, stored_depth
        self._upsert_file(stat, result, run_id, status, depth, filter_key)
        return status

    def _owns(self, path: str, sha: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM files WHERE path = ? AND sha256 = ? AND status IN (?, ?)",
            (path, sha, *FILE_STATUSES_WITH_REPLAY),
        ).fetchone()
        return row is not None

    def _write_replay(
        self, first_path: str, result: Result, run_id: int, stored_at: str, replay_id: int | None
    ) -> None:
        """Insert (replay_id None) or rewrite one replay row and all its child rows (see the module notes)."""
        replay, sha = result["replay"], result["sha256"]
        assert replay is not None
        if replay_id is not None:  # children first: the replays foreign keys would refuse the parent's delete
            for table in CHILD_TABLES:
                self._conn.execute(f"DELETE FROM {table} WHERE replay_id = ?", (replay_id,))
        values = [replay.get(column) for column in REPLAY_COLUMNS]
        values[0] = sha  # the result's hash is the identity, whatever the row says
        quality = result.get("quality")
        degraded = quality["degraded"] if quality else None
        quality_json = json.dumps(quality, sort_keys=True, ensure_ascii=False) if quality else None
        cursor = self._conn.execute(
            _REPLAY_UPSERT, (replay_id, *values, stored_at, first_path, run_id, degraded, quality_json))
        key = cursor.lastrowid
        assert key is not None
        packed = packed_bytes(result)
        if packed is not None:
            self._copy_packed(packed, key)
        for table in CHILD_TABLES:
            rows: list[dict[str, Any]] = result[table]  # type: ignore[literal-required]
            if rows:
                self._conn.executemany(_CHILD_INSERTS[table], child_params(table, rows, key))

    def _copy_packed(self, data: bytes, replay_id: int) -> None:
        """Copy a worker's packed child tables (rowpack.py) under replay_id, one INSERT ... SELECT each.

        Bytes that are not a packed database of the expected shape fail this file alone (StoreError);
        an error while copying is judged like any other write.
        """
        try:
            self._conn.deserialize(data, name=PACKED_SCHEMA)
            found = tuple(self._conn.execute(
                f"SELECT name, rootpage, sql FROM {PACKED_SCHEMA}.sqlite_master ORDER BY rootpage"))
            if found != PACKED_LAYOUT:
                raise StoreError(f"packed rows are not laid out as rowpack.LAYOUT: {[row[:2] for row in found]}")
        except (sqlite3.DatabaseError, StoreError) as exc:
            # Leave a readable database in the schema: the rollback to this file's SAVEPOINT and
            # every later statement of the batch would otherwise fail on the bad bytes too.
            self._conn.deserialize(empty_database(), name=PACKED_SCHEMA)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"packed rows unreadable: {exc}") from exc
        for table in PACKED_TABLES:
            self._conn.execute(_PACKED_COPIES[table], (replay_id,))

    def _upsert_file(
        self, stat: FileStat, result: Result, run_id: int, status: str, depth: str | None,
        filter_key: str | None = None,
    ) -> None:
        error = result["error"]
        parser = result.get("parser") or {}
        values = {
            "path": stat.path,
            "size": stat.size,
            "mtime_ns": stat.mtime_ns,
            "sha256": result["sha256"],
            "status": status,
            "error_kind": error["kind"] if error else None,
            "error_type": error["type"] if error else None,
            "error_message": error["message"] if error else None,
            "error_stage": error["stage"] if error else None,
            "error_release": error.get("release") if error else None,
            "depth": depth,
            "parse_seconds": result.get("parse_seconds"),
            "cpu_seconds": result.get("cpu_seconds"),
            "peak_rss_bytes": result.get("peak_rss_bytes"),
            "peak_rss_scope": result.get("peak_rss_scope"),
            "parser_version": parser_version(parser),
            "attempts": 1,
            "first_run": run_id,
            "last_run": run_id,
            "crc32": stat.crc32,
            "filter_key": filter_key,
        }
        self._conn.execute(_FILE_UPSERT, [values[column] for column in FILE_COLUMNS])

    def lookup_files(self, paths: Sequence[str]) -> dict[str, FileRecord]:
        """Return the stored `files` record of each known path, querying LOOKUP_CHUNK paths at a time.

        Raises StoreError.
        """
        return self._lookup(
            "SELECT f.path, f.size, f.mtime_ns, f.status, f.depth, f.sha256, f.crc32, f.filter_key, "
            "f.parser_version, r.degraded FROM files f LEFT JOIN replays r ON r.sha256 = f.sha256 WHERE f.path IN",
            paths, FileRecord,
        )

    def lookup_packs(self, paths: Sequence[str]) -> dict[str, PackRecord]:
        """Return the stored record of each pack path a finished run read to the end. Raises StoreError."""
        return self._lookup("SELECT path, size, mtime_ns, members, depth, filter_key FROM packs WHERE path IN",
                            paths, PackRecord)

    def _lookup(self, select: str, paths: Sequence[str], record: Callable[..., R]) -> dict[str, R]:
        """Run `select ... IN (paths)` LOOKUP_CHUNK paths at a time; one record per row, keyed by its first column."""
        records: dict[str, R] = {}
        with self._translate("read"):
            for start in range(0, len(paths), LOOKUP_CHUNK):
                marks, params = _in_list(list(paths[start : start + LOOKUP_CHUNK]))
                rows = self._conn.execute(f"{select} ({marks})", params)
                records.update((row[0], record(*row)) for row in rows)
        return records

    def save_packs(self, records: Sequence[PackRecord], run_id: int) -> None:
        """Record packs whose every member is committed, in one transaction. Raises StoreError."""
        if not records:
            return
        with self._translate("write to"), self._immediate():
            self._conn.executemany(
                "INSERT OR REPLACE INTO packs (path, size, mtime_ns, members, depth, filter_key, last_run) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.path, r.size, r.mtime_ns, r.members, r.depth, r.filter_key, run_id) for r in records],
            )
            self._conn.executemany("DELETE FROM files WHERE path = ? AND error_kind = 'bad_pack'",
                                   [(r.path,) for r in records if r.whole])

    def begin_run(self, command: str, options: dict[str, Any], workers: int, depth: str) -> int:
        """Record the start of a run and return its id. Raises StoreError."""
        with self._translate("write to"), self._immediate():
            cursor = self._conn.execute(
                "INSERT INTO runs (started_at, command, options, workers, depth) VALUES (?, ?, ?, ?, ?)",
                (_now(), command, json.dumps(options, sort_keys=True, default=str), workers, depth),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_run(
        self, run_id: int, counts: dict[str, int], wall_seconds: float, exit_code: int, interrupted: bool,
        pool: dict[str, Any] | None = None,
    ) -> None:
        """Record how a run ended: counts (JSON and one column each), speed, exit code. Raises StoreError.

        pool is PoolNumbers.as_dict() of the run's worker pool; without it those columns stay NULL.
        """
        per_second = counts.get("parsed", 0) / wall_seconds if wall_seconds > 0 else None
        assignments = ", ".join(f"{name} = ?" for name in (*RUN_COUNT_NAMES, *RUN_POOL_COLUMNS))
        with self._translate("write to"), self._immediate():
            cursor = self._conn.execute(
                f"UPDATE runs SET finished_at = ?, counts = ?, {assignments}, wall_seconds = ?, "
                "files_per_second = ?, exit_code = ?, interrupted = ? WHERE id = ?",
                (
                    _now(),
                    json.dumps(counts, sort_keys=True),
                    *(counts.get(name, 0) for name in RUN_COUNT_NAMES),
                    *_pool_columns(pool),
                    wall_seconds,
                    per_second,
                    exit_code,
                    interrupted,
                    run_id,
                ),
            )
            if cursor.rowcount != 1:
                raise StoreError(f"cannot finish run {run_id} in {self.path}: no such run")

    def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return dict_rows(self._conn, sql, params)

    def _scalar(self, sql: str) -> Any:
        return self._conn.execute(sql).fetchone()[0]

    def failures(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return failed files, most recent run first, with build and release when the replay is known.

        Raises StoreError.
        """
        with self._translate("read"):
            return self._dicts(
                "SELECT path, error_kind, error_type, error_message, error_stage, build, release, last_run "
                "FROM v_failures ORDER BY last_run DESC, path LIMIT ?",
                (-1 if limit is None else limit,),  # SQLite: a negative LIMIT means none
            )

    def degraded(self, limit: int | None = None) -> dict[str, Any]:
        """Return degraded replays grouped by reason and release, and the replays themselves.

        A replay with several reasons counts once under each. Raises StoreError.
        """
        with self._translate("read"):
            groups = self._dicts(
                "SELECT reason.value AS reason, r.release, count(*) AS replays, min(r.first_path) AS example "
                "FROM replays r, json_each(r.quality, '$.reasons') AS reason WHERE r.degraded = 1 "
                "GROUP BY reason.value, r.release ORDER BY replays DESC, reason, r.release"
            )
            rows = self._dicts(
                "SELECT r.first_path AS path, r.sha256, r.release, r.depth, json_extract(r.quality, '$.reasons') "
                "AS reasons, f.status, f.parser_version FROM replays r LEFT JOIN files f ON f.path = r.first_path "
                "WHERE r.degraded = 1 ORDER BY r.release DESC, r.first_path LIMIT ?",
                (-1 if limit is None else limit,),
            )
        for row in rows:
            row["reasons"] = json.loads(row["reasons"] or "[]")
        return {"groups": groups, "replays": rows}

    def summary(self) -> dict[str, Any]:
        """Return counts for `replaycli stats`: replays by release, game type and map, players, files, runs.

        Raises StoreError.
        """
        with self._translate("read"):
            return {
                "replays": self._scalar("SELECT count(*) FROM replays"),
                "by_release": self._dicts(
                    "SELECT release, base_build, count(*) AS replays FROM replays "
                    "GROUP BY release, base_build ORDER BY base_build DESC, release DESC"
                ),
                "by_game_type": self._dicts(
                    "SELECT game_type, count(*) AS replays FROM replays GROUP BY game_type "
                    "ORDER BY replays DESC, game_type"
                ),
                "top_maps": self._dicts(
                    "SELECT map_name, count(*) AS replays FROM replays GROUP BY map_name "
                    "ORDER BY replays DESC, map_name LIMIT ?",
                    (SUMMARY_TOP_MAPS,),
                ),
                "players": self._scalar("SELECT count(*) FROM players WHERE is_observer = 0"),
                "distinct_toons": self._scalar(
                    "SELECT count(*) FROM (SELECT DISTINCT region_id, subregion, toon_id FROM players "
                    "WHERE toon_id IS NOT NULL AND is_observer = 0)"
                ),
                "files_by_status": dict(
                    self._conn.execute("SELECT status, count(*) FROM files GROUP BY status ORDER BY status")
                ),
                "last_runs": self._dicts("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (SUMMARY_LAST_RUNS,)),
                **self._quality_and_costs(),
            }

    def _quality_and_costs(self) -> dict[str, Any]:
        """Degraded replays by reason; parse time and peak memory by depth and release; the heaviest files."""
        return {
            "degraded_by_reason": self._dicts(
                "SELECT reason.value AS reason, count(*) AS replays FROM replays, "
                "json_each(replays.quality, '$.reasons') AS reason WHERE replays.degraded = 1 "
                "GROUP BY reason.value ORDER BY replays DESC, reason"
            ),
            "cost_by_depth": self._dicts(
                _COST_PERCENTILES_SQL.format(group="f.depth", label="depth", join=""), (len(DEPTHS) + 1,)
            ),
            "cost_by_release": self._dicts(
                _COST_PERCENTILES_SQL.format(group="coalesce(r.release, f.error_release)", label="release",
                                             join="LEFT JOIN replays r ON r.sha256 = f.sha256"),
                (SUMMARY_COST_RELEASES,),
            ),
            "heaviest_files": self._dicts(
                "SELECT path, status, depth, parse_seconds, round(peak_rss_bytes / 1048576.0, 1) AS peak_mib, "
                "peak_rss_scope FROM files WHERE peak_rss_bytes IS NOT NULL "
                "ORDER BY peak_rss_bytes DESC, path LIMIT ?", (SUMMARY_HEAVIEST,)
            ),
        }
