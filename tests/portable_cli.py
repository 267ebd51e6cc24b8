"""Test-only entry point: the real `replaycli` as on a platform with spawn only, no `resource` and no pidfd.

    python -m tests.portable_cli ingest --db x.db ...      (cwd: the repository root)

Windows has neither `resource` nor `os.pidfd_open`, and neither fork nor forkserver; macOS has no
pidfd. This module takes all three away in-process before replay_cli is imported, then runs the
production CLI unchanged, so the portable code paths (spawned workers, the memory watchdog, the
parent watchdog without a pidfd) run on Linux. Spawned workers import this module as their main
module, so they lack the same things.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

# psutil's Linux build imports `resource` itself (its Windows and macOS builds do not), so it is
# loaded before `resource` goes: the simulation concerns replay_cli's imports, not psutil's.
import psutil  # noqa: F401

SPAWN_ONLY = ("spawn",)

sys.modules["resource"] = None  # type: ignore[assignment]  # `import resource` now raises ImportError
if hasattr(os, "pidfd_open"):
    del os.pidfd_open
multiprocessing.get_all_start_methods = lambda: list(SPAWN_ONLY)  # type: ignore[assignment]

if __name__ == "__main__":
    from replay_cli.cli import cli

    cli(prog_name="replaycli")
