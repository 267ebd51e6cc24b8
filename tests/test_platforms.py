"""The portable code paths, run on Linux: no `resource`, no pidfd, spawn only, the memory watchdog.

Windows and macOS machines are not available to this suite, so what differs there is taken away
in-process (tests/portable_cli.py) and the real CLI runs through the paths those platforms take:
spawned workers, the memory watchdog instead of RLIMIT_AS, the parent watchdog without a pidfd.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from replay_cli import platforms
from tests.test_parse_bounds import CAP_MIB, _big_game, _game_events_bomb

PORTABLE = "tests.portable_cli"
GONE_DEADLINE_S = 3.0  # the parent watchdog polls twice a second; spawned workers see a pipe close
STOP_DEADLINE_S = 5.0
# What a platform without Unix's modules looks like, done before any replay_cli import.
WITHOUT_UNIX = (
    "import multiprocessing, os, sys; sys.modules['resource'] = None; "
    "os.__dict__.pop('pidfd_open', None); multiprocessing.get_all_start_methods = lambda: ['spawn']; "
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="simulates the other platforms on Linux")


def _files(db: Path) -> dict[str, tuple[str, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, status, error_kind FROM files").fetchall()
    return {Path(path).name: (status, kind) for path, status, kind in rows}


def test_everything_imports_without_resource_pidfd_or_forkserver(repo_root: Path) -> None:
    code = WITHOUT_UNIX + (
        "import replay_cli.cli, replay_cli.service, replay_cli.runner, replay_cli.isolate; "
        "from replay_cli import platforms; "
        "print(platforms.pool_start_method(), platforms.child_start_method(), platforms.cap_address_space(1 << 30))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["spawn", "spawn", "False"]


def test_the_cap_falls_back_to_the_watchdog_and_says_so_without_psutil(repo_root: Path) -> None:
    # On Linux psutil itself needs `resource`, so taking `resource` away takes psutil too: no cap, and a warning.
    code = WITHOUT_UNIX + "from replay_cli import platforms; print(platforms.memory_cap_mode({}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == platforms.CAP_NONE
    assert "replaycli[memory]" in proc.stderr


def test_choices_follow_the_environment() -> None:
    assert platforms.pool_start_method({}) == "forkserver"
    assert platforms.pool_start_method({platforms.START_METHOD_ENV: "spawn"}) == "spawn"
    assert platforms.pool_start_method({platforms.START_METHOD_ENV: "fork"}) == "forkserver"  # never plain fork
    assert platforms.child_start_method({platforms.START_METHOD_ENV: "spawn"}) == "spawn"
    assert platforms.memory_cap_mode({}) == platforms.CAP_RLIMIT
    assert platforms.memory_cap_mode({platforms.MEMORY_CAP_ENV: "watchdog"}) == platforms.CAP_WATCHDOG
    assert set(platforms.stop_signals()) >= {signal.SIGINT, signal.SIGTERM}


def test_portable_ingest_and_parse_of_the_samples(tmp_path: Path, replaycli, samples: Path) -> None:
    db = tmp_path / "r.db"
    proc = replaycli.run("ingest", str(samples), "--db", str(db), "--workers", "2", module=PORTABLE, text=True)
    assert proc.returncode == 0, proc.stderr
    assert {status for status, _kind in _files(db).values()} == {"ok"}
    again = replaycli.run("ingest", str(samples), "--db", str(db), "--workers", "2", module=PORTABLE, text=True)
    assert again.returncode == 0 and "12 skipped" in again.stderr, again.stderr
    parsed = replaycli.run("parse", str(samples / "00-1v1.SC2Replay"), "--json", module=PORTABLE, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert json.loads(parsed.stdout)["status"] == "ok"


@pytest.mark.parametrize(("module", "env"), [
    pytest.param("replay_cli", {platforms.MEMORY_CAP_ENV: "watchdog"}, id="linux-watchdog"),
    pytest.param(PORTABLE, {}, id="portable"),
])
def test_a_bomb_under_the_watchdog_is_memory_and_the_batch_goes_on(tmp_path: Path, replaycli, samples: Path,
                                                                    module: str, env: dict[str, str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bomb.SC2Replay").write_bytes(_game_events_bomb())
    for name in ("00-1v1.SC2Replay", "01-2v2.SC2Replay", "03-vs-ai.SC2Replay"):
        (folder / name).write_bytes((samples / name).read_bytes())
    db = tmp_path / "r.db"
    proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "2", "--depth", "full",
                         "--max-memory", str(CAP_MIB), "--timeout", "60", module=module, env=env, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    files = _files(db)
    assert files.pop("bomb.SC2Replay") == ("failed", "memory")
    assert set(files.values()) == {("ok", None)} and len(files) == 3


def test_a_portable_parse_of_a_bomb_is_memory(tmp_path: Path, replaycli) -> None:
    bomb = tmp_path / "bomb.SC2Replay"
    bomb.write_bytes(_game_events_bomb())
    proc = replaycli.run("parse", str(bomb), "--json", "--depth", "full", "--max-memory", str(CAP_MIB),
                         "--timeout", "60", module=PORTABLE, text=True)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["error"]["kind"] == "memory"


def test_a_portable_parse_past_its_timeout_is_killed(tmp_path: Path, replaycli) -> None:
    big = tmp_path / "big.SC2Replay"
    big.write_bytes(_big_game())
    proc = replaycli.run("parse", str(big), "--json", "--depth", "full", "--timeout", "0.3", module=PORTABLE,
                         text=True)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["error"]["kind"] == "timeout"


def _slow_folder(tmp_path: Path, count: int = 4) -> Path:
    folder = tmp_path / "slow"
    folder.mkdir()
    data = _big_game()
    for index in range(count):
        (folder / f"big-{index}.SC2Replay").write_bytes(data)
    return folder


def _start_slow_ingest(tmp_path: Path, replaycli) -> tuple[subprocess.Popen, list[psutil.Process]]:
    """A portable ingest of slow files, once its workers are parsing; returns it and its descendants."""
    proc = replaycli.start("ingest", str(_slow_folder(tmp_path)), "--db", str(tmp_path / "r.db"), "--workers", "2",
                           "--depth", "full", "--timeout", "60", module=PORTABLE, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = psutil.Process(proc.pid).children(recursive=True)
        if sum(child.cpu_times().user > 0.5 for child in children) >= 1:  # a worker is well into a parse
            return proc, children
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("no worker started parsing within 60 s")


def test_portable_workers_die_with_a_killed_cli(tmp_path: Path, replaycli) -> None:
    proc, children = _start_slow_ingest(tmp_path, replaycli)
    proc.kill()
    proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=GONE_DEADLINE_S)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for leftover in alive:
        leftover.kill()
    assert not alive, f"still running {GONE_DEADLINE_S} s after kill -9: {alive}"


def test_portable_ctrl_c_commits_and_exits_130(tmp_path: Path, replaycli) -> None:
    proc, _children = _start_slow_ingest(tmp_path, replaycli)
    started = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=STOP_DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert time.monotonic() - started < STOP_DEADLINE_S
    assert b"Traceback" not in err, err
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1


def test_the_parent_watchdog_polls_without_a_pidfd(repo_root: Path) -> None:
    # A forked child has no spawn sentinel and, here, no pidfd: only polling can notice its parent go.
    code = (
        "import os, sys, time; os.__dict__.pop('pidfd_open', None); from replay_cli import platforms\n"
        "parent = os.getpid(); pid = os.fork()\n"
        "if pid == 0:\n"  # off the captured pipes, so the parent is reaped (a zombie still answers kill 0)
        "    null = os.open(os.devnull, os.O_WRONLY); os.dup2(null, 1); os.dup2(null, 2)\n"
        "    platforms.start_parent_watchdog(parent); time.sleep(60); os._exit(0)\n"
        "print(pid, flush=True); os._exit(0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=60)
    child = int(proc.stdout)
    deadline = time.monotonic() + GONE_DEADLINE_S
    while time.monotonic() < deadline and psutil.pid_exists(child):
        try:
            if psutil.Process(child).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    else:
        if psutil.pid_exists(child):
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the orphan kept running: polling never noticed its parent had gone")
