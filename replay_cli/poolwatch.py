"""Watch a local worker pool: its workers, why each one was replaced, its queue and its memory.

pebble starts and replaces workers by itself and tells nobody, so every number here is derived
from something observed:

- workers started: distinct worker pids seen, either alive in the pool's process table at a sample
  or named by a finished task (every task returns the pid that ran it; a crash names its pid).
- replaced, by reason, one per task whose end also ended its worker:
  `crash`: the worker died under the task (pebble's ProcessExpired), other than by the memory cap;
  `memory`: the task hit the memory cap, either as a MemoryError (the worker then retires, see
  retire_after_memory_failure) or as a kill by a memory watchdog;
  `timeout`: pebble ended the task with TimeoutError, which stops the worker that ran it;
  `recycle`: a worker seen leaving the process table with exit code 0 that did not retire for
  memory, so it had served its max_tasks files.
  A worker that dies between files fails no task: it is counted as started, under no reason.
  Workers ended by stopping or replacing the whole pool are no replacements (a broken pool is
  logged where it is rebuilt).
- queued: files in tasks submitted to the pool that no worker has picked up yet; in flight: files
  in tasks submitted and not finished (the queued ones included). An ingest task holds a chunk of
  files, a service task one.
- memory: each live worker's VmRSS read from /proc/PID/status at a sample; the peak is the largest
  VmHWM read there (each worker resets it per file) or peak_rss_bytes a result reports.

Reading a few /proc files is the whole cost of a sample, so a service can take one every second
from its event loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

log = logging.getLogger("replay_cli.pool")

REASONS = ("crash", "memory", "recycle", "timeout")
PROC = Path("/proc")

_retiring = False  # set in a worker whose parse hit the memory cap: it takes no further task
_can_retire = False  # whether this worker's task loop was wrapped to honour _retiring


@dataclass(frozen=True)
class PoolNumbers:
    """What a run records about its pool (runs columns, the `pool` key of `ingest --json`)."""

    workers_started: int = 0
    workers_replaced: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    max_queued: int = 0
    max_in_flight: int = 0
    max_worker_rss_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"workers_started": self.workers_started, "workers_replaced": dict(self.workers_replaced),
                "max_queued": self.max_queued, "max_in_flight": self.max_in_flight,
                "max_worker_rss_bytes": self.max_worker_rss_bytes}


class PoolMonitor:
    """The observations of one or more successive pools; safe to feed from pebble's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[cf.Future[Any], int] = {}  # pebble futures submitted and not finished -> files
        self._live: dict[int, BaseProcess] = {}  # the pool's workers at the last sample
        self._seen: set[int] = set()
        self._retired: set[int] = set()  # pids that retired after a memory failure
        self.replaced: Counter[str] = Counter()
        self.max_queued = self.max_in_flight = 0
        self.max_rss: int | None = None
        self.rss_now: dict[int, int] = {}  # pid -> VmRSS bytes at the last sample
        self.alive = 0  # live workers at the last sample
        self._sampled_at = 0.0

    def due(self, every_s: float) -> bool:
        """Whether every_s has passed since the last sample."""
        return time.monotonic() - self._sampled_at >= every_s

    def submitted(self, future: cf.Future[Any], files: int = 1) -> None:
        """Count a task of `files` files handed to the pool; the queue is at its deepest right after a submit."""
        with self._lock:
            self._pending[future] = files
            self.max_in_flight = max(self.max_in_flight, sum(self._pending.values()))
            self.max_queued = max(self.max_queued, self._queued())

    def finished(self, future: cf.Future[Any], pid: int | None, reason: str | None, peak: int | None) -> None:
        """Record a finished task: the pid that ran it, and the reason its worker is gone, if it is."""
        with self._lock:
            self._pending.pop(future, None)
            if pid is not None:
                self._seen.add(pid)
            if peak is not None:
                self.max_rss = max(self.max_rss or 0, peak)
            if reason is None:
                return
            self.replaced[reason] += 1
            if reason == "memory" and pid is not None:
                self._retired.add(pid)
        log.info("worker %s replaced: %s", pid if pid is not None else "?", reason)

    def sample(self, processes: list[BaseProcess]) -> None:
        """Take the pool's live workers: new pids, recycled workers, and each one's memory now."""
        self._sampled_at = time.monotonic()
        alive = {p.pid: p for p in processes if p.pid is not None}
        rss: dict[int, int] = {}
        for pid in alive:
            now, peak = read_rss(pid)
            if now is not None:
                rss[pid] = now
            if peak is not None:
                with self._lock:
                    self.max_rss = max(self.max_rss or 0, peak)
        recycled = []
        with self._lock:
            for pid, process in self._live.items():
                if pid not in alive and process.exitcode == 0 and pid not in self._retired:
                    recycled.append(pid)
            self.replaced["recycle"] += len(recycled)
            self._seen.update(alive)
            self._live, self.rss_now, self.alive = alive, rss, len(alive)
            self.max_queued = max(self.max_queued, self._queued())
        for pid in recycled:
            log.info("worker %d replaced: recycle", pid)

    def forget_pool(self) -> None:
        """The pool is being stopped on purpose: its workers' ends are no replacements."""
        with self._lock:
            self._live, self.rss_now, self.alive = {}, {}, 0
            self._pending = {future: files for future, files in self._pending.items() if not future.done()}

    def queued(self) -> int:
        with self._lock:
            return self._queued()

    def in_flight(self) -> int:
        with self._lock:
            return sum(self._pending.values())

    def _queued(self) -> int:
        return sum(files for future, files in self._pending.items() if not future.running() and not future.done())

    def numbers(self) -> PoolNumbers:
        with self._lock:
            return PoolNumbers(len(self._seen), {reason: self.replaced[reason] for reason in REASONS},
                               self.max_queued, self.max_in_flight, self.max_rss)


