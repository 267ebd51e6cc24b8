"""Test-only fault injection: parse functions with parse_file's signature that misbehave on cue.

The fault is chosen by a word in the file name, so one batch can mix them. This lives under tests/, so production code can never trigger it. Workers import it by
reference (tests.faults), which works because the fork server inherits the test's sys.path.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

from replay_cli.failures import failed_result
from replay_cli.result import Result

HOG_CHUNK_BYTES = 16 * 1024 * 1024
SLEEP_S = 0.3
CRASHED_SUFFIX = ".crashed"  # marker left by a `flaky` file after its first (crashing) attempt
PID_SUFFIX = ".pid"  # where a `pidnote` file's worker writes its pid


def fault_parse(path: str, depth: str = "stats", max_bytes: int = 50 * 1024**2) -> Result:
    """Misbehave according to the file name, else return a plausible ok Result."""
    name = os.path.basename(path)
    if "hang" in name:
        while True:
            pass
    if "segv" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "exit" in name:
        os._exit(3)
    if "memory" in name:
        _exhaust_memory()
    if "selfkill" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "capped" in name:
        return _memory_failure(path, depth)
    if "raise" in name:
        raise ValueError(f"injected failure for {name}\nsecond line")
    if "sleep" in name:
        time.sleep(SLEEP_S)
    if "flaky" in name and not os.path.exists(path + CRASHED_SUFFIX):
        # Crash on the first attempt only: stands in for a neighbour taking this file down.
        open(path + CRASHED_SUFFIX, "w").close()
        os.kill(os.getpid(), signal.SIGSEGV)
    if "pidnote" in name:  # leave the worker's pid beside the file, to tell which worker parsed it
        with open(path + PID_SUFFIX, "w") as note:
            note.write(str(os.getpid()))
    return ok_result(path, depth)


def _memory_failure(path: str, depth: str) -> Result:
    """What parse_file returns when a replay exhausts the worker's memory cap: a `memory` failure."""
    try:
        _exhaust_memory()
    except MemoryError as exc:
        return failed_result(path, "memory", "MemoryError", f"out of memory: {exc}", "parse", depth=depth)
    raise AssertionError("the worker has no memory cap")


def ok_result(path: str, depth: str) -> Result:
    """Build a plausible ok Result for path without reading it."""
    result = failed_result(path, "parse_error", "", "", depth, depth=depth,
                           sha256=hashlib.sha256(path.encode()).hexdigest(), size=0)
    result["status"] = "ok"
    result["error"] = None
    result["depth_reached"] = depth
    return result


def _exhaust_memory() -> None:
    """Allocate until MemoryError (under the worker's RLIMIT_AS), then free and re-raise."""
    hog: list[bytes] = []
    try:
        while True:
            # bytes(n) is calloc'd: RLIMIT_AS counts the address space at once, but the pages are
            # never touched, so this takes milliseconds even on a loaded machine.
            hog.append(bytes(HOG_CHUNK_BYTES))
    except MemoryError:
        hog.clear()  # the traceback keeps this frame alive: free the memory before pickling
        raise


def fault_parse_bytes(data: bytes, depth: str = "stats", source: str | None = None) -> Result:
    """parse_replay's signature: misbehave when the upload's name says so, else parse for real."""
    from replay_cli.parse import parse_replay

    name = source or ""
    if "selfkill" in name:
        os.kill(os.getpid(), signal.SIGKILL)
    if "hang" in name:
        while True:
            pass
    return parse_replay(data, depth, source=source)
