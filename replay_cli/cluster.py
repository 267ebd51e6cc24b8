"""Run the one parse function on a Dask cluster: `--scheduler tcp://host:8786`.

DaskExecutor is a backend.Executor: files travel in batches (one Dask task per batch, because each
task has a fixed scheduling cost), a failed batch is split into single files, and a file that
kills its worker is confirmed alone. Dask re-runs the tasks of a lost worker itself, and has no
per-task timeout, so a soft deadline runs inside each task. local_cluster starts a LocalCluster
with the periodic work a replay batch has no use for turned down. Dask is an optional extra and is
imported only inside functions, so importing this module (and `replaycli --help`) stays fast.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import copy
import ctypes
import functools
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from replay_cli.backend import Executor, Job, ParseBackend, ReplayBytes, Settled, StopCheck, run_jobs
from replay_cli.defaults import DEFAULT_MAX_BYTES
from replay_cli.errors import PoolUnrecoverable, ReplayCliError
from replay_cli.failures import failed_result, failure_from, one_line
from replay_cli.filters import IngestFilters
from replay_cli.parse import parse_file, parse_replay
from replay_cli.readfile import read_replay_file
from replay_cli.result import Result

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

log = logging.getLogger(__name__)

Item = tuple[str, "bytes | None"]  # (path, its bytes), bytes None when workers read a shared filesystem
BatchTask = Callable[[list[Item], str, int, float], list[Result]]

INSTALL_HINT = 'pip install "replaycli[cluster]"'
# One Dask task costs 7-9 ms of CPU across client, scheduler and worker, more than a parse at depth
# summary: 64 files per task bring that to about 0.1 ms per file, and a run of more than 64 files
# still gives both workers of a 2-worker cluster a batch.
DEFAULT_BATCH_SIZE = 64
# A batch also closes at this many bytes of replay data, so the batches in flight hold a bounded
# amount of memory on both sides whatever the batch size (replays are under 3 MB, most under 0.2 MB).
BATCH_MAX_BYTES = 32 * 1024 * 1024
IN_FLIGHT_PER_THREAD = 2  # batches in flight per worker thread: one running, one queued behind it
MIN_WINDOW = 2
# A `dask worker` takes a few seconds to register: wait this long for the first one.
WORKER_WAIT_S = 30
CONNECT_TIMEOUT_S = 10  # Client() otherwise waits distributed.comm.timeouts.connect (30 s)
REFIRE_S = 1.0  # re-raise the deadline if the parse swallowed it (a bare `except:` in sc2reader)
QUIET_LOGGERS = ("distributed", "tornado", "bokeh")
# Periodic callbacks that every scheduler, nanny and worker runs, busy or idle, at intervals meant
# for interactive arrays and dataframes; a 2-worker LocalCluster spent about 0.1 CPU-second per
# second on them, busy or idle (0.015 with these settings). Set only for clusters local_cluster
# starts: a cluster reached by address keeps its own configuration.
LOCAL_CLUSTER_CONFIG: dict[str, object] = {
    "distributed.worker.profile.enabled": False,  # samples each task thread's stack every 10 ms
    "distributed.admin.tick.interval": "1s",  # event-loop health check, every 20 ms otherwise
    "distributed.admin.system-monitor.interval": "5s",  # psutil host samples, every 500 ms otherwise
    "distributed.worker.memory.monitor-interval": "1s",  # memory thresholds, every 100 ms otherwise
}


class ParseDeadline(BaseException):
    """Raised inside a task thread when its file overran the soft deadline.

    A BaseException so that parse_replay's `except Exception` worker boundary does not swallow it.
    """


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S) -> Client:
    """Connect to the Dask scheduler at address.

    Raises ReplayCliError when distributed is not installed or the scheduler cannot be reached.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ReplayCliError(f"--scheduler needs the cluster extra: {INSTALL_HINT}") from exc
    quiet_dask()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            client = Client(address, timeout=timeout, set_as_default=False)  # type: ignore[no-untyped-call]
        except Exception as exc:  # OSError, TimeoutError, ValueError for a bad address...
            message = one_line(str(exc)) or type(exc).__name__
            raise ReplayCliError(f"cannot connect to the Dask scheduler at {address}: {message}") from exc
    for warning in caught:  # e.g. the dask-stack VersionMismatchWarning: to the log, not the terminal
        log.warning("dask: %s", " ".join(str(warning.message).split()))
    return client


