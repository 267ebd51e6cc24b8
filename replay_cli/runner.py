"""The local backends: a pebble process pool of capped, watchdogged workers, and inline parsing.

Both are backend.Executor implementations driven by backend.run_jobs. LocalPool (start, replace on
breakage, classify failures) is shared with the async service. This module never touches SQLite
or rich and never prints.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pebble import ProcessExpired, ProcessPool
from pebble.common.types import RemoteTraceback

from replay_cli.backend import BackendBroken, Executor, Job, ReplayBytes, Settled, StopCheck, run_jobs, source_of
from replay_cli.defaults import MAX_TASKS_PER_WORKER
from replay_cli.failures import describe_exit, failure_from, one_line
from replay_cli.parse import parse_file, parse_replay
from replay_cli.platforms import (
    CAP_RLIMIT,
    CAP_WATCHDOG,
    MemoryWatchdog,
    cap_address_space,
    ignore_stop_signals,
    memory_cap_mode,
    pool_start_method,
    start_parent_watchdog,
)
from replay_cli.poolwatch import (
    PoolMonitor,
    hit_memory_cap,
    pool_processes,
    retire_after_memory_failure,
    run_in_worker,
    watch_task,
)
from replay_cli.result import Result
from replay_cli.rowpack import run_packed

ParseFn = Callable[[str, str, int], Result]
BytesParseFn = Callable[..., Result]  # parse_replay(data, depth, source=...), maybe with filters bound

log = logging.getLogger(__name__)

# A pool that finishes nothing for timeout + this while work is in flight has a stuck manager
# thread or a worker that escaped its timeout: rebuild it.
STALL_GRACE_S = 30
IN_FLIGHT_PER_WORKER = 3  # 2-4 futures per worker keep every worker busy with few results in memory
# Files an ingest worker parses per task. Each task costs the main process a fixed amount of CPU
# (pebble's messages and threads, a future, a wake-up of the loop) that at `stats` was as large as
# writing the file's rows; a few files per task divide it. A chunk that fails is split into one
# task per file, which then behaves exactly as an unchunked run.
FILES_PER_TASK = 4
# A chunk stops taking pack members past this many bytes: they travel to the worker in one message.
CHUNK_MAX_BYTES = 8 * 1024 * 1024
SAMPLE_EVERY_S = 0.1  # how often a batch reads its workers' /proc entries: often enough to see each one
# A failure kind that also ended the worker that ran it, as poolwatch names the replacement.
_REPLACING_KINDS = {"worker_crash": "crash", "timeout": "timeout", "memory": "memory"}
JOIN_TIMEOUT_S = 5.0
HELPERS_EXIT_S = 2.0  # the fork server and resource tracker get as long to exit as a Ctrl-C run
# Import once in the fork server, not in every worker: importing sc2reader takes a large part of a
# worker's start-up, and parse.py imports it lazily. The fork server skips modules that fail to
# import. ("__main__" is left out: CPython 3.11's fork server never receives the main path, so
# workers re-import the entry script regardless.)
PRELOAD_MODULES = ["replay_cli.parse", __name__, "sc2reader"]
# Exceptions that mean "the pool itself failed" rather than "this file failed": pebble raises
# RuntimeError from schedule() after an idle worker is SIGKILLed and aborts every future with
# BrokenProcessPool on "All workers expired" (noxdafox/pebble#153, #163, #129).
_POOL_ERRORS = (BrokenProcessPool, RuntimeError, cf.CancelledError)
# Pool creation failures that make us parse inline instead, as black falls back to one process.
_START_ERRORS = (OSError, ImportError, NotImplementedError, ValueError, RuntimeError)


def run_parses(
    paths: Iterable[str | ReplayBytes],
    *,
    depth: str,
    workers: int,
    timeout: float,
    max_memory: int | None,
    max_bytes: int,
    parse_fn: ParseFn = parse_file,
    bytes_fn: BytesParseFn = parse_replay,
    max_in_flight: int | None = None,
    max_tasks_per_worker: int = MAX_TASKS_PER_WORKER,
    should_stop: StopCheck = lambda: False,
    monitor: PoolMonitor | None = None,
    pack_rows: bool = False,
    files_per_task: int = 1,
) -> Generator[Result | None, None, None]:
    """Yield one Result per path in completion order, and None as an idle tick at least every 0.25 s.

    workers == 0 parses inline in this process: no timeout, no memory cap, no idle ticks during a
    parse. A pool that cannot start falls back to inline with a warning. When should_stop() turns
    true, or the generator is closed, the pool is stopped and in-flight paths are not yielded.
    Raises PoolUnrecoverable after backend.MAX_BREAKAGES_WITHOUT_PROGRESS pool breakages in a row.
    monitor, when given, collects what the pool's workers did (see poolwatch). pack_rows has pool
    workers return the big child tables packed for the writer (rowpack.py); inline parses never pack.
    files_per_task > 1 sends pool workers chunks of that many files (see PoolExecutor); workers then
    recycle after max_tasks_per_worker files, not tasks.
    """
    path_iter = iter(paths)
    # Start no pool until there is something to parse: an unchanged re-run skips every file, and
    # starting workers that preload sc2reader would cost more than the whole re-run.
    first = next(path_iter, None)
    if first is None:
        return
    path_iter = itertools.chain([first], path_iter)
    executor: Executor = InlineExecutor(parse_fn, depth, max_bytes, bytes_fn)
    if workers > 0:
        per_task = max(1, files_per_task)
        pool = LocalPool(workers, max_memory, max(1, max_tasks_per_worker // per_task), timeout, monitor)
        try:
            pool.start()
            executor = PoolExecutor(pool, parse_fn, depth, max_bytes, max_in_flight or IN_FLIGHT_PER_WORKER * workers,
                                    bytes_fn, pack_rows, per_task)
        except _START_ERRORS as exc:
            pool.stop()
            log.warning("cannot start %d worker processes (%s: %s); parsing in this process",
                        workers, type(exc).__name__, exc)
    yield from run_jobs(executor, path_iter, should_stop)


class InlineExecutor(Executor):
    """Parse in this process: debuggable, and the fallback when no worker process can start."""

    def __init__(self, parse_fn: ParseFn, depth: str, max_bytes: int, bytes_fn: BytesParseFn = parse_replay) -> None:
        self.parse_fn, self.depth, self.max_bytes, self.bytes_fn = parse_fn, depth, max_bytes, bytes_fn

    def submit(self, job: Job) -> cf.Future[Any]:
        """Parse at once, classifying escaped exceptions as the pool does; return a finished future."""
        future: cf.Future[Result] = cf.Future()
        path = job.sources[0]
        try:
            fn, args, kwargs = work_for(job.payload, self.parse_fn, self.bytes_fn, self.depth, self.max_bytes)
            future.set_result(fn(*args, **kwargs))
        except MemoryError as exc:
            future.set_result(failure_from(path, self.depth, "memory", exc, f"out of memory: {exc}"))
        except Exception as exc:  # the worker boundary: one bad file must not end the batch
            future.set_result(failure_from(path, self.depth, "parse_error", exc, str(exc)))
        return future

    def settle(self, future: cf.Future[Any], job: Job) -> Settled:
        return Settled([future.result()])


class LocalPool:
    """One pebble pool at a time: start it, submit to it, replace it when it breaks, classify failures."""

    def __init__(self, workers: int, max_memory: int | None, max_tasks: int, timeout: float | None,
                 monitor: PoolMonitor | None = None) -> None:
        self.workers, self.max_memory, self.max_tasks = workers, max_memory, max_tasks
        self.timeout = timeout if timeout and timeout > 0 else None
        self.pool: ProcessPool | None = None
        self.generation = 0  # counts pools started, so callers can tell whether a replacement happened
        self.monitor = monitor or PoolMonitor()
        self.watchdog: MemoryWatchdog | None = None  # where RLIMIT_AS cannot cap the workers

    def start(self) -> None:
        """Create and start a pool; raise what the pool raised if it cannot start."""
        mode = memory_cap_mode() if self.max_memory else None
        self.pool = pool = start_pool(self.workers, self.max_memory if mode == CAP_RLIMIT else None, self.max_tasks)
        self.generation += 1
        if mode == CAP_WATCHDOG and self.max_memory:
            self.watchdog = MemoryWatchdog(self.max_memory, lambda: worker_pids(pool)).start()

    def stop(self) -> None:
        """Stop the pool once and reap its workers; in-flight work is abandoned."""
        self.sample(force=True)  # the last look at workers that recycled since the previous sample
        self.monitor.forget_pool()
        pool, self.pool = self.pool, None
        if pool is not None:
            stop_pool(pool)
        if self.watchdog is not None:  # after the pool: a worker killed while stopping is no file's verdict
            self.watchdog.stop()

    def replace(self) -> None:
        """Stop the pool and start a new one; raise BackendBroken when it cannot start."""
        self.stop()
        try:
            self.start()
        except _START_ERRORS as exc:
            self.stop()
            raise BackendBroken(f"restart failed: {type(exc).__name__}: {exc}") from exc

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any] | None = None, files: int = 1) -> cf.Future[Any]:
        """Schedule fn (a task of `files` files) under the timeout; raise BackendBroken if the pool cannot take it."""
        if self.pool is None:
            raise BackendBroken("the pool is not running")
        try:
            task = self.pool.schedule(run_in_worker, args=(fn, args, kwargs or {}), timeout=self.timeout)
        except Exception as exc:  # RuntimeError after an idle worker was SIGKILLed
            raise BackendBroken(f"schedule() raised {type(exc).__name__}: {exc}") from exc
        self.sample()
        return watch_task(task, self.monitor, self._replacement_reason, files)

    def sample(self, force: bool = False) -> None:
        """Let the monitor look at the live workers, at most every SAMPLE_EVERY_S unless forced."""
        if self.pool is not None and (force or self.monitor.due(SAMPLE_EVERY_S)):
            self.monitor.sample(pool_processes(self.pool))

    def _replacement_reason(self, exc: BaseException) -> str | None:
        """Why the worker that ran a failed task is gone, or None when it lives on."""
        failure = self.classify(exc, None, "summary")
        error = failure["error"] if failure is not None else None
        return _REPLACING_KINDS.get(error["kind"]) if error is not None else None

    def classify(self, exc: BaseException, source: str | None, depth: str) -> Result | None:
        """Turn a future's exception into a failure Result; None when the pool itself broke."""
        if isinstance(exc, ProcessExpired) and self.watchdog is not None and self.watchdog.killed(exc.pid):
            message = f"out of memory under the worker cap: past {self.watchdog.max_memory} bytes resident"
            return failure_from(source, depth, "memory", MemoryError(message), message + "; worker killed")
        return classify_worker_failure(exc, source, depth, self.timeout)

    def check(self, idle_s: float) -> None:
        """Raise BackendBroken when the pool died silently or nothing finished for too long."""
        self.sample()
        if self.pool is None or not self.pool.active:  # a pebble manager thread died: futures may never resolve
            raise BackendBroken("the pool stopped working")
        stall_s = (self.timeout or 0) + STALL_GRACE_S
        if self.timeout is not None and idle_s > stall_s:
            raise BackendBroken(f"no file finished for {stall_s:g} s")


