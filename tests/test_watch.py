"""`replaycli ingest --watch` against real processes, real folders and a real watchdog observer.

Every wait polls the database (or the process) up to a generous deadline; how long anything took
is never asserted, because the shared test machine is slow at unpredictable moments.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay_cli.cli import cli
from replay_cli.settle import Settler, archive_complete
from replay_cli.synth import describe_game, write_replay

DEADLINE_S = 60.0  # generous: a loaded machine is slow, and a pass never waits this long
POLL_S = 0.2
SYNTH_SEED = 1212
BURST = 200


def _synth(index: int) -> bytes:
    return write_replay(describe_game(SYNTH_SEED, index), compression="zlib")


def _rows(db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # the tables are not created yet
        return []
    finally:
        conn.close()


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert proc.poll() is None, f"the watcher exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL_S)


def _stored_count(db: Path) -> int:
    rows = _rows(db, "SELECT count(*) FROM files WHERE status IN ('ok', 'duplicate')")
    return rows[0][0] if rows else 0  # no rows: the database or its tables are not created yet


def _stop(proc: subprocess.Popen, signum: int) -> int:
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _start_watch(replaycli, tmp_path: Path, folder: Path, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    db, out = tmp_path / "replays.db", tmp_path / "out.jsonl"
    # Files, not pipes: hundreds of JSON lines would fill a pipe nobody reads until the end.
    with open(out, "wb") as stdout, open(tmp_path / "err.txt", "wb") as stderr:
        proc = replaycli.start("ingest", str(folder), "--watch", "--json", "--db", str(db), "--depth", "summary",
                               "--settle", "1", *extra, stdout=stdout, stderr=stderr)
    return proc, db, out


def _assert_consistent(db: Path) -> None:
    assert _rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert _rows(db, "PRAGMA foreign_key_check") == []
    orphans = _rows(db, "SELECT count(*) FROM files WHERE status IN ('ok', 'partial') "
                        "AND sha256 NOT IN (SELECT sha256 FROM replays)")
    assert orphans == [(0,)]


def test_watch_stores_slow_renamed_and_burst_arrivals_once_then_stops_on_sigint(replaycli, tmp_path: Path,
                                                                                  samples: Path):
    pytest.importorskip("watchdog")
    folder, outside = tmp_path / "Multiplayer", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    for game in sorted(samples.glob("*.SC2Replay"))[:2]:
        shutil.copyfile(game, folder / game.name)
    proc, db, out = _start_watch(replaycli, tmp_path, folder, "--workers", "2", "--rescan", "5")
    try:
        _wait_for(lambda: _stored_count(db) == 2, proc, "the first ingest")

        # A game saved slowly: ten chunks over about two seconds.
        data = _synth(0)
        slow = folder / "slow.SC2Replay"
        with open(slow, "wb") as handle:
            for start in range(0, len(data), len(data) // 10 + 1):
                handle.write(data[start:start + len(data) // 10 + 1])
                handle.flush()
                time.sleep(0.2)
        _wait_for(lambda: _rows(db, "SELECT status FROM files WHERE path = ?", (str(slow),)) != [], proc,
                  "the slowly written replay")
        assert _rows(db, "SELECT status, sha256, size FROM files WHERE path = ?", (str(slow),)) == [
            ("ok", hashlib.sha256(data).hexdigest(), len(data))]

        # Written elsewhere, then renamed into the folder.
        (outside / "game.tmp").write_bytes(_synth(1))
        os.rename(outside / "game.tmp", folder / "renamed.SC2Replay")
        _wait_for(lambda: _stored_count(db) == 4, proc, "the renamed replay")

        # A burst: BURST games dropped in at once.
        staged = outside / "burst"
        staged.mkdir()
        for index in range(BURST):
            (staged / f"burst-{index:03}.SC2Replay").write_bytes(_synth(2 + index))
        for game in sorted(staged.iterdir()):
            shutil.copyfile(game, folder / game.name)
        _wait_for(lambda: _stored_count(db) == 4 + BURST, proc, "the burst")
    finally:
        code = _stop(proc, signal.SIGINT)
    err = (tmp_path / "err.txt").read_text()
    assert code == 130, err
    assert "Traceback" not in err
    _assert_consistent(db)
    assert _rows(db, "SELECT count(*) FROM files WHERE status <> 'ok'") == [(0,)]
    assert _rows(db, "SELECT count(*) FROM replays") == [(4 + BURST,)]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [line["path"] for line in lines]
    assert len(paths) == len(set(paths)) == 4 + BURST  # each file committed exactly once, never as a failure
    assert {line["status"] for line in lines} == {"ok"}
    by_path = {line["path"]: line for line in lines}
    assert by_path[str(slow)]["sha256"] == hashlib.sha256(data).hexdigest()
    assert by_path[str(slow)]["map_name"] == describe_game(SYNTH_SEED, 0).map_name
    assert len(by_path[str(slow)]["players"]) == len(describe_game(SYNTH_SEED, 0).players)
    interrupted = _rows(db, "SELECT count(*) FROM runs WHERE finished_at IS NULL")
    assert interrupted == [(0,)]


def test_rescan_finds_new_files_without_events_and_sigterm_exits_143(replaycli, tmp_path: Path, samples: Path):
    folder = tmp_path / "Replays"
    folder.mkdir()
    proc, db, out = _start_watch(replaycli, tmp_path, folder, "--workers", "0", "--no-events", "--rescan", "1")
    try:
        _wait_for(lambda: _rows(db, "SELECT count(*) FROM runs") != [], proc, "the database")
        sub = folder / "later"
        sub.mkdir()
        games = sorted(samples.glob("*.SC2Replay"))[:3]
        for game in games:
            shutil.copyfile(game, sub / game.name)
        _wait_for(lambda: _stored_count(db) == len(games), proc, "the rescan")
    finally:
        code = _stop(proc, signal.SIGTERM)
    assert code == 143, (tmp_path / "err.txt").read_text()
    _assert_consistent(db)
    assert sorted(json.loads(line)["path"] for line in out.read_text().splitlines()) == sorted(
        str(sub / game.name) for game in games)


def test_a_half_written_file_waits_and_a_truncated_one_is_released_once_abandoned(tmp_path: Path, samples: Path):
    data = (samples / "00-1v1.SC2Replay").read_bytes()
    path = tmp_path / "game.SC2Replay"
    path.write_bytes(data[: len(data) // 2])
    now = [0.0]
    settler = Settler(1.0, clock=lambda: now[0])
    settler.saw([str(path), str(path)])
    assert archive_complete(str(path)) is False
    assert settler.ready() == []
    now[0] = 5.0  # standing still past the settle delay, but the archive is not whole yet
    assert settler.ready() == []
    with open(path, "ab") as handle:
        handle.write(data[len(data) // 2:])
    assert settler.ready() == []  # it just changed: the settle delay starts again
    now[0] = 6.5
    assert settler.ready() == [str(path)]
    assert len(settler) == 0
    # A file that never completes and that nobody writes is released in the end, for the parser to judge.
    stuck = tmp_path / "stuck.SC2Replay"
    stuck.write_bytes(data[:2000])
    settler.saw([str(stuck)])
    assert settler.ready() == []
    now[0] = 100.0
    assert settler.ready() == [str(stuck)]


def test_archive_complete_judges_only_mpq_archives(tmp_path: Path, samples: Path, corrupt_sample: Path):
    assert archive_complete(str(samples / "00-1v1.SC2Replay")) is True
    assert archive_complete(str(corrupt_sample)) is False
    (tmp_path / "text.SC2Replay").write_text("not an archive")
    assert archive_complete(str(tmp_path / "text.SC2Replay")) is None
    assert archive_complete(str(tmp_path / "missing.SC2Replay")) is None


def test_watch_without_watchdog_says_what_to_install(replaycli, tmp_path: Path, repo_root: Path):
    shadow = tmp_path / "shadow" / "watchdog"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('watchdog is not installed')\n")
    proc = replaycli.run("ingest", str(tmp_path), "--watch", "--db", str(tmp_path / "x.db"),
                         env={"PYTHONPATH": f"{shadow.parent}{os.pathsep}{repo_root}"}, text=True)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines()[-1] == (
        "Error: --watch needs watchdog for filesystem events: pip install 'replaycli[watch]' (or add --no-events)")


@pytest.mark.parametrize("args, message", [
    (["--settle", "3"], "--settle, --rescan and --no-events apply only with --watch."),
    (["--no-events"], "--settle, --rescan and --no-events apply only with --watch."),
    (["--watch", "-"], "--watch watches folders: '-' is not one."),
])
def test_watch_usage_errors(args: list[str], message: str, tmp_path: Path):
    inputs = [] if "-" in args else [str(tmp_path)]
    result = CliRunner().invoke(cli, ["ingest", *inputs, *args, "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 2
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output


def test_watch_without_inputs_picks_up_a_game_folder_that_appears_later(replaycli, tmp_path: Path, samples: Path):
    pytest.importorskip("watchdog")
    accounts = tmp_path / "home" / "Documents" / "StarCraft II" / "Accounts" / "11111111"
    first = accounts / "2-S2-1-1000001" / "Replays" / "Multiplayer"
    first.mkdir(parents=True)
    games = sorted(samples.glob("*.SC2Replay"))
    shutil.copyfile(games[0], first / games[0].name)
    db, err = tmp_path / "replays.db", tmp_path / "err.txt"
    with open(err, "wb") as stderr:
        proc = replaycli.start("ingest", "--watch", "--db", str(db), "--depth", "summary", "--workers", "0",
                               "--settle", "1", "--rescan", "1", env={"HOME": str(tmp_path / "home")},
                               stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_for(lambda: _stored_count(db) == 1, proc, "the first ingest")
        later = accounts / "1-S2-1-1000002" / "Replays" / "Multiplayer"  # the player's first game in a new region
        later.mkdir(parents=True)
        shutil.copyfile(games[1], later / games[1].name)
        _wait_for(lambda: _stored_count(db) == 2, proc, "the new folder's replay")
    finally:
        code = _stop(proc, signal.SIGINT)
    assert code == 130, err.read_text()
    assert f"ingesting {first}" in err.read_text()
    assert _rows(db, "SELECT path FROM files ORDER BY path") == sorted(
        [(str(first / games[0].name),), (str(later / games[1].name),)])
