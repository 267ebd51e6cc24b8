"""Make every Python process started with this folder on PYTHONPATH look like Windows to replay_cli.

    PYTHONPATH=tests/portable_site python -m pytest tests/test_runner.py tests/test_hardening.py

Python imports `sitecustomize` at start-up, before any test or CLI code, so the test process, the
CLIs it starts (tests/conftest.py keeps this folder on their PYTHONPATH) and their spawned workers
all lack `resource`, `os.pidfd_open`, fork and forkserver. replay_cli then takes the paths those
platforms take: spawned workers, the memory watchdog, the parent watchdog without a pidfd.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

PORTABLE = True  # tests/conftest.py looks for this to keep the simulation in the processes it starts
SPAWN_ONLY = ("spawn",)

try:
    # psutil's Linux build imports `resource` itself (its Windows and macOS builds do not), so it is
    # loaded before `resource` goes: the simulation concerns replay_cli's imports, not psutil's.
    import psutil  # noqa: F401
except ImportError:  # without it the memory cap is off, as it would be on Windows
    pass

sys.modules["resource"] = None  # type: ignore[assignment]  # `import resource` now raises ImportError
if hasattr(os, "pidfd_open"):
    del os.pidfd_open
multiprocessing.get_all_start_methods = lambda: list(SPAWN_ONLY)  # type: ignore[assignment]
