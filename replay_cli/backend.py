"""Where parsing happens, behind one interface, and the one loop that drives every implementation.

An Executor only says how to submit a job and how to settle its finished future (plus, where it
has them, how to check, replace and isolate itself). run_jobs does the rest for all of them: the
in-flight window, the tick, stop requests, replacing a broken executor, and re-running suspect
files alone. Implementations: runner.PoolExecutor (the local pebble pool), runner.InlineExecutor
(this process) and cluster.DaskExecutor.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from replay_cli.errors import PoolUnrecoverable
from replay_cli.failures import failure_from
from replay_cli.result import Result

log = logging.getLogger(__name__)

StopCheck = Callable[[], object]  # truthy once the run should stop


@dataclass(frozen=True, slots=True)
class ReplayBytes:
    """A replay the main process has already read (a pack member): sent to a worker as bytes."""

    source: str  # what the result is known by: PACK!/inner/path.SC2Replay
    data: bytes


# Items in (a path a worker reads itself, or bytes read here), one Result per item out, in completion
# order; None is an idle tick, so the caller can flush and refresh progress. The ingest loop, the store and the display never know which runs.
ParseBackend = Callable[[Iterator["str | ReplayBytes"], StopCheck], Iterator["Result | None"]]


def source_of(item: str | ReplayBytes) -> str:
    """The name a parse item's result carries."""
    return item.source if isinstance(item, ReplayBytes) else item


TICK_S = 0.2  # wait() granularity: stop requests and idle ticks are seen within one tick
MAX_BREAKAGES_WITHOUT_PROGRESS = 3  # then the executor is hopeless: raise PoolUnrecoverable
# A file caught in this many breakages is recorded as pool_broken: it may be what breaks the pool.
BREAKAGES_PER_PATH = 2


class BackendBroken(Exception):
    """The executor itself failed, not the file: the loop replaces it and re-submits its jobs."""


@dataclass
class Job:
    """One unit of submitted work: a path, or a batch of files, with the paths it answers for."""

    payload: Any
    sources: tuple[str, ...]
    attempts: int = 0  # how many breakages this job was caught in
    alone: bool = False  # a suspect re-run with nothing else in flight: its verdict is final


@dataclass
class Settled:
    """What one finished future came to."""

    results: list[Result] = field(default_factory=list)
    retry: list[Job] = field(default_factory=list)  # run again, ahead of new work
    # Verdicts (timeouts, crashes) a neighbour may have caused: each job is re-run alone at the end,
    # and its verdict stands only when that is impossible.
    suspects: list[tuple[Job, Result]] = field(default_factory=list)


class Executor:
    """How one place runs jobs. Subclasses implement submit and settle; the rest has safe defaults."""

    depth: str = ""
    window: int = 1  # jobs in flight at once

    def jobs(self, paths: Iterator[str | ReplayBytes]) -> Iterator[Job | Result]:
        """Turn items into jobs; a Result is a verdict reached without submitting anything."""
        for item in paths:
            yield Job(item, (source_of(item),))

    def submit(self, job: Job) -> cf.Future[Any]:
        """Start a job; raise BackendBroken when the executor cannot take work."""
        raise NotImplementedError

    def settle(self, future: cf.Future[Any], job: Job) -> Settled:
        """Classify a finished future; raise BackendBroken when the executor, not the file, failed."""
        raise NotImplementedError

    def check(self, idle_s: float) -> None:
        """On a tick where nothing finished for idle_s: raise BackendBroken when dead or stalled."""

    def replace(self) -> None:
        """Replace a broken executor; raise BackendBroken when the new one cannot start."""

    def isolate(self) -> bool:
        """Prepare to run suspects alone; False keeps their first verdicts."""
        return True

    def close(self, abandoned: list[cf.Future[Any]]) -> None:
        """Stop for good; abandoned futures never get settled."""


def run_jobs(executor: Executor, paths: Iterator[str | ReplayBytes],
             should_stop: StopCheck) -> Iterator[Result | None]:
    """Yield one Result per path from executor, then settle the suspects alone; close it at the end.

    Once should_stop() is true nothing more is yielded: paths not yet yielded stay unrecorded.
    Raises PoolUnrecoverable after MAX_BREAKAGES_WITHOUT_PROGRESS breakages in a row.
    """
    loop = _Loop(executor, should_stop)
    try:
        yield from loop.drain(executor.jobs(paths), executor.window)
        if loop.suspects and not should_stop():
            yield from loop.confirm_suspects()
    finally:
        executor.close(list(loop.in_flight))


