"""Exit codes: part of the command line's contract (README "Exit codes"), defined once.

The CLI exits with them; the run report (report.Tally) records the one a run ends with.
"""

from __future__ import annotations

import signal

EXIT_OK = 0  # every input stored or skipped
EXIT_SOME_FAILED = 1  # some inputs failed; everything else is stored and committed
EXIT_FATAL = 3  # the run itself could not proceed (database unwritable, worker pool unrecoverable)
EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # interrupted, after committing finished files


def exit_code_for_signal(signum: int) -> int:
    """Return the exit code of a run stopped by signum (the shell's 128 + N convention)."""
    return EXIT_BY_SIGNAL.get(signal.Signals(signum), 128 + signum)
