"""An asyncio API for services (a chat bot receiving uploads): parse without blocking the loop.

    async with ReplayParser(workers=2, db_path="replays.db", archive_dir="archive") as parser:
        result = await parser.parse(upload_bytes, name="game.SC2Replay")
        status = await parser.store(result, upload_bytes)

The same module-level parse function as the CLI runs in the same capped, watchdogged pebble
pool (runner.LocalPool: started, replaced on breakage and classified as for ingest); an upload's
failure comes back as the same classified Result. SQLite
is written from one dedicated thread, because a sqlite3 connection belongs to the thread that
opened it and the event loop must never wait on a commit.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from replay_cli.archive import archive_bytes, archive_path
from replay_cli.backend import BackendBroken
from replay_cli.defaults import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_MEMORY,
    DEFAULT_TIMEOUT_S,
    MAX_TASKS_PER_WORKER,
    default_workers,
)
from replay_cli.failures import failed_result
from replay_cli.parse import parse_replay
from replay_cli.poolwatch import PoolMonitor
from replay_cli.result import DEFAULT_DEPTH, STATUS_FAILED, Result
from replay_cli.runner import IN_FLIGHT_PER_WORKER, LocalPool

UPLOAD_PREFIX = "upload:"  # files.path of an upload that is not archived
NOT_ENTERED = "use ReplayParser as 'async with ReplayParser() as parser:'"
RECENT_PARSES = 200  # metrics() reports parse-time percentiles over this many latest uploads

ParseBytes = Callable[..., Result]


class ReplayParser:
    """Own a worker pool (and optionally a store and an archive) for an asyncio service."""

    def __init__(self, workers: int | None = None, *, depth: str = DEFAULT_DEPTH,
                 timeout: float = DEFAULT_TIMEOUT_S, max_memory: int | None = DEFAULT_MAX_MEMORY,
                 max_bytes: int = DEFAULT_MAX_BYTES, db_path: str | None = None,
                 archive_dir: str | None = None, parse_fn: ParseBytes = parse_replay,
                 window: int | None = None) -> None:
        self.workers = workers if workers is not None else default_workers()
        # Uploads beyond the window wait here, not in the pool: metrics() can tell waiting from
        # parsing, and an upload cancelled while it waits never costs a worker anything.
        self.window = window or IN_FLIGHT_PER_WORKER * self.workers
        self._slots = asyncio.Semaphore(self.window)
        self._waiting = 0
        self._monitor = PoolMonitor()
        self._recent: deque[float] = deque(maxlen=RECENT_PARSES)
        self._failures: Counter[str] = Counter()
        self._parsed = 0
        self.depth, self.timeout, self.max_memory, self.max_bytes = depth, timeout, max_memory, max_bytes
        self.db_path, self.archive_dir, self._parse_fn = db_path, archive_dir, parse_fn
        self._pool: LocalPool | None = None
        self._pool_lock = asyncio.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._store: Any = None
        self._run_id = 0
        self._started = time.monotonic()
        self._counts: dict[str, int] = {"parsed": 0, "ok": 0, "partial": 0, "duplicate": 0, "failed": 0}

    async def __aenter__(self) -> ReplayParser:
        loop = asyncio.get_running_loop()
        pool = LocalPool(self.workers, self.max_memory, MAX_TASKS_PER_WORKER, self.timeout, self._monitor)
        await loop.run_in_executor(None, pool.start)
        self._pool = pool
        if self.db_path is not None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replaycli-store")
            await loop.run_in_executor(self._writer, self._open_store)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Shut the pool down (running parses are abandoned) and close the store."""
        loop = asyncio.get_running_loop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await loop.run_in_executor(None, pool.stop)
        if self._writer is not None:
            await loop.run_in_executor(self._writer, self._close_store)
            self._writer.shutdown(wait=True)
            self._writer = None

    async def parse(self, data: bytes, *, name: str | None = None, depth: str | None = None) -> Result:
        """Parse one upload in a worker process; never raises for a bad upload or a dying worker.

        At most `window` uploads are in the pool at once; the others wait their turn here.
        """
        depth = depth or self.depth
        if self._pool is None:
            raise RuntimeError(NOT_ENTERED)
        if len(data) > self.max_bytes:
            result = failed_result(name, "too_large", "FileTooLarge",
                                   f"{len(data)} bytes is over the {self.max_bytes}-byte cap", "read", depth=depth,
                                   size=len(data))
        else:
            self._waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self._waiting -= 1
            try:
                result = await self._parse_in_pool(data, name, depth)
            finally:
                self._slots.release()
            self._recent.append(result["parse_seconds"] or 0.0)
        self._parsed += 1
        if result["status"] == STATUS_FAILED and result["error"] is not None:
            self._failures[result["error"]["kind"]] += 1
        return result

    def metrics(self) -> dict[str, Any]:
        """Return a plain snapshot of the parsing: cheap enough to call every second from the event loop.

        queued: uploads waiting for the window or for a worker to pick them up; in_flight: uploads
        in the pool (never above window); workers_alive and worker_rss_bytes (pid -> VmRSS now):
        the pool's live workers, read from /proc; workers_started and workers_replaced (by reason),
        counted as poolwatch.py explains; parse_seconds_p50/p95: over the latest RECENT_PARSES
        uploads that reached a worker (None before the first); parsed: uploads answered;
        failures: failed uploads by error kind.
        """
        pool = self._pool
        if pool is not None:
            pool.sample(force=True)
        numbers = self._monitor.numbers()
        times = sorted(self._recent)
        return {
            "queued": self._waiting + self._monitor.queued(),
            "in_flight": self._monitor.in_flight(),
            "window": self.window,
            "workers": self.workers,
            "workers_alive": self._monitor.alive,
            "workers_started": numbers.workers_started,
            "workers_replaced": numbers.workers_replaced,
            "worker_rss_bytes": dict(self._monitor.rss_now),
            "parsed": self._parsed,
            "parse_seconds_p50": _nearest_rank(times, 0.5),
            "parse_seconds_p95": _nearest_rank(times, 0.95),
            "parse_seconds_window": len(times),
            "failures": dict(self._failures),
        }

    async def _parse_in_pool(self, data: bytes, name: str | None, depth: str) -> Result:
        """Submit one upload, replacing a broken pool once; every failure comes back as the Result."""
        for attempt in (1, 2):
            pool = self._pool
            if pool is None:  # closed while this upload waited
                raise RuntimeError(NOT_ENTERED)
            generation = pool.generation
            try:
                future = pool.submit(self._parse_fn, (data, depth), {"source": name})
            except BackendBroken:  # an idle worker was killed (OOM killer): replace the pool, try again
                await self._replace_pool(generation)
                continue
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every worker-side failure becomes this upload's Result
                failure = pool.classify(exc, name, depth)
                if failure is not None:
                    return failure
                await self._replace_pool(generation)
                if attempt == 2:
                    return failed_result(name, "pool_broken", type(exc).__name__,
                                         "the worker pool broke twice while parsing this upload", depth,
                                         depth=depth)
        return failed_result(name, "pool_broken", "RuntimeError", "the worker pool could not take the upload",
                             depth, depth=depth)

    async def store(self, result: Result, data: bytes | None = None) -> str:
        """Write a parsed result into the database (and archive the bytes); return the files status.

        The files row's path is the archive path when archived, else "upload:<sha256>".
        """
        if self._writer is None:
            raise RuntimeError("ReplayParser was created without db_path")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._store_one, result, data)

    async def _replace_pool(self, broken_generation: int) -> None:
        """Replace the pool that broke, once however many uploads noticed."""
        async with self._pool_lock:
            pool = self._pool
            if pool is None or pool.generation != broken_generation:
                return
            await asyncio.get_running_loop().run_in_executor(None, pool.replace)

    # The methods below run on the store thread only.
    def _open_store(self) -> None:
        from replay_cli.store import open_store

        self._store = open_store(self.db_path)  # type: ignore[arg-type]
        self._run_id = self._store.begin_run("service", {"archive": self.archive_dir}, self.workers, self.depth)

    def _store_one(self, result: Result, data: bytes | None) -> str:
        """Archive the upload, commit its rows, and take the archived copy back if they were not committed.

        The archive must never hold a replay the database does not know: a re-upload would find it
        archived and a reader of the archive would see a game missing from every table.
        """
        from replay_cli.store import FileStat

        sha256 = result["sha256"]
        path = f"{UPLOAD_PREFIX}{sha256 or result['source']}"
        created = None
        if self.archive_dir and data is not None and sha256 and result["status"] != STATUS_FAILED:
            existed = archive_path(self.archive_dir, sha256).exists()
            archived = archive_bytes(self.archive_dir, sha256, data)
            path, created = str(archived), None if existed else archived
        try:
            counts = self._store.save_batch([(FileStat(path, result["size"] or 0, 0), result)], self._run_id)
        except BaseException:
            _unarchive(created)
            raise
        if counts.store_errors:
            _unarchive(created)
        status = next(key for key in ("ok", "partial", "duplicate", "failed") if getattr(counts, key))
        self._counts["parsed"] += 1
        self._counts[status] += 1
        return status

    def _close_store(self) -> None:
        if self._store is None:
            return
        self._store.finish_run(self._run_id, dict(self._counts), time.monotonic() - self._started, 0, False,
                               pool=self._monitor.numbers().as_dict())
        self._store.close()
        self._store = None


def _nearest_rank(ordered: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values (as `replaycli stats` computes them); None when empty."""
    return ordered[math.ceil(len(ordered) * fraction) - 1] if ordered else None


def _unarchive(created: Path | None) -> None:
    """Remove an archived copy this upload created; one that existed before belongs to stored rows."""
    if created is not None:
        created.unlink(missing_ok=True)
