"""Source values SQLite cannot hold: bounded by the worker, never a crash of the batch.

Each crafted replay is a healthy synthetic game with one value rewritten in one member; the
values are the ones that used to raise OverflowError in the writer and roll back a whole batch.
Everything runs for real: the synth writer, sc2reader in worker processes, SQLite.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from replay_cli.parse import parse_replay
from replay_cli.synth import StatsSample, describe_game, write_replay
from replay_cli.synth.game import write_variant

SEED = 1701
HEALTHY = 8


def _with_member(index: int, member: str, rewrite: Any) -> bytes:
    """A synthetic game whose `member` is replaced by rewrite(original bytes)."""
    return write_variant(describe_game(SEED, index), lambda name, data: rewrite(data) if name == member else data)


def _metadata(change: Any) -> Any:
    def rewrite(data: bytes) -> bytes:
        document = json.loads(data)
        change(document)
        # json.dumps writes 1e308 as 1e+308 and a huge int digit by digit, as a hostile file would.
        return json.dumps(document).encode("utf-8")

    return rewrite


def _huge_minerals(index: int) -> bytes:
    desc = describe_game(SEED, index)
    first = desc.players[0]
    stats = (StatsSample(loop=160, minerals_current=2**70), *first.stats[1:])
    return write_replay(replace(desc, players=(replace(first, stats=stats), *desc.players[1:])))


# name -> (replay bytes, the raw_values key the bound must report, the text it must keep)
def crafted() -> dict[str, tuple[bytes, str, str]]:
    return {
        "duration-1e308": (
            _with_member(100, "replay.gamemetadata.json", _metadata(lambda d: d.update(Duration=1e308))),
            "replay.meta_duration_game_s", "1.000000e+308",
        ),
        "duration-above-2-63": (
            _with_member(101, "replay.gamemetadata.json", _metadata(lambda d: d.update(Duration=2**64 + 1))),
            "replay.meta_duration_game_s", str(2**64 + 1),
        ),
        "mmr-1e20": (
            _with_member(102, "replay.gamemetadata.json", _metadata(lambda d: d["Players"][0].update(MMR=1e20))),
            "players[0].mmr_meta_raw", str(10**20),
        ),
        "apm-inf": (
            _with_member(103, "replay.gamemetadata.json",
                         lambda data: data.replace(b'"APM": ', b'"APM": 1e999, "_": ', 1)),
            "players[0].apm_blizzard", "inf",
        ),
        "tracker-minerals-2-70": (_huge_minerals(104), "player_stats[0].minerals", str(2**70)),
    }


@pytest.fixture(scope="module")
def crafted_replays() -> dict[str, tuple[bytes, str, str]]:
    return crafted()


@pytest.mark.parametrize("name", sorted(crafted()))
def test_the_worker_bounds_each_value_and_says_so(crafted_replays, name: str) -> None:
    data, where, raw = crafted_replays[name]
    result = parse_replay(data, "stats", source=name)
    assert result["status"] == "partial", result["error"]
    assert result["error"]["kind"] == "incomplete"
    assert result["quality"]["degraded"] is True
    assert "value_out_of_range" in result["quality"]["reasons"]
    assert result["quality"]["raw_values"][where] == raw
    # What --json prints is strict JSON: no Infinity or NaN tokens.
    json.loads(json.dumps(result), parse_constant=lambda token: pytest.fail(f"{token} in the JSON"))


def test_ingest_stores_every_replay_beside_unstorable_values(tmp_path: Path, crafted_replays) -> None:
    folder = tmp_path / "replays"
    folder.mkdir()
    for index in range(HEALTHY):
        (folder / f"healthy-{index}.SC2Replay").write_bytes(write_replay(describe_game(SEED, index)))
    for name, (data, _where, _raw) in crafted_replays.items():
        (folder / f"{name}.SC2Replay").write_bytes(data)
    db = tmp_path / "out.db"
    proc = subprocess.run(
        [sys.executable, "-m", "replay_cli", "ingest", str(folder), "--db", str(db), "--workers", "2", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr  # partial is stored, not failed
    summary = json.loads(proc.stdout)
    assert summary["counts"]["partial"] == len(crafted_replays)
    assert summary["counts"]["ok"] == HEALTHY
    with sqlite3.connect(db) as conn:
        files = dict(conn.execute("SELECT path, status FROM files"))
        assert len(files) == HEALTHY + len(crafted_replays)
        for name, (_data, where, raw) in crafted_replays.items():
            assert files[str(folder / f"{name}.SC2Replay")] == "partial"
            quality_json, degraded, players = conn.execute(
                "SELECT r.quality, r.degraded, (SELECT count(*) FROM players p WHERE p.replay_id = r.id) "
                "FROM replays r JOIN files f ON f.sha256 = r.sha256 WHERE f.path = ?",
                (str(folder / f"{name}.SC2Replay"),),
            ).fetchone()
            assert degraded == 1 and players >= 2
            assert json.loads(quality_json)["raw_values"][where] == raw
        assert conn.execute("SELECT meta_duration_game_s FROM replays r JOIN files f ON f.sha256 = r.sha256 "
                            "WHERE f.path LIKE '%duration-1e308%'").fetchone() == (None,)
        assert conn.execute("SELECT count(*) FROM replays WHERE degraded = 0").fetchone() == (HEALTHY,)
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