def quiet_dask() -> None:
    """Keep Dask's log lines and warnings off stderr, where they would tear the progress bar."""
    import dask

    # Importing distributed installs a stderr StreamHandler and sets levels on child loggers.
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in QUIET_LOGGERS:
            logger = logging.getLogger(name)
            logger.setLevel(logging.ERROR)
            for handler in [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]:
                logger.removeHandler(handler)
    # A NullHandler stops logging's last-resort stderr handler; errors still propagate to the root,
    # so a log file configured by the CLI keeps them.
    logging.getLogger("distributed").addHandler(logging.NullHandler())
    # Bytes travel inside the task, so every batch would warn "Sending large graph".
    dask.config.set({"distributed.admin.large-graph-warning-threshold": "1 PiB"})
    warnings.filterwarnings("ignore", module=r"(distributed|dask|tornado)(\..*)?$")


def local_cluster(workers: int) -> LocalCluster:
    """Start a LocalCluster of `workers` single-threaded worker processes for replay batches.

    Each worker has a nanny, which replaces it when a poison file kills it; no dashboard.
    """
    import dask
    from distributed import LocalCluster

    quiet_dask()
    # The scheduler and nannies read these as they start; nothing outside this cluster sees them.
    with dask.config.set(LOCAL_CLUSTER_CONFIG):
        # A nanny hands its configuration to every worker it starts, replacements for killed ones
        # too; its default is a shallow copy of the global one, which this block restores on exit.
        worker_config = copy.deepcopy(dask.config.config)
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,  # type: ignore[no-untyped-call]
                            host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                            config=worker_config)


def replaycli_version() -> str:
    """Return the replay_cli version installed where this runs (a worker or the scheduler)."""
    import replay_cli

    return replay_cli.__version__


def wait_for_workers(client: Client, within_s: float = WORKER_WAIT_S) -> None:
    """Give workers that are still starting a moment; a cluster with none after that is an error."""
    try:
        client.wait_for_workers(n_workers=1, timeout=within_s)
    except (TimeoutError, OSError) as exc:
        raise ReplayCliError(f"the Dask cluster has no workers after {within_s:g} s; start some with: "
                             "dask worker <scheduler address>") from exc


