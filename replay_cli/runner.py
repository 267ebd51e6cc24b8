"""Fan replay paths out over a pebble process pool and yield one Result per path.

Why pebble, forkserver, the watchdog, the pool rebuild and the re-check: see
shared/research/reliability.md §1 and §4. This module never touches SQLite or rich and never prints.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import logging
import multiprocessing
import os
import resource
import select
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from pebble import ProcessExpired, ProcessPool
from pebble.common.types import RemoteTraceback

from replay_cli.defaults import MAX_TASKS_PER_WORKER
from replay_cli.errors import ReplayCliError
from replay_cli.failures import failure_from, one_line
from replay_cli.parse import parse_file
from replay_cli.result import Result

ParseFn = Callable[[str, str, int], Result]

log = logging.getLogger(__name__)

TICK_S = 0.2  # wait() granularity: should_stop and idle ticks are seen within one tick
STALL_GRACE_S = 30  # no completion for timeout + this while work is in flight -> rebuild (§4)
MAX_BREAKAGES_WITHOUT_PROGRESS = 3  # then the pool is hopeless: raise PoolUnrecoverable (§4)
BREAKAGES_PER_PATH = 2  # a path caught in this many breakages is recorded as pool_broken (§4)
IN_FLIGHT_PER_WORKER = 3  # §4: keep 2-4 x workers futures in flight
JOIN_TIMEOUT_S = 5.0
WATCHDOG_POLL_S = 0.5  # fallback parent check where os.pidfd_open is missing
# Import once in the fork server, not in every worker: `import sc2reader` costs 0.3-0.6 s per
# process (reliability.md §1, start-up) and parse.py imports it lazily. The fork server skips
# modules that fail to import. ("__main__" is left out: CPython 3.11's fork server never receives
# the main path, so workers re-import the entry script regardless.)
PRELOAD_MODULES = ["replay_cli.parse", __name__, "sc2reader"]
# Exceptions that mean "the pool itself failed" rather than "this file failed": pebble raises
# RuntimeError from schedule() after an idle worker is SIGKILLed and aborts every future with
# BrokenProcessPool on "All workers expired" (noxdafox/pebble#153, #163, #129).
_POOL_ERRORS = (BrokenProcessPool, RuntimeError, cf.CancelledError)
# Pool creation failures that make us parse inline instead (black's fallback, STYLE.md §3).
_START_ERRORS = (OSError, ImportError, NotImplementedError, ValueError, RuntimeError)


class PoolUnrecoverable(ReplayCliError):
    """The worker pool broke repeatedly without completing a single file."""


@dataclass
class _Task:
    path: str
    attempts: int = 0  # how many pool breakages this path was caught in


class _PoolBroken(Exception):
    """Internal signal: the current pool must be replaced."""


def run_parses(
    paths: Iterable[str],
    *,
    depth: str,
    workers: int,
    timeout: float,
    max_memory: int | None,
    max_bytes: int,
    parse_fn: ParseFn = parse_file,
    max_in_flight: int | None = None,
    max_tasks_per_worker: int = MAX_TASKS_PER_WORKER,
    should_stop: Callable[[], bool] = lambda: False,
) -> Generator[Result | None, None, None]:
    """Yield one Result per path in completion order; yield None as an idle tick at least every 0.25 s so the caller can flush and refresh progress.

    workers == 0 parses inline in this process: no timeout, no memory cap, no idle ticks during a
    parse. A pool that cannot start falls back to inline with a warning. When should_stop() turns
    true, or the generator is closed, the pool is stopped and in-flight paths are not yielded.
    Raises PoolUnrecoverable after MAX_BREAKAGES_WITHOUT_PROGRESS pool breakages in a row.
    """
    path_iter = iter(paths)
    # Start no pool until there is something to parse: an unchanged re-run skips every file,
    # and starting workers that preload sc2reader would double its cost (benchmarks/ingest.py).
    first = next(path_iter, None)
    if first is None:
        return
    path_iter = itertools.chain([first], path_iter)
    if workers <= 0:
        yield from _run_inline(path_iter, parse_fn, depth, max_bytes, should_stop)
        return
    window = max_in_flight or IN_FLIGHT_PER_WORKER * workers
    main = _Driver(parse_fn, depth, max_bytes, timeout, max_memory, workers, max_tasks_per_worker, window)
    try:
        main.start()
    except _START_ERRORS as exc:
        main.shutdown()
        log.warning("cannot start %d worker processes (%s: %s); parsing in this process",
                    workers, type(exc).__name__, exc)
        yield from _run_inline(path_iter, parse_fn, depth, max_bytes, should_stop)
        return
    try:
        yield from main.drive(path_iter, should_stop)
    finally:
        main.shutdown()
    if should_stop() or not main.suspects:
        return
    # Isolation re-check (§4): run each timeout/crash file alone, each in a fresh process
    # (max_tasks=1), so a neighbour's crash is not pinned on it.
    alone = _Driver(parse_fn, depth, max_bytes, timeout, max_memory, 1, 1, 1, recheck=True)
    try:
        alone.start()
    except _START_ERRORS as exc:
        alone.shutdown()
        log.warning("cannot start the re-check worker (%s: %s); keeping first verdicts", type(exc).__name__, exc)
        yield from main.suspects
        return
    try:
        yield from alone.drive(_sources(main.suspects), should_stop)
    finally:
        alone.shutdown()


def _sources(results: list[Result]) -> Iterator[str]:
    """Yield the path each result was parsed from."""
    for result in results:
        assert result["source"] is not None
        yield result["source"]


def _run_inline(paths: Iterator[str], parse_fn: ParseFn, depth: str, max_bytes: int,
                should_stop: Callable[[], bool]) -> Iterator[Result]:
    """Parse each path in this process, classifying escaped exceptions like the pool does."""
    for path in paths:
        if should_stop():
            return
        try:
            yield parse_fn(path, depth, max_bytes)
        except MemoryError as exc:
            yield failure_from(path, depth, "memory", exc, f"out of memory: {exc}")
        except Exception as exc:  # the worker boundary: one bad file must not end the batch
            yield failure_from(path, depth, "parse_error", exc, str(exc))


class _Driver:
    """Own one pool at a time: schedule, classify, rebuild on breakage."""

    def __init__(self, parse_fn: ParseFn, depth: str, max_bytes: int, timeout: float,
                 max_memory: int | None, workers: int, max_tasks: int, window: int,
                 recheck: bool = False) -> None:
        self.parse_fn, self.depth, self.max_bytes = parse_fn, depth, max_bytes
        self.timeout = timeout if timeout and timeout > 0 else None
        self.max_memory, self.workers, self.max_tasks = max_memory, workers, max_tasks
        self.window, self.recheck = max(1, window), recheck
        self.pool: ProcessPool | None = None
        self.in_flight: dict[cf.Future[Result], _Task] = {}
        self.retry: deque[_Task] = deque()
        self.suspects: list[Result] = []  # timeout / worker_crash verdicts awaiting the re-check
        self.breakages = 0  # consecutive, reset by any completed result
        self.last_completion = time.monotonic()

    def start(self) -> None:
        """Create and start a pool; raise what the pool raised if it cannot start."""
        self.pool = start_pool(self.workers, self.max_memory, self.max_tasks)
        self.last_completion = time.monotonic()

    def shutdown(self) -> None:
        """Stop the pool once and reap its workers; in-flight work is abandoned."""
        pool, self.pool = self.pool, None
        if pool is not None:
            stop_pool(pool)

    def drive(self, paths: Iterator[str], should_stop: Callable[[], bool]) -> Iterator[Result | None]:
        """Schedule paths lazily and yield outcomes; yield None on a tick that produced nothing."""
        exhausted = False
        while not should_stop():
            try:
                exhausted = self._fill(paths, exhausted)
                if not self.in_flight and not self.retry:
                    return
                done, _ = cf.wait(self.in_flight, timeout=TICK_S, return_when=cf.FIRST_COMPLETED)
                produced = False
                for future in done:
                    outcome = self._classify(future, self.in_flight[future])
                    del self.in_flight[future]
                    if outcome is not None:
                        produced = True
                        yield outcome
                        if should_stop():  # nothing more after a stop: unyielded paths stay unrecorded
                            return
                if not done:
                    self._check_health()
                if not produced:
                    yield None
            except _PoolBroken as exc:
                yield from self._rebuild(str(exc))

    def _fill(self, paths: Iterator[str], exhausted: bool) -> bool:
        """Top the in-flight window up, retries first; return whether paths is exhausted."""
        assert self.pool is not None
        while len(self.in_flight) < self.window:
            if self.retry:
                task = self.retry.popleft()
            elif exhausted:
                break
            else:
                try:
                    task = _Task(next(paths))
                except StopIteration:
                    return True
            try:
                future = self.pool.schedule(self.parse_fn, args=(task.path, self.depth, self.max_bytes),
                                            timeout=self.timeout)
            except Exception as exc:  # RuntimeError after an idle worker was SIGKILLed (§1, deterministic)
                self.retry.appendleft(task)  # never reached a worker: not caught in the breakage
                raise _PoolBroken(f"schedule() raised {type(exc).__name__}: {exc}") from exc
            self.in_flight[future] = task
        return exhausted

    def _classify(self, future: cf.Future[Result], task: _Task) -> Result | None:
        """Turn a finished future into a Result, or None when held for the re-check; raise _PoolBroken."""
        exc = future.exception() if not future.cancelled() else cf.CancelledError()
        if exc is None:
            return self._progress(future.result())
        failure = classify_worker_failure(exc, task.path, self.depth, self.timeout)
        if failure is None:  # the future stays in flight: _rebuild re-schedules it
            raise _PoolBroken(f"a future failed with {type(exc).__name__}: {exc}")
        kind = failure["error"]["kind"]  # type: ignore[index]
        message = failure["error"]["message"]  # type: ignore[index]
        if kind in ("timeout", "worker_crash"):
            if not self.recheck:
                self.suspects.append(failure)
                return self._progress(None)
            failure["error"]["message"] = one_line(message + " (confirmed alone)")  # type: ignore[index]
        return self._progress(failure)

    def _progress(self, result: Result | None) -> Result | None:
        """Record a completion: it resets the breakage count and the stall clock."""
        self.breakages = 0
        self.last_completion = time.monotonic()
        return result

    def _check_health(self) -> None:
        """Raise _PoolBroken when the pool died silently or stalled."""
        assert self.pool is not None
        if not self.pool.active:  # a pebble manager thread died: futures may never resolve (§1)
            raise _PoolBroken("the pool stopped working")
        stall_s = (self.timeout or 0) + STALL_GRACE_S
        if self.timeout is not None and time.monotonic() - self.last_completion > stall_s:
            raise _PoolBroken(f"no file finished for {stall_s:g} s")

    def _rebuild(self, reason: str) -> Iterator[Result]:
        """Replace the pool and re-schedule unresolved paths; raise PoolUnrecoverable when hopeless."""
        # Keep what really finished before the breakage; everything else is unresolved.
        for future in [f for f in self.in_flight if f.done()]:
            try:
                outcome = self._classify(future, self.in_flight[future])
            except _PoolBroken:
                continue
            del self.in_flight[future]
            if outcome is not None:
                yield outcome
        self.breakages += 1
        log.warning("worker pool broke (%s); rebuilding (%d in a row)", reason, self.breakages)
        self.shutdown()
        for task in self.in_flight.values():
            task.attempts += 1
            self.retry.appendleft(task)
        self.in_flight.clear()
        while True:
            if self.breakages >= MAX_BREAKAGES_WITHOUT_PROGRESS:
                raise PoolUnrecoverable(f"the worker pool broke {self.breakages} times in a row "
                                        f"without finishing a file (last: {reason})")
            # A pool_broken failure is not progress: otherwise a pool that always breaks (e.g. a
            # failing initializer) would grind every file into pool_broken instead of stopping.
            for task in [t for t in self.retry if t.attempts >= BREAKAGES_PER_PATH]:
                self.retry.remove(task)
                yield failure_from(task.path, self.depth, "pool_broken", BrokenProcessPool(),
                               f"the worker pool broke {task.attempts} times while this file was in flight")
            self.last_completion = time.monotonic()
            try:
                self.start()
                return
            except _START_ERRORS as exc:
                self.shutdown()
                self.breakages += 1
                reason = f"restart failed: {type(exc).__name__}: {exc}"


def start_pool(workers: int, max_memory: int | None, max_tasks: int) -> ProcessPool:
    """Create and start a pebble pool of capped, watchdogged workers; raise if it cannot start."""
    context = multiprocessing.get_context("forkserver")  # fork is unsafe: the parent has threads (§1)
    if hasattr(context, "set_forkserver_preload"):
        context.set_forkserver_preload(PRELOAD_MODULES)
    pool = ProcessPool(max_workers=workers, max_tasks=max_tasks, initializer=_init_worker,
                       initargs=(max_memory, os.getpid()), context=context)
    _ = pool.active  # pebble starts lazily; start now so a pool that cannot start fails here
    return pool


def stop_pool(pool: ProcessPool) -> None:
    """Stop a pool at once and reap its workers; running parses are abandoned."""
    # One pool.stop(), never per-future cancel(): cancelling made pebble respawn workers
    # during shutdown (SemLock FileNotFoundError traceback, reliability.md "Signals").
    try:
        pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves stop() unannotated
        # pebble ignores the timeout for a stopped pool: each worker gets SIGTERM, then SIGKILL
        # after 3 s (pebble CONSTS.term_timeout), so a worker stuck in C code costs up to 3 s.
        pool.join(timeout=JOIN_TIMEOUT_S)
    except Exception as exc:  # a broken pool may fail to join; workers are terminated anyway
        log.warning("worker pool did not shut down cleanly: %s: %s", type(exc).__name__, exc)


def classify_worker_failure(exc: BaseException, source: str | None, depth: str,
                            timeout: float | None) -> Result | None:
    """Turn the exception a pool future failed with into a failure Result; None if the pool broke."""
    remote = isinstance(exc.__cause__, RemoteTraceback)  # raised by parse_fn inside the worker
    if isinstance(exc, TimeoutError) and not remote:
        kind, message = "timeout", f"parse took longer than {timeout or 0:g} s; worker killed"
    elif isinstance(exc, ProcessExpired):
        kind, message = "worker_crash", _describe_exit(exc.exitcode)
    elif isinstance(exc, MemoryError):
        kind, message = "memory", f"out of memory under the worker cap: {exc}"
    elif remote or not isinstance(exc, _POOL_ERRORS):
        kind, message = "parse_error", str(exc)
    else:
        return None
    return failure_from(source, depth, kind, exc, message)


def _describe_exit(exitcode: int | None) -> str:
    """Name the signal or exit code that ended a worker."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"worker killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"worker killed by signal {-exitcode}"
    return f"worker exited with code {exitcode}"


