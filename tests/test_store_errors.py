"""The writer's defence in depth: a result it cannot write fails alone, in ingest and in the service.

The worker bounds every value (tests/test_unstorable_values.py); these tests put an unbindable
value past it on purpose, the way a future bug in the worker would, and check that the batch,
the run and the archive stay consistent. Real CLI, real pool, real SQLite.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from replay_cli.archive import archive_path
from replay_cli.parse import parse_replay
from replay_cli.service import ReplayParser
from replay_cli.synth import describe_game, write_replay

SEED = 4242
HEALTHY = 6


def _write_games(folder: Path, names: list[str]) -> None:
    folder.mkdir()
    for index, name in enumerate(names):
        (folder / name).write_bytes(write_replay(describe_game(SEED, index)))


def test_ingest_records_store_error_and_commits_the_rest(tmp_path: Path, replaycli) -> None:
    names = [f"game-{i}.SC2Replay" for i in range(HEALTHY)] + ["FAULT-unstorable.SC2Replay"]
    folder = tmp_path / "in"
    _write_games(folder, names)
    db = tmp_path / "out.db"
    proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "2", "--json",
                         module="tests.fault_cli", text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["counts"]["ok"] == HEALTHY and summary["counts"]["failed"] == 1
    [failure] = summary["failures"]
    assert failure["path"].endswith("FAULT-unstorable.SC2Replay") and failure["kind"] == "store_error"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM replays").fetchone() == (HEALTHY,)
        assert conn.execute("SELECT status, error_kind, error_stage FROM files WHERE path LIKE '%FAULT-%'"
                            ).fetchone() == ("failed", "store_error", "store")
        assert conn.execute("SELECT exit_code, failed FROM runs").fetchone() == (1, 1)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_service_keeps_no_archived_copy_of_an_upload_it_could_not_store(tmp_path: Path) -> None:
    healthy, unstorable = (write_replay(describe_game(SEED, index)) for index in (0, 1))
    archive = tmp_path / "archive"

    async def main() -> tuple[str, str]:
        async with ReplayParser(workers=1, db_path=str(tmp_path / "svc.db"), archive_dir=str(archive)) as parser:
            bad = await parser.parse(unstorable, name="bad.SC2Replay")
            bad["replay"]["game_loops"] = 2**64  # what a bug in the worker's bounds would let through
            good = await parser.parse(healthy, name="good.SC2Replay")
            return await parser.store(bad, unstorable), await parser.store(good, healthy)

    assert asyncio.run(main()) == ("failed", "ok")
    bad_sha, good_sha = (parse_replay(data, "summary")["sha256"] for data in (unstorable, healthy))
    assert not archive_path(archive, bad_sha).exists()
    assert archive_path(archive, good_sha).read_bytes() == healthy
    assert [p.name for p in archive.rglob("*") if p.is_file()] == [archive_path(archive, good_sha).name]
    with sqlite3.connect(tmp_path / "svc.db") as conn:
        rows = dict(conn.execute("SELECT sha256, error_kind FROM files"))
        assert rows == {bad_sha: "store_error", good_sha: None}
