"""`replaycli ingest` as a library: discovery -> skip unchanged -> worker pool -> batched SQLite writes.

The main process is the only SQLite writer. Results are buffered and flushed every
FLUSH_EVERY_RESULTS results or FLUSH_EVERY_S seconds, each flush one BEGIN IMMEDIATE transaction
(store.py), so a kill -9 loses at most the unflushed results, which a re-run parses again.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Protocol

from replay_cli.archive import archive_file
from replay_cli.defaults import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT_S
from replay_cli.failures import not_regular_result, unreadable_result
from replay_cli.parse import parse_file
from replay_cli.result import DEFAULT_DEPTH, DEPTHS, STATUS_FAILED, Result
from replay_cli.runner import PoolUnrecoverable, run_parses
from replay_cli.store import LOOKUP_CHUNK, BatchCounts, FileRecord, FileStat, Store

log = logging.getLogger("replay_cli.ingest")

FLUSH_EVERY_RESULTS = 100
FLUSH_EVERY_S = 1.0
# Arcade games can carry 17,000 build-order rows each: a row budget keeps the buffer, and so
# the main process's peak memory, flat whatever the replays hold (benchmarks/ingest.py).
FLUSH_EVERY_ROWS = 10_000
MAX_FAILURES_LISTED = 1000  # in the --json summary; the database keeps all of them
EXIT_OK, EXIT_SOME_FAILED, EXIT_FATAL = 0, 1, 3
EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
STATUSES_DONE = ("ok", "duplicate")  # stored and complete at their depth
STATUSES_RETRIED = ("failed", "partial")  # re-parsed only with --retry-failed


@dataclass(frozen=True)
class IngestOptions:
    depth: str = DEFAULT_DEPTH
    workers: int = 1
    timeout: float = DEFAULT_TIMEOUT_S
    max_memory: int | None = DEFAULT_MAX_MEMORY
    max_bytes: int = DEFAULT_MAX_BYTES
    force: bool = False
    retry_failed: bool = False
    archive_dir: str | None = None  # copy each stored replay to DIR/<2 hex>/<sha256>.SC2Replay


class ProgressSink(Protocol):
    """What the ingest loop tells the display (render.IngestProgress implements it)."""

    def discovered(self, total: int | None) -> None: ...
    def skipped(self, count: int) -> None: ...
    def finished(self, result: Result) -> None: ...
    def stored(self, counts: BatchCounts) -> None: ...
    def refresh(self) -> None: ...


class NullProgress:
    """A sink that shows nothing (quiet runs, library callers)."""

    def discovered(self, total: int | None) -> None:
        pass

    def skipped(self, count: int) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass

    def stored(self, counts: BatchCounts) -> None:
        pass

    def refresh(self) -> None:
        pass


@dataclass
class Tally:
    """What one ingest run did; its exit_code is the CLI's."""

    run_id: int
    db_path: str
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    failure_groups: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (kind, type, build)
    wall_seconds: float = 0.0
    interrupted_by: int | None = None  # the signal number

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return EXIT_BY_SIGNAL.get(signal.Signals(self.interrupted_by), 128 + self.interrupted_by)
        return EXIT_SOME_FAILED if self.counts["failed"] else EXIT_OK

    @property
    def files_per_second(self) -> float:
        handled = self.counts["parsed"] + self.counts["skipped"]
        return round(handled / self.wall_seconds, 1) if self.wall_seconds else 0.0

    def record(self, result: Result) -> None:
        """Count a parsed result; the stored statuses are counted by add_stored."""
        self.counts["parsed"] += 1
        error = result["error"]
        if result["status"] == STATUS_FAILED and error is not None:
            self.failure_groups[(error["kind"], error["type"], error.get("release") or "unknown")] += 1
            if len(self.failures) < MAX_FAILURES_LISTED:
                self.failures.append({"path": result["source"], **error})

    def add_stored(self, stored: BatchCounts) -> None:
        for key in ("ok", "partial", "duplicate", "failed"):
            self.counts[key] += getattr(stored, key)

    def as_json(self) -> dict[str, Any]:
        """Return the --json envelope; its keys are API (pinned by a test)."""
        status = "interrupted" if self.interrupted_by is not None else (
            "partial" if self.counts["failed"] else "success")
        return {
            "replaycli_result_version": 1,
            "command": "ingest",
            "status": status,
            "exit_code": self.exit_code,
            "run_id": self.run_id,
            "db": self.db_path,
            "counts": {key: self.counts[key] for key in COUNT_KEYS},
            "failures": self.failures,
            "failures_listed": len(self.failures),
            "wall_seconds": round(self.wall_seconds, 3),
            "files_per_second": self.files_per_second,
        }


COUNT_KEYS = ("discovered", "skipped", "parsed", "ok", "partial", "duplicate", "failed")


class StopSignals:
    """Turn the first SIGINT/SIGTERM into a flag; a second one exits at once.

    The handler only sets a flag (reliability.md §4): the loop sees it within one tick, stops the
    pool once and commits what is finished. Raising into cleanup instead produced tracebacks.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in EXIT_BY_SIGNAL:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            # Second signal: the database is consistent at every commit boundary, so leave now.
            os._exit(EXIT_BY_SIGNAL.get(signal.Signals(signum), 128 + signum))
        self.signum = signum

    def __call__(self) -> bool:
        return self.signum is not None


# Where parsing happens: paths in, one Result per path out (None = an idle tick), in any order.
# The local process pool and a Dask cluster (cluster.py) are the two implementations; the
# ingest loop, the store and the progress display never know which one runs.
ParseBackend = Callable[[Iterator[str], Callable[[], bool]], Iterator["Result | None"]]


def local_backend(options: IngestOptions, parse_fn: Callable[[str, str, int], Result] = parse_file) -> ParseBackend:
    """Return the backend that parses on this machine's pebble process pool."""

    def run(paths: Iterator[str], should_stop: Callable[[], bool]) -> Iterator[Result | None]:
        return run_parses(paths, depth=options.depth, workers=options.workers, timeout=options.timeout,
                          max_memory=options.max_memory, max_bytes=options.max_bytes, parse_fn=parse_fn,
                          should_stop=should_stop)

    return run