def _init_worker(max_memory: int | None, parent_pid: int) -> None:
    """Cap memory, ignore Ctrl-C, silence sc2reader and die with the parent."""
    # Workers never talk to the user: their failures come back as data. pebble logs an
    # initializer error on the root logger, which without a handler prints a traceback to
    # the terminal; the parent reports the broken pool in one line instead.
    logging.getLogger().addHandler(logging.NullHandler())
    if max_memory:
        # RLIMIT_AS turns decompression bombs into MemoryError inside this worker (§3).
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    logging.getLogger("sc2reader").setLevel(logging.CRITICAL)
    logging.getLogger("sc2reader").propagate = False
    # Under forkserver the worker's parent is the fork server, so PR_SET_PDEATHSIG cannot help;
    # a looping worker outlived a kill -9'd CLI in 3/6 trials without this (reliability.md §1).
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="replaycli-watchdog", daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    """Exit this process as soon as parent_pid is gone."""
    try:
        pidfd = os.pidfd_open(parent_pid)  # Linux >= 5.3: readable once the process exits
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        pidfd = -1
    if pidfd >= 0:
        select.select([pidfd], [], [])
        os._exit(1)
    while True:
        time.sleep(WATCHDOG_POLL_S)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid was reused by someone else: our parent is gone
            os._exit(1)
