"""Filters at ingest: the kept set equals the SQL over an unfiltered database, the rest is recorded.

The end-to-end tests ingest the same folder twice through the real CLI, once unfiltered and once
filtered, and compare the stored replays with what the equivalent SQL selects.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from replay_cli.filters import IngestFilters, Rejection

LADDER_1V1_LONG = ("--game-type", "1v1", "--ladder-only", "--min-duration", "300")
LADDER_1V1_LONG_SQL = "SELECT sha256 FROM replays WHERE game_type = '1v1' AND is_ladder = 1 AND duration_s >= 300"
LOOPS_PER_FASTER_SECOND = 22.4


def ingest(replaycli: Any, db: Path, *args: str, depth: str = "summary", workers: int = 0) -> dict[str, Any]:
    proc = replaycli.run("ingest", *args, "--db", str(db), "--workers", str(workers), "--depth", depth, "--json",
                         text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    summary: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == summary["exit_code"]
    return summary


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def hashes(db: Path, sql: str, *params: Any) -> set[str]:
    return {row[0] for row in query(db, sql, *params)}


# --- the rules alone ----------------------------------------------------------------------------------


def test_no_filters_are_inactive_and_have_no_key() -> None:
    assert not IngestFilters().active and IngestFilters().key() is None
    both = IngestFilters(game_types=("1v1",), min_duration=300)
    assert both.key() == '{"game_types": ["1v1"], "min_duration": 300}' == IngestFilters(
        min_duration=300, game_types=("1v1",)).key()


def test_header_decides_build_and_only_certain_lengths() -> None:
    filters = IngestFilters(min_build=80000, min_duration=300, max_duration=600)
    assert filters.check_header(79999, None) == Rejection("min_build", "build 79999 is below 80000")
    minute = int(60 * LOOPS_PER_FASTER_SECOND)
    assert filters.check_header(90000, minute).rule == "min_duration"  # a minute at Faster is short at any speed
    assert filters.check_header(90000, 3 * minute) is None  # 3 min at Faster, 7 at Slower: the summary decides
    assert filters.check_header(90000, 30 * minute).rule == "max_duration"
    assert not IngestFilters(max_build=1).needs_summary and filters.needs_summary


def test_rows_decide_every_rule() -> None:
    replay = {"game_type": "1v1", "is_ladder": True, "vs_ai": False, "build": 90000, "duration_s": 400.0,
              "played_at": "2023-03-03T04:26:53+00:00"}
    players = [{"name": "Serral", "toon_handle": "2-S2-1-1", "is_observer": False},
               {"name": "Caster", "toon_handle": "2-S2-1-9", "is_observer": True}]
    keep = IngestFilters(game_types=("1v1",), ladder_only=True, exclude_ai=True, since=date(2023, 3, 3),
                         until=date(2023, 3, 3), min_build=90000, max_build=90000, min_duration=400,
                         max_duration=400, players=("serral",))
    assert keep.check_rows(replay, players) is None
    cases = {
        "game_type": IngestFilters(game_types=("2v2",)), "ladder_only": IngestFilters(ladder_only=True),
        "since": IngestFilters(since=date(2023, 3, 4)), "until": IngestFilters(until=date(2023, 3, 2)),
        "player": IngestFilters(players=("Caster",)), "max_duration": IngestFilters(max_duration=399),
    }
    unranked = {**replay, "is_ladder": False}
    for rule, filters in cases.items():
        assert filters.check_rows(unranked, players).rule == rule  # type: ignore[union-attr]
    assert IngestFilters(players=("2-S2-1-1",)).check_rows(replay, players) is None
    assert IngestFilters(since=date(2000, 1, 1)).check_rows({**replay, "played_at": None}, players).rule == "since"


# --- through the real CLI -----------------------------------------------------------------------------


def test_filtered_ingest_keeps_exactly_what_sql_selects(replaycli: Any, replay_folder: Path, tmp_path: Path) -> None:
    everything, filtered = tmp_path / "all.db", tmp_path / "filtered.db"
    ingest(replaycli, everything, str(replay_folder), workers=2)
    expected = hashes(everything, LADDER_1V1_LONG_SQL)
    assert expected and expected != hashes(everything, "SELECT sha256 FROM replays")
    # stats depth: the filters must be decided on the header or the summary, before the deeper parse
    summary = ingest(replaycli, filtered, str(replay_folder), *LADDER_1V1_LONG, depth="stats", workers=2)
    assert hashes(filtered, "SELECT sha256 FROM replays") == expected
    rows = query(filtered, "SELECT path, status, sha256, error_kind, error_type, error_stage, filter_key FROM files")
    failed_before = hashes(everything, "SELECT path FROM files WHERE status = 'failed'")
    for path, status, sha, kind, rule, stage, key in rows:
        if status == "filtered":
            assert sha not in expected and kind == "filtered", path
            assert rule in {"game_type", "ladder_only", "min_duration"} and stage in {"header", "summary"}, path
            assert key == '{"game_types": ["1v1"], "ladder_only": true, "min_duration": 300.0}'
        elif status == "failed":
            assert path in failed_before
        else:
            assert sha in expected, path
    n_filtered = sum(1 for row in rows if row[1] == "filtered")
    assert summary["counts"]["filtered"] == n_filtered > 0
    # Filtered files never fail the run. (A broken file may be filtered rather than failed: a header
    # that says the game is too short decides before anything else is read.)
    assert summary["exit_code"] == (1 if any(row[1] == "failed" for row in rows) else 0)
    assert query(filtered, "SELECT count(*) FROM replays r JOIN files f ON f.sha256 = r.sha256 "
                           "WHERE f.status = 'filtered'") == [(0,)]
    again = ingest(replaycli, filtered, str(replay_folder), *LADDER_1V1_LONG, depth="stats")
    assert again["counts"]["parsed"] == 0 and again["counts"]["skipped"] == again["counts"]["discovered"]
    other = ingest(replaycli, filtered, str(replay_folder), "--game-type", "2v2", depth="stats", workers=2)
    assert other["counts"]["parsed"] == n_filtered  # only the filtered files are decided again
    assert hashes(filtered, "SELECT sha256 FROM replays") == expected | hashes(
        everything, "SELECT sha256 FROM replays WHERE game_type = '2v2'")


def test_header_filters_decide_before_any_parse(replaycli: Any, samples: Path, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    summary = ingest(replaycli, db, str(samples), "--max-build", "1")
    assert summary["counts"]["filtered"] == summary["counts"]["discovered"] == 12
    assert query(db, "SELECT DISTINCT status, error_type, error_stage FROM files") == [
        ("filtered", "max_build", "header")]
    assert query(db, "SELECT count(*) FROM replays") == [(0,)]


@pytest.mark.parametrize("args", [("--min-build", "5", "--max-build", "4"), ("--since", "2024-01-02", "--until",
                                                                             "2024-01-01")])
def test_empty_ranges_are_usage_errors(replaycli: Any, samples: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    proc = replaycli.run("ingest", str(samples), "--db", str(tmp_path / "x.db"), *args, text=True)
    assert proc.returncode == 2 and "nothing can match" in proc.stderr and "Traceback" not in proc.stderr


def test_player_ai_and_date_filters_match_sql(replaycli: Any, samples: Path, tmp_path: Path) -> None:
    everything = tmp_path / "all.db"
    ingest(replaycli, everything, str(samples))
    [(name,)] = query(everything, "SELECT p.name FROM players p JOIN replays r ON r.id = p.replay_id "
                                  "WHERE p.is_observer = 0 AND r.vs_ai = 0 AND p.name GLOB '[A-Za-z]*' "
                                  "ORDER BY p.name LIMIT 1")
    [(first, last)] = query(everything, "SELECT min(date(played_at)), max(date(played_at)) FROM replays")
    db = tmp_path / "some.db"
    ingest(replaycli, db, str(samples), "--player", name.upper(), "--exclude-ai", "--since", first, "--until", last)
    assert hashes(db, "SELECT sha256 FROM replays") == hashes(
        everything, "SELECT r.sha256 FROM replays r JOIN players p ON p.replay_id = r.id "
                    "WHERE p.is_observer = 0 AND lower(p.name) = lower(?) AND r.vs_ai = 0 "
                    "AND date(r.played_at) BETWEEN ? AND ?", name, first, last) != set()
