"""Round trip through the project's own parse function: what a description puts in comes out."""

from __future__ import annotations

import pytest

from replay_cli.parse import parse_replay
from replay_cli.synth import generate_descriptions, write_replay

RACES = {"Terran", "Protoss", "Zerg"}
GAMES = generate_descriptions(16, seed=11)


@pytest.mark.parametrize("depth", ["summary", "stats", "full"])
@pytest.mark.parametrize("index", range(0, 16, 3))
def test_parse_returns_what_the_description_put_in(index: int, depth: str):
    desc = GAMES[index]
    result = parse_replay(write_replay(desc), depth)
    assert result["status"] == "ok", result["error"]
    assert result["depth_reached"] == depth
    replay = result["replay"]
    assert replay["map_name"] == desc.map_name
    assert replay["played_at"] == desc.start_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert replay["game_loops"] == desc.duration_loops
    assert replay["utc_offset_hours"] == desc.utc_offset_hours
    players = [p for p in result["players"] if not p["is_observer"]]
    assert [p["name"] for p in players] == [p.name for p in desc.players]
    assert [p["play_race"] for p in players] == [p.race for p in desc.players]
    assert [p["team"] for p in players] == [p.team for p in desc.players]
    for row, player in zip(players, desc.players):
        assert row["is_human"] is (not player.is_ai)
        if player.is_ai:
            assert row["ai_difficulty"] == player.ai_difficulty
            continue
        assert row["clan_tag"] == (player.clan_tag or None)
        assert row["toon_handle"] == player.toon_handle
        assert row["mmr_meta"] == player.mmr
        assert row["apm_blizzard"] == float(player.apm)
        if player.result in ("Win", "Loss"):
            assert row["result"] == player.result
    assert [o["name"] for o in result["players"] if o["is_observer"]] == [o.name for o in desc.observers]
    assert [(c["text"], c["game_loop"], c["channel"]) for c in result["chat"]] == [
        (c.text, c.loop, c.channel) for c in desc.chat
    ]
    if depth == "summary":
        return
    stats_by_pid: dict[int, list[int]] = {}
    for row in result["player_stats"]:
        stats_by_pid.setdefault(row["pid"], []).append(row["minerals"])
    for pid, player in enumerate(desc.players, start=1):
        assert stats_by_pid.get(pid, []) == [s.minerals_current for s in player.stats]
        built = sorted(r["name"] for r in result["build_order"] if r["pid"] == pid)
        assert built == sorted(item.name for item in player.build_order)
