"""The parse function on the real-replay corpus: every file classified, known values exact."""

from __future__ import annotations

import json
import multiprocessing
import pickle
from datetime import date
from pathlib import Path

import jsonschema
import pytest

from replay_cli.parse import parse_file, parse_replay
from replay_cli.schema import build_schema, render_schema, shipped_schema_text

# Files sc2reader 1.9.0 cannot take to every depth (shared/replays/README.md "Cases worth knowing").
HEADER_ONLY = "testError2.SC2Replay"  # sc2reader says ok with 0 players
STATS_PARTIAL = {"bad_unit_ids_1.SC2Replay", "bad_unit_ids_2.SC2Replay", "testError.SC2Replay"}
# GameHeart (a tournament observer mod) lists observers as players until sc2reader's
# GameHeartNormalizer runs on the first tracker events; summary reads them for such replays.
GAMEHEART = {"gameheart.SC2Replay", "gh_sameteam.SC2Replay"}
# A stripped replay: no replay.tracker.events and no player names in replay.details.
NO_TRACKER_EVENTS = "4.1.2.60604/1.SC2Replay"
UNKNOWN_UNIT_TYPES = (
    "spawningtool/replays/kerrigan.SC2Replay", "lotv_alpha_protoss_test.SC2Replay",
    "lotv_alpha_terran_test.SC2Replay", "lotv_alpha_zerg_test.SC2Replay", "3.1.0/centralprotocol.SC2Replay",
    "Oblivion Express.SC2Replay", "coop/CoA.SC2Replay",
    *(f"s2protocol.NET.tests/replays/test{n}.SC2Replay" for n in (1, 2, 5, 6, 7, 8, 9, 10)),
)
INCOMPLETE_AT = {"summary": ["unnamed_players"], "stats": ["no_tracker_events", "unnamed_players"]}


def assert_complete_unless_stripped(result, path, depth):
    """Every healthy corpus replay is `ok` and not degraded; the stripped one is `partial`, saying why."""
    if str(path).endswith(NO_TRACKER_EVENTS):
        assert result["status"] == "partial"
        assert result["error"]["kind"] == "incomplete"
        assert result["quality"]["reasons"] == INCOMPLETE_AT[depth] and result["quality"]["degraded"]
    else:
        assert result["status"] == "ok", (path, result["error"])
        reasons = result["quality"]["reasons"]
        # Arcade, co-op and LotV-alpha games build units sc2reader's balance data does not know:
        # flagged from stats depth on (summary reads no units), still ok.
        unknown_units = depth != "summary" and str(path).endswith(UNKNOWN_UNIT_TYPES)
        assert reasons == (["unknown_unit_types"] if unknown_units else []), (path, reasons)
        assert result["quality"]["degraded"] is bool(reasons)


@pytest.fixture(scope="module")
def stats_results(replay_manifest):
    """Every corpus replay (or sample and synthetic game) parsed once at the default depth (stats)."""
    return {row.path: parse_file(str(row.path), "stats") for row in replay_manifest}


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(json.loads(shipped_schema_text()))


def test_summary_depth_classifies_every_corpus_file(replay_manifest):
    for row in replay_manifest:
        result = parse_file(str(row.path), "summary")
        if row.path.name == HEADER_ONLY:
            assert result["status"] == "failed"
            assert result["error"]["kind"] == "invalid_replay"
            assert result["error"]["stage"] == "validate"
            continue
        assert row["sc2reader2_status"] == "ok"
        assert_complete_unless_stripped(result, row.path, "summary")
        replay = result["replay"]
        assert replay["sha256"] == row["sha256"] == result["sha256"]
        assert replay["map_name"] == row["map_name"]
        assert replay["release"] == row["release"]
        assert replay["base_build"] == int(row["base_build"])
        assert replay["category"] == (row["category"] or None)
        # The manifest's date is the end of the game in UTC; a game can cross midnight.
        played = date.fromisoformat(replay["played_at"][:10])
        assert abs((date.fromisoformat(row["date"]) - played).days) <= 1
        assert replay["player_count"] == int(row["players"])
        assert replay["observer_count"] == int(row["observers"])


