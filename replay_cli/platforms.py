"""What differs between Linux, macOS and Windows for parsing processes, decided in one place.

- The start method: forkserver where it exists (Linux, macOS), spawn elsewhere (Windows).
- The memory cap: RLIMIT_AS where the kernel enforces it, so a decompression bomb becomes a
  MemoryError inside the process that parses it; elsewhere (Windows has no `resource`, macOS
  accepts RLIMIT_AS but never enforces it) a watchdog thread in the parent samples each parsing
  process's resident memory with psutil and kills one past the cap.
- The parent watchdog: a parsing process exits when the CLI is gone, seen through a pidfd where
  the kernel has them, through the spawn parent's sentinel, else by polling.
- The stop signals: Ctrl-C and SIGTERM, plus SIGBREAK on Windows, where the C runtime delivers
  Ctrl-Break and the console window's close event as that signal.

Nothing Unix-only is imported at module top, so this module (and everything importing it)
imports on every platform.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger(__name__)

START_METHOD_ENV = "REPLAYCLI_START_METHOD"  # forkserver or spawn: forces one (spawn tries the portable path here)
MEMORY_CAP_ENV = "REPLAYCLI_MEMORY_CAP"  # rlimit or watchdog: forces one way of capping memory
CAP_RLIMIT = "rlimit"
CAP_WATCHDOG = "watchdog"
CAP_NONE = "none"  # no way to cap here: the watchdog needs psutil, which is an optional extra
# A bomb grows by hundreds of MiB a second: sampling ten times a second stops it within about one
# sample's growth of the cap, and reading a few processes' memory costs well under a millisecond.
WATCHDOG_SAMPLE_S = 0.1
# Opening a replay to read it: O_NONBLOCK so a path swapped for a FIFO cannot hang the open (Unix),
# O_BINARY so the C runtime does not translate line endings in what is read (Windows).
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
PARENT_POLL_S = 0.5  # how often a parsing process checks its parent where nothing can wait on it
# Platforms whose kernel accepts RLIMIT_AS without enforcing it.
RLIMIT_UNENFORCED = ("darwin",)
_told_no_cap = threading.Event()  # the missing-cap warning is given once per process, not per pool


def pool_start_method(environ: Mapping[str, str] = os.environ) -> str:
    """The start method for worker pools: forkserver where it exists, spawn elsewhere.

    forkserver, not fork: the parent has threads (pebble's, the progress bar's), and forking a
    threaded process can copy a lock that some thread held. REPLAYCLI_START_METHOD forces one.
    """
    available = multiprocessing.get_all_start_methods()
    forced = environ.get(START_METHOD_ENV, "").strip()
    if forced in available and forced in ("forkserver", "spawn"):
        return forced
    return "forkserver" if "forkserver" in available else "spawn"


def child_start_method(environ: Mapping[str, str] = os.environ) -> str:
    """The start method for one bounded parse: fork where it exists (the parser is already imported)."""
    if environ.get(START_METHOD_ENV, "").strip() == "spawn":
        return "spawn"
    return "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def memory_cap_mode(environ: Mapping[str, str] = os.environ) -> str:
    """How parsing processes are held to their memory cap here: rlimit, watchdog or none."""
    forced = environ.get(MEMORY_CAP_ENV, "").strip().lower()
    if forced == CAP_RLIMIT and _has_resource():
        return CAP_RLIMIT
    if forced != CAP_WATCHDOG and _has_resource() and sys.platform not in RLIMIT_UNENFORCED:
        return CAP_RLIMIT
    if _has_psutil():
        return CAP_WATCHDOG
    if not _told_no_cap.is_set():
        _told_no_cap.set()
        log.warning("the per-process memory cap is not enforced on this platform without psutil: "
                    "install replaycli[memory]")
    return CAP_NONE


def _has_resource() -> bool:
    try:
        import resource  # noqa: F401  # Unix only
    except ImportError:
        return False
    return True


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401  # the optional `memory` extra
    except ImportError:
        return False
    return True


def cap_address_space(max_memory: int | None) -> bool:
    """Cap this process's address space at max_memory bytes (never above the hard limit).

    Returns whether a cap is in force; None or 0 means no cap, and so does a missing `resource`.
    """
    if not max_memory:
        return False
    try:
        import resource
    except ImportError:
        return False
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return True


class MemoryWatchdog:
    """A thread in the parent that kills any process named by pids() whose resident memory passes the cap.

    killed() tells which pids it killed, so their deaths are classified `memory`, as a MemoryError
    under RLIMIT_AS would be. Needs psutil; start() raises ImportError without it.
    """

    def __init__(self, max_memory: int, pids: Callable[[], Iterable[int]],
                 sample_s: float = WATCHDOG_SAMPLE_S) -> None:
        self.max_memory, self.pids, self.sample_s = max_memory, pids, sample_s
        self._killed: set[int] = set()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MemoryWatchdog:
        import psutil  # noqa: F401  # fail here, in the caller, rather than in the thread

        self._thread = threading.Thread(target=self._run, name="replaycli-memory-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def killed(self, pid: int | None) -> bool:
        """Whether this watchdog killed the process pid for its memory."""
        return pid is not None and pid in self._killed

    def check(self) -> None:
        """Sample every process once and kill those past the cap."""
        import psutil

        for pid in list(self.pids()):
            try:
                process = psutil.Process(pid)
                if process.memory_info().rss > self.max_memory:
                    self._killed.add(pid)  # before the kill, so the death is never seen unexplained
                    process.kill()
            except psutil.Error:  # gone already, or not ours to read
                continue

    def _run(self) -> None:
        while not self._done.wait(self.sample_s):
            try:
                self.check()
            except Exception as exc:  # a failed sample must not end the watchdog
                log.debug("memory watchdog sample failed: %s: %s", type(exc).__name__, exc)


def start_parent_watchdog(parent_pid: int) -> None:
    """Start a daemon thread that ends this process as soon as parent_pid is gone."""
    threading.Thread(target=watch_parent, args=(parent_pid,), name="replaycli-watchdog", daemon=True).start()


def watch_parent(parent_pid: int) -> None:
    """Return never: exit this process (status 1) once parent_pid is gone.

    Under forkserver a worker's parent is the fork server, so neither PR_SET_PDEATHSIG nor the
    spawn sentinel can help: a pidfd (Linux >= 5.3) or polling watches the CLI itself.
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None:
        try:
            pidfd = pidfd_open(parent_pid)
        except ProcessLookupError:
            os._exit(1)
        except OSError:  # an older kernel or a sandbox: fall through to the portable ways
            pass
        else:
            select.select([pidfd], [], [])
            os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid == parent_pid and parent.sentinel is not None:
        # Under spawn: a pipe on Unix, the parent's process handle on Windows; ready once it exits.
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)
    if os.name != "posix":  # os.kill(pid, 0) would terminate the parent on Windows
        log.debug("no way to watch process %d here", parent_pid)
        return
    _poll_parent(parent_pid)


def _poll_parent(parent_pid: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # the pid was reused by someone else: our parent is gone
            os._exit(1)


def stop_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a run to stop: Ctrl-C and SIGTERM, and SIGBREAK where it exists (Windows)."""
    found = [signal.SIGINT, signal.SIGTERM]
    sigbreak = getattr(signal, "SIGBREAK", None)
    if sigbreak is not None:
        found.append(sigbreak)
    return tuple(found)


def ignore_stop_signals() -> None:
    """Leave Ctrl-C (and Ctrl-Break, the console close event) to the parent, which stops the pool."""
    for signum in stop_signals():
        if signum != signal.SIGTERM:  # SIGTERM is how a pool stops its workers
            signal.signal(signum, signal.SIG_IGN)
