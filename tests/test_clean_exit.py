"""`replaycli ingest` returns only once every process it started is gone (real processes)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.processes import alive, descendants

MARK_ENV = "CLEAN_EXIT_MARK"  # set for the CLI only; every process it starts inherits it
EXIT_BUDGET_S = 2.0  # what a Ctrl-C'd run gets to exit, helpers included
SLOW_FILES = 12


def _tagged(mark: str) -> list[str]:
    """Describe every live process whose environment carries MARK_ENV=mark."""
    wanted = f"{MARK_ENV}={mark}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or not alive(int(proc.name)):
            continue
        try:
            if wanted in (proc / "environ").read_bytes().split(b"\0"):
                found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:100]!r}")
        except OSError:  # gone meanwhile
            continue
    return found


def test_nothing_of_replaycli_runs_once_ingest_returns(replaycli, samples: Path, tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    # Not through pipes: the fork server inherits stdout and stderr, so reading them to the end
    # would wait for it to exit and hide what this test looks for.
    proc = replaycli.start("ingest", str(samples), "--db", str(tmp_path / "x.db"), "--workers", "2", "--quiet",
                           env={MARK_ENV: mark}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert proc.wait(timeout=120) == 0
    assert _tagged(mark) == []


def test_nothing_runs_once_an_interrupted_ingest_returns(replaycli, samples: Path, tmp_path: Path) -> None:
    games = sorted(samples.glob("*.SC2Replay"))
    for index in range(SLOW_FILES):
        shutil.copy(games[index % len(games)], tmp_path / f"FAULT-sleep{index:02}.SC2Replay")
    mark = uuid.uuid4().hex
    proc = replaycli.start("ingest", str(tmp_path), "--db", str(tmp_path / "x.db"), "--workers", "2", "--quiet",
                           module="tests.fault_cli", env={MARK_ENV: mark, "FAULT_SLEEP_S": "5"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(descendants(proc.pid)) < 3 and time.monotonic() < deadline:  # fork server + 2 workers
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        assert proc.wait(timeout=30) == 130
        assert time.monotonic() - started < EXIT_BUDGET_S + 3  # + pebble's SIGTERM -> SIGKILL grace
    finally:
        proc.kill()
    assert _tagged(mark) == []