def test_stats_depth_matches_manifest(replay_manifest, stats_results):
    for row in replay_manifest:
        result = stats_results[row.path]
        if row.path.name == HEADER_ONLY:
            assert result["status"] == "failed"
        elif row.path.name in STATS_PARTIAL:
            assert result["status"] == "partial"
            assert result["depth_reached"] == "summary"
            assert result["error"]["stage"] == "stats"
            assert result["error"]["kind"] == "parse_error"
            assert result["players"], "the summary survives a failed deeper stage"
        else:
            assert_complete_unless_stripped(result, row.path, "stats")
            assert result["depth_reached"] == "stats"
            replay = result["replay"]
            assert replay["player_count"] == int(row["players"])
            assert replay["game_type"] == (row["game_type"] or None)
            assert sum(not p["is_human"] for p in result["players"]) == int(row["ai_players"])


def test_stats_depth_fills_build_orders_and_timelines(stats_results):
    modern = [
        r
        for r in stats_results.values()
        if r["status"] == "ok" and r["replay"]["base_build"] >= 34784 and r["replay"]["duration_s"] > 60
        and not r["source"].endswith(NO_TRACKER_EVENTS)
    ]
    assert len(modern) > 50
    for result in modern:
        assert result["player_stats"], result["source"]
        assert result["build_order"], result["source"]
        assert not any(row["name"].startswith(("Spray", "RewardDance")) for row in result["build_order"])


def test_core_fields_agree_across_depths_for_in_game_lobbies(manifest):
    """A GameHeart lobby lists 7 players; sc2reader finds the 2 real ones from tracker events."""
    lobbies = [row for row in manifest if row.path.name in GAMEHEART]
    assert lobbies
    for row in lobbies:
        by_depth = {depth: parse_file(str(row.path), depth) for depth in ("summary", "stats")}
        core = {
            depth: (r["replay"]["game_type"], r["replay"]["player_count"], r["replay"]["observer_count"],
                    r["replay"]["winner_team"], [(p["name"], p["is_observer"], p["team"]) for p in r["players"]])
            for depth, r in by_depth.items()
        }
        assert core["summary"] == core["stats"], row.path
        assert core["summary"][:2] == ("1v1", 2)


def test_full_depth_on_a_bounded_subset(replay_manifest):
    subset = [row for row in replay_manifest[::40]] + [row for row in replay_manifest
                                                       if row.path.name in STATS_PARTIAL]
    for row in subset:
        result = parse_file(str(row.path), "full")
        if row.path.name in STATS_PARTIAL:
            assert result["status"] == "partial"
            assert result["depth_reached"] == "summary"
            continue
        assert result["status"] == "ok", (row.path, result["error"])
        assert result["depth_reached"] == "full"
        humans = [p for p in result["players"] if p["is_human"] and not p["is_observer"]]
        assert all(p["apm_computed"] is not None and p["seconds_played"] for p in humans)


def test_real_outputs_validate_against_the_shipped_schema(stats_results, validator, game):
    samples = list(stats_results.values())[::10]
    samples.append(parse_file(str(game("tests/replays/1v1.SC2Replay")), "full"))
    samples.append(parse_file("/nonexistent/x.SC2Replay"))
    for result in samples:
        errors = list(validator.iter_errors(json.loads(json.dumps(result))))
        assert not errors, (result["source"], errors[0].message)


def test_shipped_schema_is_generated_from_the_typed_dicts():
    assert shipped_schema_text() == render_schema()
    assert build_schema()["properties"]["schema_version"] == {"const": 2}


