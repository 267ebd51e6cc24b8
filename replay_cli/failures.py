"""Failure results: the one shape every classified failure takes, wherever it was decided.

The worker, the file reader, the pool, the cluster backend and the async service all build
their failures here, so a `failed` row reads the same whoever noticed the problem.
"""

from __future__ import annotations

import os
import signal
import stat

from replay_cli import __version__
from replay_cli.result import DEFAULT_DEPTH, SCHEMA_VERSION, STATUS_FAILED, Result

MAX_MESSAGE_CHARS = 300


def one_line(text: str) -> str:
    """Collapse whitespace and cap the length of an error message (ErrorInfo.message)."""
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def exception_line(exc: BaseException) -> str:
    """Return a one-line message for an exception; sc2reader wraps its cause as a second arg."""
    args = exc.args
    if len(args) == 2 and isinstance(args[1], BaseException):
        return one_line(f"{args[0]}: {type(args[1]).__name__}: {args[1]}")
    return one_line(str(exc) or type(exc).__name__)


def failed_result(
    source: str | None,
    kind: str,
    error_type: str,
    message: str,
    stage: str,
    *,
    depth: str = DEFAULT_DEPTH,
    sha256: str | None = None,
    size: int | None = None,
    seconds: float = 0.0,
    release: str | None = None,
) -> Result:
    """Build a failure Result (also used by the runner for timeouts and crashed workers)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "status": STATUS_FAILED,
        "sha256": sha256,
        "source": source,
        "size": size,
        "depth_requested": depth,
        "depth_reached": None,
        "parse_seconds": round(seconds, 4),
        "cpu_seconds": 0.0,
        "peak_rss_bytes": None,
        "peak_rss_scope": None,
        "parser": {"replaycli": __version__},
        "error": {"kind": kind, "type": error_type, "message": message, "stage": stage, "release": release},
        "quality": None,
        "replay": None,
        "players": [],
        "chat": [],
        "build_order": [],
        "player_stats": [],
    }


def failure_from(source: str | None, depth: str, kind: str, exc: BaseException, message: str) -> Result:
    """Build the failure Result for a file whose parse ended outside parse_replay (timeout, crash, pool).

    The stage is the requested depth: whoever saw the worker die cannot tell how far it got.
    """
    return failed_result(source, kind, type(exc).__name__, one_line(message) or type(exc).__name__, depth,
                         depth=depth)


def unreadable_result(path: str, exc: OSError) -> Result:
    """The failure for a path that cannot be stat'ed or read (missing, permissions, I/O)."""
    return failed_result(path, "unreadable", type(exc).__name__, exception_line(exc), "read")


def not_regular_result(path: str, info: os.stat_result) -> Result | None:
    """The failure for a directory, FIFO, device or socket, decided from stat() alone; None for a file."""
    if stat.S_ISREG(info.st_mode):
        return None
    return failed_result(path, "not_regular_file", "NotRegularFile",
                         f"not a regular file (mode {stat.filemode(info.st_mode)})", "read")


def describe_exit(exitcode: int | None, who: str = "worker") -> str:
    """Name the signal or exit code that ended a process that was parsing."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"{who} killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"{who} killed by signal {-exitcode}"
    return f"{who} exited with code {exitcode}"
