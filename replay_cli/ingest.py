"""`replaycli ingest` as a library: plan -> backend -> writer.

plan.py decides what to skip, fail or parse; a backend (backend.py: the local pool, inline, or
Dask) turns paths into results; writer.py commits them in batches. This module wires the three
and keeps the tally. The main process is the only SQLite writer.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from replay_cli.backend import ParseBackend, ReplayBytes
from replay_cli.defaults import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMORY, DEFAULT_TIMEOUT_S
from replay_cli.errors import PoolUnrecoverable
from replay_cli.exitcodes import EXIT_FATAL
from replay_cli.filters import IngestFilters
from replay_cli.parse import current_parser_version, parse_file, parse_replay
from replay_cli.plan import PlanChunk, PlanRules, plan_paths
from replay_cli.poolwatch import PoolMonitor
from replay_cli.report import NullProgress, ProgressSink, Tally
from replay_cli.result import DEFAULT_DEPTH, Result
from replay_cli.runner import FILES_PER_TASK, run_parses
from replay_cli.store import FileStat, PackRecord, Store
from replay_cli.writer import BatchWriter

log = logging.getLogger("replay_cli.ingest")

# Returns the number of the signal that asked the run to stop, or None while it should go on.
StopRequest = Callable[[], "int | None"]


@dataclass(frozen=True)
class IngestOptions:
    depth: str = DEFAULT_DEPTH
    workers: int = 1
    timeout: float = DEFAULT_TIMEOUT_S
    max_memory: int | None = DEFAULT_MAX_MEMORY
    max_bytes: int = DEFAULT_MAX_BYTES
    force: bool = False
    retry_failed: bool = False
    reparse_degraded: bool = False  # parse degraded files again when other parser versions stored them
    archive_dir: str | None = None  # copy each stored replay to DIR/<2 hex>/<sha256>.SC2Replay
    filters: IngestFilters | None = None  # keep only the replays these match; the others are `filtered`
    pack_password: bytes | None = field(default=None, repr=False)  # unlocks ZipCrypto pack members


def local_backend(options: IngestOptions, parse_fn: Callable[[str, str, int], Result] = parse_file,
                  monitor: PoolMonitor | None = None) -> ParseBackend:
    """Return the backend that parses on this machine's pebble process pool (inline for workers=0).

    monitor, when given, collects what the pool's workers did.
    """
    bytes_fn: Callable[..., Result] = parse_replay
    if options.filters is not None and options.filters.active:
        # partial() of a module-level function pickles by reference: it reaches workers under any start method.
        path_fn: Callable[..., Result] = parse_fn
        parse_fn = functools.partial(path_fn, filters=options.filters)
        bytes_fn = functools.partial(parse_replay, filters=options.filters)

    def run(paths: Iterator[str | ReplayBytes], should_stop: Callable[[], object]) -> Iterator[Result | None]:
        return run_parses(paths, depth=options.depth, workers=options.workers, timeout=options.timeout,
                          max_memory=options.max_memory, max_bytes=options.max_bytes, parse_fn=parse_fn,
                          bytes_fn=bytes_fn, should_stop=should_stop, monitor=monitor, pack_rows=True,
                          files_per_task=FILES_PER_TASK)

    return run


class _Feed:
    """The plan split in two: paths go to the backend, each chunk's other decisions to the loop.

    The backend pulls paths lazily, so a chunk is planned only when its paths are needed; the
    chunk itself waits in `arrived` until the ingest loop takes it and accounts for it.
    """

    def __init__(self, chunks: Iterator[PlanChunk], keep_member_bytes: bool = False) -> None:
        self._chunks = chunks
        self.arrived: deque[PlanChunk] = deque()
        self.stats: dict[str, FileStat] = {}  # paths handed to the backend, until their result
        self.unread: deque[tuple[FileStat, Result]] = deque()  # pack members that failed as they were read
        # With --archive: a member's bytes until its result is written, since no path leads back to them.
        self.member_bytes: dict[str, bytes] | None = {} if keep_member_bytes else None

    def paths(self) -> Iterator[str | ReplayBytes]:
        for chunk in self._chunks:
            self.arrived.append(chunk)
            for file_stat in chunk.to_parse:
                read = chunk.readers.get(file_stat.path)
                data = read() if read is not None else None
                if isinstance(data, dict):
                    self.unread.append((file_stat, data))
                    continue
                self.stats[file_stat.path] = file_stat
                if data is None:
                    yield file_stat.path
                    continue
                if self.member_bytes is not None:
                    self.member_bytes[file_stat.path] = data
                yield ReplayBytes(file_stat.path, data)

    def pop_bytes(self, source: str) -> bytes | None:
        """A kept member's bytes, forgotten as they are handed on."""
        return self.member_bytes.pop(source, None) if self.member_bytes is not None else None