def pool_processes(pool: Any) -> list[BaseProcess]:
    """A pebble pool's live worker processes; empty when this pebble hides them."""
    # pebble has no public list of workers; its worker manager's dict is read, guarded, so that a
    # pebble that renamed it costs the worker numbers, never the run.
    manager = getattr(getattr(pool, "_pool_manager", None), "worker_manager", None)
    workers = getattr(manager, "workers", None)
    if not isinstance(workers, dict):
        return []
    for _attempt in range(3):  # pebble's manager thread may change the dict while it is copied
        try:
            return [p for p in list(workers.values()) if isinstance(p, BaseProcess)]
        except RuntimeError:
            continue
    return []


def read_rss(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) of a process in bytes, from /proc; (None, None) where it cannot be read."""
    now = peak = None
    try:
        with open(PROC / str(pid) / "status", "rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    now = int(line.split()[1]) * 1024  # reported in kB
                elif line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return now, peak


def run_in_worker(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, bool, Any]:
    """Run one task in a worker; return (this worker's pid, whether it retires now, the result)."""
    global _retiring
    try:
        result = fn(*args, **kwargs)
    except MemoryError as exc:
        _retiring = True
        exc.replaycli_worker_pid = os.getpid()  # type: ignore[attr-defined]  # pickled with the exception
        raise
    if any(hit_memory_cap(one) for one in _results_of(result)):
        _retiring = True
    return os.getpid(), _retiring and _can_retire, result


def _results_of(value: Any) -> list[Any]:
    """A task's results: a chunk's list of them, or the one a single-file task returns."""
    return value if isinstance(value, list) else [value]


def hit_memory_cap(result: Any) -> bool:
    """Whether a parse result is a failure of kind `memory`: its worker must take no further file."""
    error = result.get("error") if isinstance(result, dict) else None
    return isinstance(error, dict) and error.get("kind") == "memory"


def peak_rss_of(value: Any) -> int | None:
    """The highest per-file peak RSS a task's result (one Result, or a chunk's list of them) reports."""
    peaks = [one.get("peak_rss_bytes") for one in _results_of(value) if isinstance(one, dict)]
    return max((peak for peak in peaks if isinstance(peak, int)), default=None)


def retire_after_memory_failure(pebble_process: Any) -> None:
    """In a worker: take no task after one that hit the memory cap, so pebble starts a fresh worker.

    A MemoryError can strike any allocation, inside sc2reader's lazily built tables or the
    interpreter's own caches, and the heap a bomb grew stays mapped in part: the next file must not
    inherit either. The worker returns the failing file's result first, then ends with exit code 0,
    which pebble treats like a worker that served its max_tasks files. pebble's worker loop pulls
    tasks from a module-level generator looked up at each worker's start; it is wrapped here, in
    the worker only, to stop after the task that set the flag. pebble_process is that module
    (pebble.pool.process), passed in by runner.py, the one module that imports pebble.
    """
    global _can_retire
    fetch = getattr(pebble_process, "worker_get_next_task", None)
    if fetch is None:  # a pebble without it: the worker keeps serving, and says so with each result
        return

    def next_task_unless_retiring(channel: Any, max_tasks: int) -> Any:
        for task in fetch(channel, max_tasks):
            yield task
            if _retiring:
                return

    pebble_process.worker_get_next_task = next_task_unless_retiring
    _can_retire = True


def watch_task(task: cf.Future[Any], monitor: PoolMonitor,
               reason_of: Callable[[BaseException], str | None], files: int = 1) -> cf.Future[Any]:
    """Return the future a caller waits on for a task submitted as run_in_worker: the bare result.

    The task's pid, retirement and failure reach the monitor first; cancelling the returned future
    cancels the task.
    """
    outer: cf.Future[Any] = cf.Future()
    monitor.submitted(task, files)

    def settle(done: cf.Future[Any]) -> None:
        # Runs on pebble's thread: whatever the bookkeeping does, the caller must get its answer.
        exc: BaseException | None = cf.CancelledError() if done.cancelled() else done.exception()
        value: Any = None
        pid, retires = None, False
        if exc is None:
            try:
                pid, retires, value = done.result()
            except (TypeError, ValueError) as error:  # not run through run_in_worker: a programming error
                exc = error
        try:
            if exc is None:
                monitor.finished(done, pid, "memory" if retires else None, peak_rss_of(value))
            elif done.cancelled():
                monitor.finished(done, None, None, None)
            else:
                pid = getattr(exc, "pid", None) or getattr(exc, "replaycli_worker_pid", None)  # crash, MemoryError
                monitor.finished(done, pid, reason_of(exc), None)
        except Exception as error:  # a bookkeeping bug costs a number, never an upload
            log.warning("pool monitor: %s: %s", type(error).__name__, error)
        try:
            if done.cancelled():
                outer.cancel()
            elif exc is None:
                outer.set_result(value)
            else:
                outer.set_exception(exc)
        except cf.InvalidStateError:  # the caller cancelled it meanwhile
            pass

    outer.add_done_callback(lambda future: task.cancel() if future.cancelled() else None)
    task.add_done_callback(settle)
    return outer