class _Loop:
    """The state of one run: the window, the retry queue, the suspects and the breakage count."""

    def __init__(self, executor: Executor, should_stop: StopCheck) -> None:
        self.executor, self.should_stop = executor, should_stop
        self.in_flight: dict[cf.Future[Any], Job] = {}
        self.queue: deque[Job] = deque()  # retried jobs, submitted before new ones
        self.ready: deque[Result] = deque()  # verdicts reached without a job
        self.suspects: list[tuple[Job, Result]] = []
        self.breakages = 0  # consecutive, reset by any settled future
        self.last_completion = time.monotonic()
        self.exhausted = False

    def drain(self, source: Iterator[Job | Result], window: int) -> Iterator[Result | None]:
        """Keep up to window jobs in flight until source is exhausted and everything is settled."""
        self.exhausted = False
        while not self.should_stop():
            try:
                self._fill(source, max(1, window))
                if not self.in_flight and not self.queue and not self.ready and self.exhausted:
                    return
                produced = bool(self.ready)
                while self.ready:
                    yield self.ready.popleft()
                done, _ = cf.wait(self.in_flight, timeout=TICK_S, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    for result in self._settle(future):
                        produced = True
                        yield result
                        if self.should_stop():  # nothing more after a stop
                            return
                if not done and self.in_flight:
                    self.executor.check(time.monotonic() - self.last_completion)
                if not produced:
                    yield None
            except BackendBroken as exc:
                yield from self._recover(str(exc))

    def confirm_suspects(self) -> Iterator[Result | None]:
        """Re-run each suspect alone; keep the first verdicts when the executor cannot isolate."""
        suspects, self.suspects = self.suspects, []
        if not self.executor.isolate():
            yield from (verdict for _job, verdict in suspects)
            return
        self.breakages, self.last_completion = 0, time.monotonic()
        alone = (Job(job.payload, job.sources, alone=True) for job, _verdict in suspects)
        yield from self.drain(alone, 1)

    def _fill(self, source: Iterator[Job | Result], window: int) -> None:
        """Top the window up, retries first; verdicts from source go to ready."""
        while len(self.in_flight) < window:
            if self.queue:
                job = self.queue.popleft()
            elif self.exhausted:
                return
            else:
                item = next(source, None)
                if item is None:
                    self.exhausted = True
                    return
                if not isinstance(item, Job):
                    self.ready.append(item)
                    continue
                job = item
            try:
                future = self.executor.submit(job)
            except BackendBroken:
                self.queue.appendleft(job)  # never reached a worker: not caught in the breakage
                raise
            self.in_flight[future] = job

    def _settle(self, future: cf.Future[Any]) -> list[Result]:
        """Settle one finished future (raising BackendBroken leaves it in flight for _recover)."""
        settled = self.executor.settle(future, self.in_flight[future])
        del self.in_flight[future]
        self.breakages, self.last_completion = 0, time.monotonic()
        self.queue.extend(settled.retry)
        self.suspects.extend(settled.suspects)
        return settled.results

    def _recover(self, reason: str) -> Iterator[Result]:
        """Replace the executor and re-queue unsettled jobs; raise PoolUnrecoverable when hopeless."""
        for future in [f for f in self.in_flight if f.done()]:  # keep what really finished
            try:
                yield from self._settle(future)
            except BackendBroken:
                continue
        self.breakages += 1
        log.warning("worker pool broke (%s); rebuilding (%d in a row)", reason, self.breakages)
        for job in self.in_flight.values():
            job.attempts += 1
            self.queue.appendleft(job)
        self.in_flight.clear()
        while True:
            if self.breakages >= MAX_BREAKAGES_WITHOUT_PROGRESS:
                raise PoolUnrecoverable(f"the worker pool broke {self.breakages} times in a row "
                                        f"without finishing a file (last: {reason})")
            # A pool_broken failure is not progress: otherwise a pool that always breaks (a failing
            # initializer) would grind every file into pool_broken instead of stopping.
            yield from self._give_up(BREAKAGES_PER_PATH)
            self.last_completion = time.monotonic()
            try:
                self.executor.replace()
                return
            except BackendBroken as exc:
                self.breakages += 1
                reason = str(exc)

    def _give_up(self, attempts: int) -> Iterator[Result]:
        """Record as pool_broken every queued job caught in at least `attempts` breakages."""
        for job in [j for j in self.queue if j.attempts >= attempts]:
            self.queue.remove(job)
            for source in job.sources:
                yield failure_from(source, self.executor.depth, "pool_broken", BrokenProcessPool(),
                                   f"the worker pool broke {job.attempts} times while this file was in flight")