class PoolExecutor(Executor):
    """Parse files on a LocalPool, a chunk of files_per_task per task; timeouts and crashes are re-checked alone.

    Every job's payload is a tuple of items, parsed in order by run_chunk in one worker under one
    deadline (the per-file timeout: a healthy chunk takes a small part of it). A chunk that times
    out, crashes its worker or raises is split into one job per file, and every later job holds one
    file; from then on a file's verdict comes about exactly as without chunks. Files a chunk did not
    reach (it stops after a file that hit the memory cap) are sent again, one per job.
    """

    def __init__(self, pool: LocalPool, parse_fn: ParseFn, depth: str, max_bytes: int, window: int,
                 bytes_fn: BytesParseFn = parse_replay, pack_rows: bool = False, files_per_task: int = 1) -> None:
        self.pool, self.parse_fn, self.depth, self.max_bytes = pool, parse_fn, depth, max_bytes
        self.window, self.bytes_fn, self.pack_rows = max(1, window), bytes_fn, pack_rows
        self.files_per_task = max(1, files_per_task)

    def jobs(self, paths: Iterator[str | ReplayBytes]) -> Iterator[Job | Result]:
        """Group consecutive items into chunks of up to files_per_task (and CHUNK_MAX_BYTES of pack members)."""
        chunk: list[str | ReplayBytes] = []
        size = 0
        for item in paths:
            chunk.append(item)
            size += len(item.data) if isinstance(item, ReplayBytes) else 0
            if len(chunk) >= self.files_per_task or size >= CHUNK_MAX_BYTES:
                yield _chunk_job(chunk)
                chunk, size = [], 0
        if chunk:
            yield _chunk_job(chunk)

    def submit(self, job: Job) -> cf.Future[Any]:
        calls = [work_for(item, self.parse_fn, self.bytes_fn, self.depth, self.max_bytes) for item in job.payload]
        if self.pack_rows:  # the worker packs each result's big child tables for the writer
            calls = [(run_packed, (fn, *args), kwargs) for fn, args, kwargs in calls]
        return self.pool.submit(run_chunk, (calls,), files=len(calls))

    def settle(self, future: cf.Future[Any], job: Job) -> Settled:
        self.pool.sample()
        exc = future.exception() if not future.cancelled() else cf.CancelledError()
        if exc is None:
            results: list[Result] = future.result()
            return Settled(results, retry=_one_per_job(job.payload[len(results):]))
        failure = self.pool.classify(exc, job.sources[0], self.depth)
        if failure is None:
            raise BackendBroken(f"a future failed with {type(exc).__name__}: {exc}")
        if len(job.sources) > 1:
            self.files_per_task = 1
            log.info("a chunk of %d files failed (%s); parsing one file per task from now on",
                     len(job.sources), failure["error"]["kind"] if failure["error"] else "?")
            return Settled(retry=_one_per_job(job.payload))
        error = failure["error"]
        assert error is not None
        if error["kind"] in ("timeout", "worker_crash"):
            if not job.alone:
                return Settled(suspects=[(job, failure)])
            error["message"] = one_line(error["message"] + " (confirmed alone)")
        return Settled([failure])

    def check(self, idle_s: float) -> None:
        self.pool.check(idle_s)

    def replace(self) -> None:
        self.pool.replace()

    def isolate(self) -> bool:
        """Swap the pool for one worker that serves a single file, so no neighbour shares its fate."""
        self.pool.stop()
        self.pool.workers = self.pool.max_tasks = 1
        try:
            self.pool.start()
        except _START_ERRORS as exc:
            self.pool.stop()
            log.warning("cannot start the re-check worker (%s: %s); keeping first verdicts", type(exc).__name__, exc)
            return False
        return True

    def close(self, abandoned: list[cf.Future[Any]]) -> None:
        self.pool.stop()


