"""When the run itself cannot proceed: disk full, a locked database, workers that cannot live."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from replay_cli.runner import FILES_PER_TASK, IN_FLIGHT_PER_WORKER
from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.game import with_units

REAL = ["tests/replays/1v1.SC2Replay", "tests/replays/2v2.SC2Replay", "tests/replays/1v1_obs.SC2Replay"]
DISK_FULL_BYTES = 512 * 1024  # the database may not grow past this: enough to open, not to store
# A game whose build order alone is about a megabyte in the database: more than DISK_FULL_BYTES,
# with or without the corpus. Its name sorts first, so it is the first batch the writer commits.
BIG_GAME_UNITS = 20_000
BIG_GAME_NAME = "+big.SC2Replay"


@pytest.fixture
def cli(replaycli) -> Callable[..., subprocess.CompletedProcess]:
    """Run the real CLI to completion, optionally with its files capped at limit_file_size bytes."""

    def run(*args: str, limit_file_size: int | None = None) -> subprocess.CompletedProcess:
        def _limit() -> None:
            if limit_file_size is not None:
                # A write past RLIMIT_FSIZE fails with EFBIG, as on a full disk, once SIGXFSZ is ignored.
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

        return replaycli.run(*args, text=True, preexec_fn=_limit)

    return run


def _consistent(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute(
        "select count(*) from replays r where not exists (select 1 from players p where p.replay_id = r.id)"
    ).fetchone()[0] == 0
    return conn


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture
def inputs(tmp_path: Path, game) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for index, suffix in enumerate(REAL):
        shutil.copy(game(suffix), folder / f"{index}.SC2Replay")
    return folder


def test_disk_full_is_exit_3_and_nothing_half_written(tmp_path: Path, inputs: Path, cli):
    (inputs / BIG_GAME_NAME).write_bytes(write_replay(with_units(describe_game(7, 0), BIG_GAME_UNITS)))
    db_path = tmp_path / "full.db"
    proc = cli("ingest", str(inputs), "--db", str(db_path), "--workers", "0", "--depth", "stats",
               limit_file_size=DISK_FULL_BYTES)
    assert proc.returncode == 3, proc.stderr
    message = _one_line_error(proc)
    assert str(db_path) in message
    # It filled up while storing, not while opening: the run was recorded, no replay was.
    assert _consistent(db_path).execute("select (select count(*) from runs), (select count(*) from replays)"
                                        ).fetchone() == (1, 0)
    # Room again: the same command completes and converges.
    assert cli("ingest", str(inputs), "--db", str(db_path), "--workers", "0", "--depth", "stats").returncode == 0
    assert _consistent(db_path).execute("select count(*) from replays").fetchone()[0] == len(REAL) + 1


def test_database_held_by_another_writer_is_exit_3_not_a_hang(tmp_path: Path, inputs: Path, cli, seeded_db):
    db_path = seeded_db(tmp_path / "locked.db", inputs / "0.SC2Replay")
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("begin exclusive")
    try:
        proc = cli("ingest", str(inputs), "--db", str(db_path), "--workers", "0", "--depth", "summary",
                   "--force")
    finally:
        holder.execute("rollback")
        holder.close()
    assert proc.returncode == 3
    assert "locked" in _one_line_error(proc)
    assert _consistent(db_path).execute("select count(*) from replays").fetchone()[0] == 1


def test_a_long_reader_does_not_block_ingest(tmp_path: Path, inputs: Path, cli, seeded_db):
    db_path = seeded_db(tmp_path / "read.db", inputs / "0.SC2Replay")
    reader = sqlite3.connect(db_path, isolation_level=None)
    reader.execute("begin")
    assert reader.execute("select count(*) from replays").fetchone()[0] == 1  # holds a read snapshot
    try:
        proc = cli("ingest", str(inputs), "--db", str(db_path), "--workers", "0", "--depth", "summary")
    finally:
        reader.execute("rollback")
        reader.close()
    assert proc.returncode == 0, proc.stderr
    assert _consistent(db_path).execute("select count(*) from replays").fetchone()[0] == len(REAL)


def test_workers_that_cannot_start_commit_what_is_known_and_exit_3(tmp_path: Path, inputs: Path, cli):
    """A 1 MiB address-space cap kills every worker at start: the pool is unrecoverable."""
    # Enough paths for three breakages with 2 workers: each breakage holds a full window of chunks.
    for index in range(3 * 2 * IN_FLIGHT_PER_WORKER * FILES_PER_TASK):
        shutil.copy(inputs / f"{index % len(REAL)}.SC2Replay", inputs / f"more-{index}.SC2Replay")
    os.mkfifo(inputs / "fifo.SC2Replay")  # decided in the main process, before any worker
    db_path = tmp_path / "pool.db"
    proc = cli("ingest", str(inputs), "--db", str(db_path), "--workers", "2", "--max-memory", "1",
               "--depth", "summary")
    assert proc.returncode == 3, proc.stderr
    assert "worker" in _one_line_error(proc).lower()
    conn = _consistent(db_path)
    assert conn.execute("select status, error_kind from files where path like '%fifo.SC2Replay'").fetchall() == [
        ("failed", "not_regular_file")
    ]
    assert conn.execute("select exit_code from runs").fetchall() == [(3,)]
