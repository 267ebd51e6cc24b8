"""The library stays typed (mypy --strict, from pyproject) and lint-clean (ruff, from pyproject)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "ruff", "check", "replay_cli", "tests", "benchmarks", "examples"],
        [sys.executable, "-m", "mypy", "replay_cli"],
    ],
    ids=["ruff", "mypy"],
)
def test_static_checks_pass(command: list[str], repo_root: Path):
    pytest.importorskip(command[2])
    proc = subprocess.run(command, cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