def _chunk_job(items: Iterable[str | ReplayBytes]) -> Job:
    items = tuple(items)
    return Job(items, tuple(source_of(item) for item in items))


def _one_per_job(items: Iterable[str | ReplayBytes]) -> list[Job]:
    """A job for each item: how a failed chunk, or the rest of one that stopped, is sent again."""
    return [_chunk_job([item]) for item in items]


def run_chunk(calls: list[tuple[Callable[..., Result], tuple[Any, ...], dict[str, Any]]]) -> list[Result]:
    """In a worker: make each parse call of a chunk in turn and return their results in order.

    Stops after a result that hit the memory cap: the heap that file grew stays in part, so the
    chunk's next files go back to the main process, which sends each to a fresh task.
    """
    results = []
    for fn, args, kwargs in calls:
        results.append(fn(*args, **kwargs))
        if hit_memory_cap(results[-1]):
            break
    return results


def work_for(item: str | ReplayBytes, parse_fn: ParseFn, bytes_fn: BytesParseFn, depth: str,
             max_bytes: int) -> tuple[Callable[..., Result], tuple[Any, ...], dict[str, Any]]:
    """The call a worker makes for one item: parse_fn on a path, bytes_fn on bytes read here."""
    if isinstance(item, ReplayBytes):
        return bytes_fn, (item.data, depth), {"source": item.source}
    return parse_fn, (item, depth, max_bytes), {}