def check_versions(client: Client) -> None:
    """Refuse a cluster whose scheduler or workers run another replay_cli; raise ReplayCliError."""
    ours = replaycli_version()
    # A worker without replay_cli cannot even unpickle the function: on_error="return" names it.
    found: dict[str, object] = dict(client.run(replaycli_version, on_error="return"))
    if not found:
        raise ReplayCliError("the Dask cluster has no workers; start some with: dask worker <scheduler address>")
    try:
        found["scheduler"] = client.run_on_scheduler(replaycli_version)  # type: ignore[no-untyped-call]
    except Exception as exc:  # the scheduler unpickles the task graph too, so it needs replay_cli
        found["scheduler"] = exc
    differ = {where: v if isinstance(v, str) else f"not installed ({type(v).__name__})"
              for where, v in found.items() if v != ours}
    if differ:
        listed = ", ".join(f"{where} has {version}" for where, version in sorted(differ.items()))
        raise ReplayCliError(f"replay_cli version mismatch: this client runs {ours} but {listed}; "
                             f"install replaycli[cluster]=={ours} on the scheduler and every worker")


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise exc in another thread at its next bytecode; None (NULL) clears a pending one."""
    # None must go in as a NULL pointer: py_object(None) would set Py_None and raise a TypeError.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               ctypes.py_object(exc) if exc is not None else None)


class SoftDeadline:
    """Raise ParseDeadline in the thread that made it when a start()..finish() span overruns `seconds`.

    Dask runs tasks in worker threads and has no per-task timeout (dask/distributed#391), so a
    watcher thread raises an async exception instead; it cannot interrupt a long C call. One
    watcher serves every span of a batch: a thread started per file cost about 0.2 ms of CPU, as
    much as the rest of Dask's per-file overhead. close() ends the watcher.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds, self.thread_id = seconds, threading.get_ident()
        self.lock = threading.Lock()
        self.wakeup = threading.Condition(self.lock)
        self.expires: float | None = None  # when the current span overruns; None between spans
        self.fired = self.closed = False
        self.watcher: threading.Thread | None = None

    def start(self) -> None:
        if self.seconds <= 0:
            return
        with self.lock:
            self.expires, self.fired = time.monotonic() + self.seconds, False
            if self.watcher is None:
                self.watcher = threading.Thread(target=self._watch, name="replaycli-soft-deadline", daemon=True)
                self.watcher.start()
            self.wakeup.notify()

    def _watch(self) -> None:
        with self.lock:
            while not self.closed:
                now = time.monotonic()
                if self.expires is None or now < self.expires:
                    # Bounded even between spans, so a lost wake-up delays a deadline, never drops it.
                    self.wakeup.wait(self.seconds if self.expires is None else self.expires - now)
                    continue
                # Under the lock with a span open, finish() has not run: no exception is set after it.
                self.fired = True
                _set_async_exc(self.thread_id, ParseDeadline)
                self.expires = now + REFIRE_S  # re-raise if the parse swallowed it

    def finish(self) -> None:
        """End the span; clear an exception the watcher set but the thread has not raised yet. Idempotent."""
        with self.lock:
            self.expires = None
            if self.fired:
                _set_async_exc(self.thread_id, None)

    def close(self) -> None:
        """Finish the span and stop the watcher."""
        self.finish()
        with self.lock:
            self.closed = True
            self.wakeup.notify()


def parse_with_deadline(source: str, work: Callable[[], Result], depth: str, deadline_s: float,
                        guard: SoftDeadline | None = None) -> Result:
    """Run work() under a soft deadline; an overrun becomes a "timeout" failure Result for source.

    guard (made by this thread for deadline_s) lets a batch share one watcher; without it one is made here.
    """
    if guard is None:
        with contextlib.closing(SoftDeadline(deadline_s)) as own:
            return parse_with_deadline(source, work, depth, deadline_s, own)
    started = time.perf_counter()
    result: Result | None = None
    try:
        guard.start()
        try:
            result = work()
        finally:
            guard.finish()
    except ParseDeadline:
        # ParseDeadline may arrive anywhere before finish() clears it, even inside finish() itself:
        # finish again (re-fires are REFIRE_S apart), and keep a result that did complete.
        guard.finish()
    if result is not None:
        return result
    return failed_result(source, "timeout", "ParseDeadline",
                         f"parse took longer than {deadline_s:g} s; stopped by the soft deadline", depth,
                         depth=depth, seconds=time.perf_counter() - started)


def _parse_item(path: str, data: bytes | None, depth: str, max_bytes: int, filters: IngestFilters | None) -> Result:
    """Parse shipped bytes, or read the file here when the workers share the filesystem."""
    if data is None:
        return parse_file(path, depth, max_bytes, filters=filters)
    return parse_replay(data, depth, source=path, filters=filters)


def parse_batch(items: list[Item], depth: str, max_bytes: int, deadline_s: float,
                filters: IngestFilters | None = None) -> list[Result]:
    """Parse each (path, bytes | None) item on a Dask worker; one Result per item, in order."""
    with contextlib.closing(SoftDeadline(deadline_s)) as guard:
        return [parse_with_deadline(path, functools.partial(_parse_item, path, data, depth, max_bytes, filters),
                                    depth, deadline_s, guard)
                for path, data in items]


class DaskExecutor(Executor):
    """Parse batches of files on a Dask cluster; a failed batch is split, a poison file isolated."""

    def __init__(self, client: Client, *, depth: str, timeout: float | None, max_bytes: int, batch_size: int,
                 shared_fs: bool, window: int | None, task: BatchTask, batch_max_bytes: int = BATCH_MAX_BYTES) -> None:
        self.client, self.depth, self.max_bytes, self.task = client, depth, max_bytes, task
        self.deadline_s, self.batch_size, self.shared_fs = float(timeout or 0), max(1, batch_size), shared_fs
        self.batch_max_bytes = batch_max_bytes
        # Real cf.Futures, whose cancel() reaches the scheduler.
        self.executor = client.get_executor(pure=False)  # type: ignore[no-untyped-call]
        threads = sum(client.nthreads().values())  # type: ignore[no-untyped-call]
        self.window = window or max(MIN_WINDOW, IN_FLIGHT_PER_THREAD * threads)

    def jobs(self, paths: Iterator[str | ReplayBytes]) -> Iterator[Job | Result]:
        """Batch the items by count and by bytes; read each path here unless the workers share the filesystem."""
        batch: list[Item] = []
        batch_bytes = 0
        for item in paths:
            data: bytes | Result | None
            if isinstance(item, ReplayBytes):  # a pack member, read already: no worker could open it alone
                path, data = item.source, item.data
            else:
                path, data = item, None if self.shared_fs else read_replay_file(item, self.max_bytes)
            if isinstance(data, dict):  # a read failure: decided here, without a task
                data["depth_requested"] = self.depth
                yield data
                continue
            batch.append((path, data))
            batch_bytes += len(data) if data is not None else 0
            if len(batch) == self.batch_size or batch_bytes >= self.batch_max_bytes:
                yield _batch_job(batch)
                batch, batch_bytes = [], 0
        if batch:
            yield _batch_job(batch)

    def submit(self, job: Job) -> cf.Future[Any]:
        future: cf.Future[Any] = self.executor.submit(self.task, job.payload, self.depth, self.max_bytes,
                                                      self.deadline_s)
        return future

    def settle(self, future: cf.Future[Any], job: Job) -> Settled:
        from distributed import KilledWorker

        exc = future.exception() if not future.cancelled() else cf.CancelledError()
        if exc is None:
            return Settled(list(future.result()))
        if isinstance(exc, cf.CancelledError):  # we cancel only on stop: the scheduler is gone
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise PoolUnrecoverable(f"the Dask cluster dropped a task (is the scheduler gone?): {reason}")
        if len(job.sources) > 1:
            # Isolate: a poison file fails alone and its neighbours still parse.
            log.warning("a batch of %d files failed (%s); re-running them one per task", len(job.sources),
                        type(exc).__name__)
            return Settled(retry=[_batch_job([item]) for item in job.payload])
        path = job.sources[0]
        if isinstance(exc, KilledWorker):
            crash = failure_from(path, self.depth, "worker_crash", exc, "killed every worker it ran on, alone")
            # An innocent file queued on a worker that a poison file keeps killing gets KilledWorker
            # too: only a file that kills its worker with nothing else in flight is the culprit.
            return Settled([crash]) if job.alone else Settled(suspects=[(job, crash)])
        return Settled([failure_from(path, self.depth, "parse_error", exc, str(exc))])

    def close(self, abandoned: list[cf.Future[Any]]) -> None:
        for future in abandoned:  # stop or error: nothing more runs for us
            future.cancel()
        self.executor.shutdown(wait=False)


def _batch_job(items: list[Item]) -> Job:
    return Job(items, tuple(path for path, _data in items))


def cluster_backend(client: Client, *, depth: str, timeout: float | None, max_bytes: int = DEFAULT_MAX_BYTES,
                    batch_size: int = DEFAULT_BATCH_SIZE, shared_fs: bool = False, window: int | None = None,
                    task: BatchTask = parse_batch, batch_max_bytes: int = BATCH_MAX_BYTES) -> ParseBackend:
    """Return a ParseBackend that parses batches of files on the cluster behind client.

    `task` exists for fault-injection tests; production always runs parse_batch.
    """

    def run(paths: Iterator[str | ReplayBytes], should_stop: StopCheck) -> Iterator[Result | None]:
        executor = DaskExecutor(client, depth=depth, timeout=timeout, max_bytes=max_bytes, batch_size=batch_size,
                                shared_fs=shared_fs, window=window, task=task, batch_max_bytes=batch_max_bytes)
        return run_jobs(executor, paths, should_stop)

    return run


@contextlib.contextmanager
def cluster_session(address: str, *, depth: str, timeout: float | None, max_bytes: int = DEFAULT_MAX_BYTES,
                    batch_size: int = DEFAULT_BATCH_SIZE, shared_fs: bool = False,
                    filters: IngestFilters | None = None) -> Iterator[ParseBackend]:
    """Connect, refuse mismatched versions, yield the backend, and always disconnect.

    Raises ReplayCliError when Dask is missing, the scheduler is unreachable or versions differ.
    """
    client = connect(address)
    try:
        wait_for_workers(client)
        check_versions(client)
        task = functools.partial(parse_batch, filters=filters) if filters is not None else parse_batch
        yield cluster_backend(client, depth=depth, timeout=timeout, max_bytes=max_bytes, batch_size=batch_size,
                              shared_fs=shared_fs, task=task)
    finally:
        client.close()  # type: ignore[no-untyped-call]