def test_ladder_1v1_known_values(replay):
    result = parse_file(str(replay("tests/replays/1v1.SC2Replay")), "full")
    replay_row = result["replay"]
    assert replay_row["map_name"] == "Ancient Cistern LE"
    assert replay_row["played_at"] == "2023-03-03T04:26:53Z"
    assert replay_row["utc_offset_hours"] == 8.0
    assert replay_row["game_loops"] == 15509
    assert replay_row["duration_s"] == pytest.approx(15509 / 22.4, abs=0.01)
    assert (replay_row["is_ladder"], replay_row["amm"], replay_row["winner_team"]) == (True, True, 2)
    players = {p["name"]: p for p in result["players"]}
    kkkk, kaqte = players["KKkk"], players["kaqTe"]
    assert (kkkk["pid"], kkkk["uid"], kkkk["play_race"], kkkk["result"]) == (1, 0, "Terran", "Loss")
    assert (kaqte["pid"], kaqte["uid"], kaqte["play_race"], kaqte["result"]) == (2, 1, "Protoss", "Win")
    assert (kkkk["mmr_lobby"], kkkk["mmr_meta"], kkkk["apm_blizzard"]) == (4756, 4756, 305.0)
    assert (kaqte["mmr_lobby"], kaqte["mmr_meta"], kaqte["apm_blizzard"]) == (5457, 5457, 250.0)
    assert kkkk["toon_handle"] == "3-S2-2-161623"
    assert (kkkk["region_id"], kkkk["subregion"], kkkk["toon_id"]) == (3, 2, 161623)
    assert kkkk["clan_tag"] == "金灿灿狙击队"
    # sc2reader's APMTracker counts fewer actions than Blizzard's metadata does.
    assert 0 < kkkk["apm_computed"] < kkkk["apm_blizzard"]
    assert [(c["sender_name"], c["text"]) for c in result["chat"]] == [("kaqTe", "glhf"), ("KKkk", "GL"), ("KKkk", "GG")]
    assert kaqte["workers_6m"] > 20 and kaqte["bases_10m"] >= 2


def test_2v2_known_values(replay):
    result = parse_file(str(replay("tests/replays/2v2.SC2Replay")), "summary")
    assert result["replay"]["game_type"] == "2v2"
    assert [(p["name"], p["team"], p["play_race"], p["result"]) for p in result["players"]] == [
        ("TUKINxD", 1, "Protoss", "Win"),
        ("lowdiaplayer", 1, "Terran", "Win"),
        ("IIIIIIIIIIII", 2, "Protoss", "Loss"),
        ("llllllllllll", 2, "Zerg", "Loss"),
    ]
    assert result["players"][0]["clan_tag"] == "NLTN"
    assert [c["sender_name"] for c in result["chat"][:3]] == ["IIIIIIIIIIII", "lowdiaplayer", "llllllllllll"]


def test_vs_ai_known_values(replay):
    result = parse_file(str(replay("tests/replays/1v1_computer.SC2Replay")), "summary")
    assert result["replay"]["vs_ai"] is True
    human, computer = result["players"]
    assert (human["name"], human["is_human"], human["result"]) == ("Daydreamer", True, "Loss")
    assert (computer["is_human"], computer["ai_difficulty"], computer["result"]) == (False, "Very Easy", "Win")
    # Blizzard's APM for the AI, as its metadata writes it (it is not always 0).
    assert computer["apm_blizzard"] == 8.0 and computer["toon_handle"] is None


def test_coop_cleans_the_mmr_sentinel(replay):
    result = parse_file(str(replay("spawningtool/replays/kerrigan.SC2Replay")), "summary")
    commanders = {p["name"]: p["commander"] for p in result["players"] if p["is_human"]}
    assert commanders == {"StoicLoofah": "Kerrigan", "maemar": "Artanis"}
    assert all(p["mmr_meta"] is None for p in result["players"])  # -36400 in the metadata