def start_pool(workers: int, max_memory: int | None, max_tasks: int) -> ProcessPool:
    """Create and start a pebble pool of capped, watchdogged workers; raise if it cannot start.

    max_memory is the RLIMIT_AS each worker sets on itself; None where the memory watchdog caps them.
    """
    context = multiprocessing.get_context(pool_start_method())
    if hasattr(context, "set_forkserver_preload") and context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD_MODULES)
    pool = ProcessPool(max_workers=workers, max_tasks=max_tasks, initializer=_init_worker,
                       initargs=(max_memory, os.getpid()), context=context)
    _ = pool.active  # pebble starts lazily; start now so a pool that cannot start fails here
    return pool


def worker_pids(pool: ProcessPool) -> list[int]:
    """The pids of a pool's live workers, for the memory watchdog; empty when pebble hides them."""
    return [process.pid for process in pool_processes(pool) if process.pid is not None]


def stop_pool(pool: ProcessPool) -> None:
    """Stop a pool at once and reap its workers; running parses are abandoned."""
    # One pool.stop(), never per-future cancel(): cancelling made pebble respawn workers during
    # shutdown, which then failed on the pool's already-removed semaphores with a traceback.
    try:
        pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves stop() unannotated
        # pebble ignores the timeout for a stopped pool: each worker gets SIGTERM, then SIGKILL
        # after 3 s (pebble CONSTS.term_timeout), so a worker stuck in C code costs up to 3 s.
        pool.join(timeout=JOIN_TIMEOUT_S)
    except Exception as exc:  # a broken pool may fail to join; workers are terminated anyway
        log.warning("worker pool did not shut down cleanly: %s: %s", type(exc).__name__, exc)


