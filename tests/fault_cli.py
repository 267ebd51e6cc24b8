"""Test-only entry point: the real `replaycli` command line with a fault-injecting parse function.

    python -m tests.fault_cli ingest --db x.db ...      (cwd: the repository root)

Run it through the `replaycli` fixture of tests/conftest.py, which starts it from the repository
root with that root on PYTHONPATH: the fork server inherits sys.path, so workers import this module.

Everything is the production CLI (click command, StopSignals, pebble pool, watchdog, SQLite store)
except the per-file parse function: `replay_cli.ingest.ingest_paths` is wrapped so that it receives
`parse_fn=fault_parse`. This file lives under tests/, so production code can never trigger it.

Faults are chosen by the file NAME, and only after the marker `FAULT-` (real corpus names such as
"Shanghai" must not trigger anything). Every other file is parsed by the real `parse_file`.

    FAULT-sleep...     sleep FAULT_SLEEP_S (default 0.5) s, then parse for real (garbage -> failed)
    FAULT-raise...     raise ValueError (a parse_error naming the file)
    FAULT-hang...      loop forever when "hang" is listed in env FAULT_HANG, else behave like sleep
    FAULT-stubborn...  like hang, and also ignore SIGTERM (so pebble's stop() needs its 3 s SIGKILL
                       escalation) when "stubborn" is listed in FAULT_HANG
    FAULT-unstorable...  parse for real, then put a value SQLite cannot bind into the result (what a
                       bug in the worker's bounds would let through), to exercise the writer's defence

FAULT_HANG lets one input set hang in an interrupted run and complete in the re-run, so the re-run
can be compared with an uninterrupted run over the very same inputs.

tests/faults.py was not reused for the ok path: its ok_result has no replay, which the store rejects.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import time

MARK = "FAULT-"
HANG_ENV = "FAULT_HANG"
SLEEP_ENV = "FAULT_SLEEP_S"
DEFAULT_SLEEP_S = 0.5


def _hanging(fault: str) -> bool:
    active = {word.strip() for word in os.environ.get(HANG_ENV, "").split(",")}
    return any(fault.startswith(word) for word in active if word)


def fault_parse(path: str, depth: str = "stats", max_bytes: int = 50 * 1024**2):  # -> Result
    """Misbehave according to the part of the file name after FAULT-, else parse for real."""
    from replay_cli.parse import parse_file

    name = os.path.basename(path)
    if MARK in name:
        fault = name.split(MARK, 1)[1]
        if fault.startswith("raise"):
            raise ValueError(f"injected failure for {name}")
        if fault.startswith(("hang", "stubborn")) and _hanging(fault):
            if fault.startswith("stubborn"):
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                pass
        if fault.startswith(("sleep", "hang", "stubborn")):
            time.sleep(float(os.environ.get(SLEEP_ENV, DEFAULT_SLEEP_S)))
        if fault.startswith("unstorable"):
            result = parse_file(path, depth, max_bytes)
            if result["replay"] is not None:
                result["replay"]["game_loops"] = 2**64
            return result
    return parse_file(path, depth, max_bytes)


def main(argv: list[str] | None = None) -> None:
    import replay_cli.ingest as ingest_module
    from replay_cli.cli import cli

    # Under `python -m` this file is __main__, which forkserver workers cannot unpickle a function
    # from: hand the pool the same function under its importable name.
    this = importlib.import_module("tests.fault_cli")
    ingest_module.ingest_paths = functools.partial(ingest_module.ingest_paths, parse_fn=this.fault_parse)
    cli.main(args=argv, prog_name="replaycli")


if __name__ == "__main__":
    main()