def _file_stat(path: str) -> tuple[FileStat, Result | None]:
    """Stat a candidate; non-regular and vanished files fail here, without a worker."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return FileStat(path, 0, 0), unreadable_result(path, exc)
    return FileStat(path, info.st_size, info.st_mtime_ns), not_regular_result(path, info)


def _unchanged_and_done(record: FileRecord | None, file_stat: FileStat, options: IngestOptions) -> bool:
    """Decide whether a path can be skipped without reading it."""
    if record is None or options.force:
        return False
    if (record.size, record.mtime_ns) != (file_stat.size, file_stat.mtime_ns):
        return False
    if record.status in STATUSES_RETRIED:
        return not options.retry_failed
    stored_depth = DEPTHS.index(record.depth) if record.depth in DEPTHS else -1
    return stored_depth >= DEPTHS.index(options.depth)


def _archive(batch: list[tuple[FileStat, Result]], archive_dir: str) -> None:
    """Copy each parsed replay into the archive before its rows commit.

    Archiving first means a crash can leave an archived replay whose rows were never committed
    (the re-run parses it again and finds it archived), never a stored replay missing from the
    archive that an unchanged re-run would skip forever.
    """
    for file_stat, result in batch:
        if result["status"] == STATUS_FAILED or not result["sha256"]:
            continue
        try:
            archive_file(archive_dir, result["sha256"], file_stat.path)
        except (OSError, ValueError) as exc:
            log.warning("not archived: %s: %s", file_stat.path, exc)


def _chunks(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def ingest_paths(
    store: Store,
    paths: Iterable[str],
    options: IngestOptions,
    *,
    progress: ProgressSink | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    parse_fn: Callable[[str, str, int], Result] = parse_file,
    run_options: dict[str, Any] | None = None,
    backend: ParseBackend | None = None,
) -> Tally:
    """Ingest every path into the store and return the tally; never raises for a bad file.

    Raises StoreError when the database cannot be written and PoolUnrecoverable when worker
    processes keep dying; everything committed before that stays committed.
    """
    sink = progress or NullProgress()
    started = time.monotonic()
    run_id = store.begin_run("ingest", run_options or {}, options.workers, options.depth)
    tally = Tally(run_id=run_id, db_path=store.path)
    pending_stats: dict[str, FileStat] = {}  # paths handed to the runner, until their result
    ready: list[tuple[FileStat, Result]] = []  # failures decided here, without a worker
    batch: list[tuple[FileStat, Result]] = []
    batch_rows = 0
    last_flush = time.monotonic()

    def to_parse() -> Iterator[str]:
        for chunk in _chunks(paths, LOOKUP_CHUNK):
            tally.counts["discovered"] += len(chunk)
            records = store.lookup_files(chunk)
            for path in chunk:
                file_stat, early_failure = _file_stat(path)
                if early_failure is not None:
                    ready.append((file_stat, early_failure))
                elif _unchanged_and_done(records.get(path), file_stat, options):
                    tally.counts["skipped"] += 1
                    sink.skipped(1)
                else:
                    pending_stats[path] = file_stat
                    yield path

    def flush() -> None:
        nonlocal last_flush, batch_rows
        batch_rows = 0
        if batch:
            if options.archive_dir:
                _archive(batch, options.archive_dir)
            stored = store.save_batch(batch, run_id, replace=options.force)
            batch.clear()
            tally.add_stored(stored)
            sink.stored(stored)
        last_flush = time.monotonic()

    def take(file_stat: FileStat, result: Result) -> None:
        nonlocal batch_rows
        batch.append((file_stat, result))
        batch_rows += (len(result["players"]) + len(result["chat"]) + len(result["build_order"])
                       + len(result["player_stats"]))
        tally.record(result)
        sink.finished(result)
        error = result["error"]
        log.info("%s %s %.3fs %s", result["status"], result["source"], result["parse_seconds"],
                 error["kind"] if error else "")

    try:
        if backend is None:
            backend = local_backend(options, parse_fn)
        for result in backend(to_parse(), should_stop):
            while ready:
                take(*ready.pop())
            if result is not None:
                take(pending_stats.pop(result["source"] or ""), result)
            sink.refresh()
            if (len(batch) >= FLUSH_EVERY_RESULTS or batch_rows >= FLUSH_EVERY_ROWS
                    or time.monotonic() - last_flush >= FLUSH_EVERY_S):
                flush()
        while ready:
            take(*ready.pop())
        flush()
    except PoolUnrecoverable:
        # The workers keep dying: keep everything that finished, record the run, then fail.
        while ready:
            take(*ready.pop())
        flush()
        store.finish_run(run_id, {key: tally.counts[key] for key in COUNT_KEYS},
                         time.monotonic() - started, EXIT_FATAL, False)
        raise
    finally:
        tally.wall_seconds = time.monotonic() - started
        if should_stop():
            tally.interrupted_by = getattr(should_stop, "signum", None) or signal.SIGINT
    store.finish_run(run_id, {key: tally.counts[key] for key in COUNT_KEYS}, tally.wall_seconds,
                     tally.exit_code, tally.interrupted_by is not None)
    store.ensure_shape()
    return tally
