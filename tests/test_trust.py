"""Data you can trust: Blizzard's numbers as written, degraded parses flagged, bot replays recovered.

Synthetic replays from the project's writer stand in for a patch sc2reader has no data for and
for an SC2 API (bot) replay; the real corpus adds its vs-AI games when it is present.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from replay_cli.parse import parse_file, parse_replay
from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.attributes import encode_attributes
from replay_cli.synth.details import encode_details, encode_header
from replay_cli.synth.game import write_variant

SEED = 5017
NEXT_PATCH = ((5, 0, 17), 98310)  # a release newer than sc2reader 1.9.0's newest balance data


def next_patch_replay(index: int = 0) -> bytes:
    desc = describe_game(SEED, index)
    (release, build) = NEXT_PATCH
    return write_variant(desc, lambda _name, data: data, header=encode_header(desc, release, build, build))


def bot_replay(index: int = 1) -> bytes:
    """Like a replay the SC2 API writes: replay.details names no map and no mods."""
    desc = describe_game(SEED, index)
    bare = encode_details(desc, with_cache_handles=False)
    return write_variant(desc, lambda name, data: bare if name.startswith("replay.details") else data)


def editor_replay(index: int = 3) -> bytes:
    """Like a game started from the map editor: the lobby recorded no game speed."""
    desc = describe_game(SEED, index)
    attributes = encode_attributes(desc, with_game_speed=False)
    return write_variant(desc, lambda name, data: attributes if name == "replay.attributes.events" else data)


@pytest.mark.parametrize("depth", ["summary", "stats"])
def test_an_editor_replay_without_game_speed_says_what_it_assumed(depth: str) -> None:
    desc = describe_game(SEED, 3)
    result = parse_replay(editor_replay(), depth)
    assert result["status"] == "partial" and result["quality"]["reasons"] == ["no_game_speed"]
    assert result["replay"]["game_speed"] is None  # sc2reader's stand-in 1.0 is not a speed
    assert result["replay"]["duration_s"] == round(desc.duration_loops / 22.4, 3)  # Faster, as said


@pytest.mark.parametrize("depth", ["summary", "stats", "full"])
def test_a_replay_newer_than_the_balance_data_is_ok_but_degraded(depth: str) -> None:
    result = parse_replay(next_patch_replay(), depth)
    assert result["status"] == "ok", result["error"]
    quality = result["quality"]
    assert quality["degraded"] is True
    assert quality["reasons"] == ["datapack_gap"]
    assert (quality["replay_build"], quality["data_build"]) == (98310, "97364")
    assert result["replay"]["release"] == "5.0.17.98310"


@pytest.mark.parametrize("depth", ["summary", "stats"])
def test_a_bot_replay_without_cache_handles_is_recovered(depth: str) -> None:
    desc = describe_game(SEED, 1)
    result = parse_replay(bot_replay(), depth)
    assert result["status"] == "partial" and result["error"]["kind"] == "incomplete"
    assert result["quality"]["reasons"] == ["no_cache_handles"]
    replay = result["replay"]
    assert (replay["region"], replay["map_hash"]) == (None, None)
    assert replay["map_name"] == desc.map_name and replay["expansion"] == "LotV"
    assert replay["duration_s"] == round(desc.duration_loops / 22.4, 3)
    players = [p for p in result["players"] if not p["is_observer"]]
    assert [(p["name"], p["play_race"], p["result"]) for p in players] == [
        (p.name, p.race, p.result if p.result in ("Win", "Loss") else None) for p in desc.players
    ]
    assert [p["apm_blizzard"] for p in players] == [float(p.apm) for p in desc.players]
    if depth == "stats":
        assert result["build_order"] and result["player_stats"]


def test_blizzard_apm_is_kept_for_ai_players_and_sentinels_are_recorded(samples: Path) -> None:
    result = parse_file(str(samples / "03-vs-ai.SC2Replay"), "summary")
    ai = [(index, p) for index, p in enumerate(result["players"]) if not p["is_human"] and not p["is_observer"]]
    assert ai
    for index, player in ai:
        assert player["apm_blizzard"] is not None  # Blizzard's figure, 0 or not, as Blizzard wrote it
        # An AI has no account: region 0 reads as unknown, and the 0 is kept beside the NULL.
        assert player["region_id"] is None
        assert result["quality"]["sentinels"][f"players[{index}].region_id"] == "0"
    assert result["quality"]["degraded"] is False


def test_corpus_ai_apm_as_blizzard_wrote_it(replay) -> None:
    result = parse_file(str(replay("replay_ai.SC2Replay")), "summary")
    ai = [p for p in result["players"] if not p["is_human"]]
    assert [(p["name"], p["apm_blizzard"]) for p in ai] == [("A.I. 1 (Very Easy)", 18.0)]


def test_ingest_stores_the_flags_and_prints_nothing_of_sc2readers(tmp_path: Path, replaycli) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "next-patch.SC2Replay").write_bytes(next_patch_replay())
    (folder / "bot.SC2Replay").write_bytes(bot_replay())
    (folder / "healthy.SC2Replay").write_bytes(write_replay(describe_game(SEED, 2)))
    db = tmp_path / "trust.db"
    proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "2", text=True)
    assert proc.returncode == 0, proc.stderr
    assert "sc2reader" not in proc.stderr and "Conflicting" not in proc.stderr
    with sqlite3.connect(db) as conn:
        rows = {Path(path).stem: (status, degraded, json.loads(quality)["reasons"])
                for path, status, degraded, quality in conn.execute(
                    "SELECT f.path, f.status, r.degraded, r.quality FROM files f JOIN replays r ON r.sha256 = f.sha256")}
    assert rows == {
        "next-patch": ("ok", 1, ["datapack_gap"]),
        "bot": ("partial", 1, ["no_cache_handles"]),
        "healthy": ("ok", 0, []),
    }


def _trust_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / "next-patch.SC2Replay").write_bytes(next_patch_replay())
    (folder / "bot.SC2Replay").write_bytes(bot_replay())
    for index in range(2, 5):
        (folder / f"healthy-{index}.SC2Replay").write_bytes(write_replay(describe_game(SEED, index)))
    return folder


def test_failures_degraded_lists_them_by_reason_and_release(tmp_path: Path, replaycli) -> None:
    folder, db = _trust_folder(tmp_path), tmp_path / "degraded.db"
    assert replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "0", text=True).returncode == 0
    proc = replaycli.run("failures", "--degraded", "--json", "--db", str(db), text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(g["reason"], g["release"], g["replays"]) for g in report["groups"]] == [
        ("datapack_gap", "5.0.17.98310", 1), ("no_cache_handles", "5.0.15.95299", 1)]
    with sqlite3.connect(db) as conn:
        expected = {path for (path,) in conn.execute("SELECT first_path FROM replays WHERE degraded = 1")}
    assert {row["path"] for row in report["replays"]} == expected
    table = replaycli.run("failures", "--degraded", "--db", str(db), text=True)
    assert table.returncode == 0 and "datapack_gap" in table.stdout


def test_reparse_degraded_reparses_exactly_what_older_parsers_stored(tmp_path: Path, replaycli) -> None:
    folder, db = _trust_folder(tmp_path), tmp_path / "upgrade.db"
    first = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "0", "--json", text=True)
    assert json.loads(first.stdout)["counts"]["parsed"] == 5
    # A database written by an older release: same rows, older parser versions on every file.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE files SET parser_version = '0.0.9/1.8.0'")
        conn.execute("UPDATE replays SET quality = json_set(quality, '$.data_build', 'stale')")
    rerun = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "0", "--json",
                          "--reparse-degraded", text=True)
    counts = json.loads(rerun.stdout)["counts"]
    assert (counts["parsed"], counts["skipped"]) == (2, 3)  # the two degraded replays, nothing else
    with sqlite3.connect(db) as conn:
        builds = dict(conn.execute("SELECT first_path, json_extract(quality, '$.data_build') FROM replays "
                                   "WHERE degraded = 1"))
        versions = dict(conn.execute("SELECT path, parser_version FROM files"))
    assert "stale" not in builds.values()  # the re-parse rewrote the replays, not only the files rows
    assert sum(version != "0.0.9/1.8.0" for version in versions.values()) == 2
    again = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "0", "--json",
                          "--reparse-degraded", text=True)
    assert json.loads(again.stdout)["counts"]["parsed"] == 0  # now parsed by the running versions