def test_wol_known_values(replay):
    result = parse_file(str(replay("test_replays/1.0.0.16117/1.SC2Replay")), "stats")
    assert result["replay"]["expansion"] == "WoL"
    assert result["replay"]["played_at"] == "2010-07-30T21:54:59Z"
    assert [(p["name"], p["play_race"], p["result"]) for p in result["players"]] == [
        ("Froadac", "Protoss", "Win"),
        ("Jdorty", "Terran", "Loss"),
    ]
    assert result["chat"][0]["text"] == "gl hf"


def test_observer_chat_is_joined_on_uid_not_pid(replay):
    """Observers chat on their own uid; a pid join would credit their words to a player."""
    result = parse_file(str(replay("spawningtool/replays/patch_5_0_14_tvp.SC2Replay")), "summary")
    by_uid = {p["uid"]: p for p in result["players"]}
    observer_lines = [c for c in result["chat"] if c["channel"] == "observers"]
    assert [c["sender_name"] for c in observer_lines[:2]] == ["Enki", "Mapu"]
    for line in result["chat"]:
        sender = by_uid[line["sender_uid"]]
        assert sender["name"] == line["sender_name"]
        assert line["sender_pid"] == (None if sender["is_observer"] else sender["pid"])
    gg = next(c for c in result["chat"] if c["text"] == "gg")
    assert (gg["sender_name"], gg["sender_pid"]) == ("Vindicta", 1)
    # real seconds and game seconds are never mixed: game = loops/16, real = loops/22.4
    assert gg["game_s"] == pytest.approx(gg["game_loop"] / 16, abs=0.001)
    assert gg["real_s"] == pytest.approx(gg["game_loop"] / 22.4, abs=0.001)


def test_result_round_trips_through_pickle_and_json(game):
    result = parse_file(str(game("tests/replays/1v1.SC2Replay")), "stats")
    assert pickle.loads(pickle.dumps(result)) == result
    assert json.loads(json.dumps(result)) == result


def _parse_in_child(path: str) -> dict:
    return parse_file(path, "summary")


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_parse_file_runs_in_a_fresh_process(game, method):
    path = str(game("tests/replays/1v1.SC2Replay"))
    with multiprocessing.get_context(method).Pool(1) as pool:
        child = pool.apply(parse_file, (path, "summary"))
    here = parse_file(path, "summary")
    for timing in ("parse_seconds", "cpu_seconds", "peak_rss_bytes"):
        child.pop(timing), here.pop(timing)
    assert child == here


@pytest.mark.parametrize(
    ("data", "kind", "stage"),
    [
        (b"", "parse_error", "archive"),
        (b"x", "parse_error", "archive"),
        (b"MPQ\x1b" + bytes(range(256)) * 8, "parse_error", "archive"),
    ],
)
def test_garbage_bytes_come_back_classified(data, kind, stage):
    result = parse_replay(data, "stats")
    assert result["status"] == "failed"
    assert (result["error"]["kind"], result["error"]["stage"], result["error"]["type"]) == (kind, stage, "MPQError")
    assert "\n" not in result["error"]["message"]


def test_truncated_real_replay_is_a_parse_error(game):
    data = game("tests/replays/1v1.SC2Replay").read_bytes()
    result = parse_replay(data[: len(data) // 2], "stats")
    assert result["status"] == "failed" and result["error"]["kind"] == "parse_error"


def test_file_level_failures(tmp_path: Path):
    big = tmp_path / "big.SC2Replay"
    big.write_bytes(b"\0" * 2048)
    assert parse_file(str(big), "summary", max_bytes=1024)["error"]["kind"] == "too_large"
    assert parse_file(str(tmp_path), "summary")["error"]["kind"] == "not_regular_file"
    assert parse_file(str(tmp_path / "missing.SC2Replay"))["error"]["kind"] == "unreadable"


def test_unknown_depth_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown depth"):
        parse_replay(b"", "deep")
