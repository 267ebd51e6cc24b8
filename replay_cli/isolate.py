"""Run one parse in a child process with a deadline and a memory cap: `replaycli parse` on hostile files.

`ingest` bounds every file through its worker pool. A one-file `parse` must be bounded just as
well (a CI job parsing uploads is where bombs arrive) without paying for a pool: the child is a
plain fork of this process, which has already imported the parser, so starting it costs
milliseconds. The child caps its own address space (or, where RLIMIT_AS is not enforced, the
parent's memory watchdog kills it past the cap); the parent waits up to the deadline and kills the
child past it, which ends even a parse stuck inside C code. Where fork is missing (Windows) the
child is spawned instead: slower to start, bounded the same way.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, BinaryIO

from replay_cli.failures import describe_exit, failed_result, one_line
from replay_cli.platforms import (
    CAP_RLIMIT,
    CAP_WATCHDOG,
    MemoryWatchdog,
    cap_address_space,
    child_start_method,
    ignore_stop_signals,
    memory_cap_mode,
)
from replay_cli.result import Result

JOIN_S = 2.0  # after a kill, how long to wait for the child to be reaped


def _child(send: Connection, function: Callable[..., Result], args: tuple[Any, ...],
           kwargs: dict[str, Any], max_memory: int | None, source: str | None, depth: str) -> None:
    """Cap memory, run the parse function and send back its result (it never raises for a bad replay)."""
    ignore_stop_signals()  # Ctrl-C is the parent's to handle
    cap_address_space(max_memory)
    try:
        result = function(*args, **kwargs)
    except MemoryError as exc:  # past the parse function's own boundary: still this file's failure
        result = failed_result(source, "memory", "MemoryError", one_line(f"out of memory: {exc}"), "read",
                               depth=depth)
    send.send(result)
    send.close()


def run_isolated(function: Callable[..., Result], args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 source: str | None, depth: str, timeout: float | None, max_memory: int | None) -> Result:
    """Return function(*args, **kwargs) as run in a capped child; a timeout or a dead child is a failure."""
    context = multiprocessing.get_context(child_start_method())
    mode = memory_cap_mode() if max_memory else None
    receive, send = context.Pipe(duplex=False)
    child = context.Process(  # type: ignore[attr-defined]  # every concrete context has Process
        target=_child, args=(send, function, args, kwargs, max_memory if mode == CAP_RLIMIT else None, source, depth),
        daemon=True)
    child.start()
    send.close()
    watchdog = None
    if mode == CAP_WATCHDOG and max_memory:
        watchdog = MemoryWatchdog(max_memory, lambda: [child.pid]).start()
    try:
        if receive.poll(timeout if timeout and timeout > 0 else None):
            try:
                return receive.recv()  # type: ignore[no-any-return]
            except EOFError:  # the child died before it could answer
                pass
        else:
            child.kill()
            return _failure(source, depth, "timeout", "ParseTimeout",
                            f"parse took longer than {timeout:g} s; the parsing process was killed")
    finally:
        receive.close()
        child.join(JOIN_S)
        if watchdog is not None:
            watchdog.stop()
    if watchdog is not None and watchdog.killed(child.pid):
        return _failure(source, depth, "memory", "MemoryError",
                        f"out of memory under the cap: past {max_memory} bytes resident; the parsing process was killed")
    return _failure(source, depth, "worker_crash", "ProcessExpired", describe_exit(child.exitcode, "the parsing process"))


def _failure(source: str | None, depth: str, kind: str, error_type: str, message: str) -> Result:
    return failed_result(source, kind, error_type, message, depth, depth=depth)


def parse_bounded(name: str, stdin: BinaryIO | None, depth: str, *, timeout: float | None,
                  max_memory: int | None, max_bytes: int) -> Result:
    """Parse the file `name`, or the bytes on `stdin` (read here, never past the cap), in a capped child."""
    from replay_cli.parse import parse_file, parse_replay, preload

    preload(depth)  # a forked child inherits sc2reader imported and its engine built
    bounds: dict[str, Any] = {"source": name, "depth": depth, "timeout": timeout, "max_memory": max_memory}
    if stdin is None:
        return run_isolated(parse_file, (name, depth, max_bytes), {}, **bounds)
    data = stdin.read(max_bytes + 1)
    if len(data) > max_bytes:
        return failed_result(name, "too_large", "FileTooLarge", f"stdin is over the {max_bytes}-byte cap", "read",
                             depth=depth, size=len(data))
    return run_isolated(parse_replay, (data, depth), {"source": name}, **bounds)
