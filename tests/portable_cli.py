"""Test-only entry point: the real `replaycli` as on a platform with spawn only, no `resource` and no pidfd.

    python -m tests.portable_cli ingest --db x.db ...      (cwd: the repository root)

Windows has neither `resource` nor `os.pidfd_open`, and neither fork nor forkserver; macOS has no
pidfd. tests/portable_site/sitecustomize.py takes all three away in-process before replay_cli is
imported, then this runs the production CLI unchanged, so the portable code paths (spawned
workers, the memory watchdog, the parent watchdog without a pidfd) run on Linux. Spawned workers
import this module as their main module, so they lack the same things.
"""

from __future__ import annotations

import tests.portable_site.sitecustomize  # noqa: F401  # the simulation, before replay_cli is imported

if __name__ == "__main__":
    from replay_cli.cli import cli

    cli(prog_name="replaycli")