def stop_pool_helpers(within_s: float = HELPERS_EXIT_S) -> None:
    """Stop the fork server and the resource tracker this process started; wait at most within_s.

    Both exit by themselves once this process has exited, so without this a command could
    return while they still run, and a script that deletes the folder right after it would find
    them. They serve every pool of the process: call this only when no pool will follow.
    """
    try:
        from multiprocessing import forkserver, resource_tracker
    except ImportError:  # a platform without them started neither
        return
    if multiprocessing.active_children():  # something else of this process still relies on them
        return

    def stop_all() -> None:
        # The fork server first: it holds the resource tracker's pipe open until it exits.
        for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
            try:
                getattr(helper, "_stop")()  # noqa: B009  # private: CPython has no public way to stop them
            except (AttributeError, OSError) as exc:  # not running, or gone already
                log.debug("multiprocessing helper not stopped: %s", exc)

    stopper = threading.Thread(target=stop_all, name="replaycli-stop-helpers", daemon=True)
    stopper.start()
    stopper.join(within_s)


def classify_worker_failure(exc: BaseException, source: str | None, depth: str,
                            timeout: float | None) -> Result | None:
    """Turn the exception a pool future failed with into a failure Result; None if the pool broke."""
    remote = isinstance(exc.__cause__, RemoteTraceback)  # raised by parse_fn inside the worker
    if isinstance(exc, TimeoutError) and not remote:
        kind, message = "timeout", f"parse took longer than {timeout or 0:g} s; worker killed"
    elif isinstance(exc, ProcessExpired):
        kind, message = "worker_crash", describe_exit(exc.exitcode)
    elif isinstance(exc, MemoryError):
        kind, message = "memory", f"out of memory under the worker cap: {exc}"
    elif remote or not isinstance(exc, _POOL_ERRORS):
        kind, message = "parse_error", str(exc)
    else:
        return None
    return failure_from(source, depth, kind, exc, message)


def _init_worker(max_memory: int | None, parent_pid: int) -> None:
    """Cap memory, ignore Ctrl-C and die with the parent (parse.py routes sc2reader's log records)."""
    # Workers never talk to the user: their failures come back as data. pebble logs an
    # initializer error on the root logger, which without a handler prints a traceback to
    # the terminal; the parent reports the broken pool in one line instead.
    logging.getLogger().addHandler(logging.NullHandler())
    cap_address_space(max_memory)
    ignore_stop_signals()  # the parent handles Ctrl-C and stops the pool
    # A worker looping in a parse would outlive a CLI killed with SIGKILL without this thread.
    start_parent_watchdog(parent_pid)
    from pebble.pool import process as pebble_process  # only workers need pebble's worker loop

    retire_after_memory_failure(pebble_process)
