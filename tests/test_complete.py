"""`ok` means complete: a replay missing what its depth needs is stored `partial`, saying why.

Each damaged replay is a healthy synthetic game with one member removed, emptied, spoiled or
turned into a decompression bomb, ingested for real beside healthy games.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from replay_cli.parse import parse_file
from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.game import write_variant
from tests.hostile import bomb_replay

SEED = 99
HEALTHY = 4
WORKER_CAP_MIB = 320


def _members_changed(index: int, change) -> bytes:
    return write_variant(describe_game(SEED, index), change)


def _unnamed(index: int) -> bytes:
    desc = describe_game(SEED, index)
    return write_replay(replace(desc, players=(replace(desc.players[0], name=""), *desc.players[1:])))


def verdict(quality: dict) -> dict:
    """The part of a quality block that says whether and why a result is not to be trusted."""
    return {key: quality[key] for key in ("degraded", "reasons", "raw_values")}


# file name -> (bytes, expected reasons at stats)
def damaged() -> dict[str, tuple[bytes, list[str]]]:
    return {
        "no-tracker": (_members_changed(10, lambda n, d: None if n == "replay.tracker.events" else d),
                       ["no_tracker_events"]),
        "metadata-garbage": (_members_changed(11, lambda n, d: b"{not json" if n == "replay.gamemetadata.json" else d),
                             ["metadata_unreadable"]),
        "metadata-missing": (_members_changed(12, lambda n, d: None if n == "replay.gamemetadata.json" else d),
                             ["metadata_missing"]),
        "unnamed": (_unnamed(13), ["unnamed_players"]),
        "metadata-bomb": (bomb_replay("replay.gamemetadata.json"), ["metadata_unreadable"]),
    }


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, replaycli):
    folder = tmp_path_factory.mktemp("damaged")
    cases = damaged()
    for name, (data, _reasons) in cases.items():
        (folder / f"{name}.SC2Replay").write_bytes(data)
    for index in range(HEALTHY):
        (folder / f"healthy-{index}.SC2Replay").write_bytes(write_replay(describe_game(SEED, index)))
    db = folder / "out.db"
    proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "2", "--json",
                         "--max-memory", str(WORKER_CAP_MIB), text=True)
    return proc, db, cases


def test_damaged_replays_are_partial_with_their_reasons(ingested) -> None:
    proc, db, cases = ingested
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["counts"]
    assert (counts["ok"], counts["partial"], counts["failed"]) == (HEALTHY, len(cases), 0)
    with sqlite3.connect(db) as conn:
        stored = {Path(path).stem: (status, kind, verdict(json.loads(quality))) for path, status, kind, quality in conn.execute(
            "SELECT f.path, f.status, f.error_kind, r.quality FROM files f JOIN replays r ON r.sha256 = f.sha256")}
    for name, (_data, reasons) in cases.items():
        assert stored[name] == ("partial", "incomplete", {"degraded": True, "reasons": reasons, "raw_values": {}})
    for index in range(HEALTHY):
        assert stored[f"healthy-{index}"] == ("ok", None, {"degraded": False, "reasons": [], "raw_values": {}})


def test_every_sample_is_ok_and_not_degraded(samples: Path) -> None:
    for path in sorted(samples.glob("*.SC2Replay")):
        for depth in ("summary", "stats"):
            result = parse_file(str(path), depth)
            assert result["status"] == "ok", (path, result["error"])
            assert verdict(result["quality"]) == {"degraded": False, "reasons": [], "raw_values": {}}
