"""Limits and sizes shared by the CLI, the ingest loop, the worker pool and the async service.

Kept free of heavy imports, so `replaycli --help` can show them without loading sc2reader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_TIMEOUT_S = 30.0  # per file: an order of magnitude above the slowest real replay, so only hangs hit it
DEFAULT_MAX_MEMORY = 1024**3  # RLIMIT_AS per worker: far above any real replay's needs, far below a bomb's
DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # real replays are under 3 MB; bigger is a bomb or not a replay
# A fresh worker costs a process start and its imports: recycle every few hundred files, not every one.
MAX_TASKS_PER_WORKER = 300
WORKERS_ENV = ("REPLAYCLI_WORKERS", "WORKER_PROCESSES")  # the second is the original design's name


def default_workers(environ: Mapping[str, str] = os.environ) -> int:
    """Workers from REPLAYCLI_WORKERS or WORKER_PROCESSES, else CPU count - 1 (at least 1).

    Raises ValueError when the variable is not a whole number.
    """
    for name in WORKERS_ENV:
        value = environ.get(name, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError as exc:
                raise ValueError(f"{name} must be a whole number, not {value!r}") from exc
    return max(1, (os.cpu_count() or 2) - 1)
