"""Ctrl-C and SIGTERM (and Ctrl-Break on Windows) for the command line: the first asks the run to stop,
a second one exits at once."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

from replay_cli.exitcodes import exit_code_for_signal
from replay_cli.platforms import stop_signals


class StopSignals:
    """Turn the first stop signal (platforms.stop_signals) into a stop request; a second one exits at once.

    The handler only records the signal: the run loop sees it within one tick, stops the pool once
    and commits what is finished. Raising into the loop instead would interrupt cleanup half-way
    and print a traceback. Calling the object returns the signal number, or None before any.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in stop_signals():
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            # Second signal: the database is consistent at every commit boundary, so leave now.
            os._exit(exit_code_for_signal(signum))
        self.signum = signum

    def __call__(self) -> int | None:
        return self.signum