class _Run:
    """One ingest run's tally, display and writer, updated only by the ingest loop."""

    def __init__(self, store: Store, options: IngestOptions, sink: ProgressSink, run_options: dict[str, Any]) -> None:
        self.store, self.sink = store, sink
        self.monitor: PoolMonitor | None = None  # set when the run parses on the local pool
        self.started = time.monotonic()
        run_id = store.begin_run("ingest", run_options, options.workers, options.depth)
        self.tally = Tally(run_id=run_id, db_path=store.path)
        self.writer = BatchWriter(store, run_id, replace=options.force or options.reparse_degraded, archive_dir=options.archive_dir,
                                  on_stored=self._stored,
                                  filter_key=options.filters.key() if options.filters is not None else None)
        self.packs_done: list[PackRecord] = []

    def _stored(self, counts: Any) -> None:
        self.tally.add_stored(counts)
        self.sink.stored(counts)

    def account(self, feed: _Feed) -> None:
        """Count and write what the plan decided for the chunks that arrived since the last call."""
        while feed.arrived:
            chunk = feed.arrived.popleft()
            self.tally.counts["discovered"] += chunk.discovered
            self.tally.counts["skipped"] += chunk.skipped
            if chunk.skipped:
                self.sink.skipped(chunk.skipped)
            for file_stat, result in chunk.decided:
                self.take(file_stat, result)
            if chunk.pack_done is not None:
                self.packs_done.append(chunk.pack_done)
        while feed.unread:
            self.take(*feed.unread.popleft())

    def take(self, file_stat: FileStat, result: Result, data: bytes | None = None) -> None:
        """Count, show, log and buffer one result (with a pack member's bytes, for --archive)."""
        self.writer.add(file_stat, result, data)
        self.tally.record(result)
        self.sink.finished(result)
        error = result["error"]
        log.info("%s %s %.3fs %s", result["status"], result["source"], result["parse_seconds"],
                 error["kind"] if error else "")

    def finish(self, interrupted_by: int | None, exit_code: int | None = None) -> Tally:
        """Record how the run ended in the runs table and return the tally."""
        self.tally.wall_seconds = time.monotonic() - self.started
        self.tally.interrupted_by = interrupted_by
        if self.monitor is not None:
            self.tally.pool = self.monitor.numbers().as_dict()
        if interrupted_by is None and exit_code is None:
            # Only now is every member of these packs committed: a re-run may skip them unopened.
            self.store.save_packs(self.packs_done, self.tally.run_id)
        self.store.finish_run(self.tally.run_id, self.tally.count_dict(), self.tally.wall_seconds,
                              self.tally.exit_code if exit_code is None else exit_code, interrupted_by is not None,
                              pool=self.tally.pool)
        return self.tally


def plan_rules(options: IngestOptions) -> PlanRules:
    """What decides, for these options, which files are skipped, parsed or failed before parsing."""
    return PlanRules(options.depth, options.max_bytes, options.force, options.retry_failed,
                     reparse_degraded_for=current_parser_version() if options.reparse_degraded else None,
                     filter_key=options.filters.key() if options.filters is not None else None,
                     pack_password=options.pack_password)


def ingest_paths(
    store: Store,
    paths: Iterable[str],
    options: IngestOptions,
    *,
    progress: ProgressSink | None = None,
    stop_requested: StopRequest = lambda: None,
    parse_fn: Callable[[str, str, int], Result] = parse_file,
    run_options: dict[str, Any] | None = None,
    backend: ParseBackend | None = None,
) -> Tally:
    """Ingest every path into the store and return the tally; never raises for a bad file.

    stop_requested() returns the signal number once a stop is asked for: the run then commits
    what finished and records itself as interrupted by that signal. Raises StoreError when the
    database cannot be written and PoolUnrecoverable when the backend keeps breaking; everything
    committed before that stays committed.
    """
    run = _Run(store, options, progress or NullProgress(), run_options or {})
    feed = _Feed(plan_paths(paths, store.lookup_files, plan_rules(options), store.lookup_packs),
                 bool(options.archive_dir))
    if backend is None:
        run.monitor = PoolMonitor()
        backend = local_backend(options, parse_fn, run.monitor)
    results = backend(feed.paths(), lambda: stop_requested() is not None)
    try:
        for result in results:
            run.account(feed)
            if result is not None:
                source = result["source"] or ""
                run.take(feed.stats.pop(source), result, feed.pop_bytes(source))
            run.sink.refresh()
            run.writer.flush_if_due()
    except PoolUnrecoverable:
        # The workers keep dying: keep everything that finished, record the run, then fail.
        run.account(feed)
        run.writer.flush()
        run.finish(None, EXIT_FATAL)
        raise
    finally:
        close = getattr(results, "close", None)
        if close is not None:  # stop the backend now, not when the generator is collected
            close()
    run.account(feed)
    run.writer.flush()
    tally = run.finish(stop_requested())
    store.ensure_shape()
    return tally
