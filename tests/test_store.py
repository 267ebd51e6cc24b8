"""Tests for replay_cli.store: real SQLite files in tmp_path, exact-row asserts."""

from __future__ import annotations

import copy
import json
import multiprocessing
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay_cli import result as schema
from replay_cli.errors import ReplayCliError, StoreError
from replay_cli.migrations import CHILD_TABLES, MIGRATIONS
from replay_cli.rowpack import LAYOUT, PACKED_KEY, pack, packed_bytes
from replay_cli.store import (
    BUSY_TIMEOUT_MS,
    LOOKUP_CHUNK,
    PAGE_SIZE,
    BatchCounts,
    FileRecord,
    FileStat,
    Store,
    open_store,
)

PARSER = {"replaycli": "0.1.0", "sc2reader": "1.9.0"}
PARSER_VERSION = "0.1.0/1.9.0"
REAL_1V1 = "tests/replays/1v1.SC2Replay"  # the corpus' manuelseeger+sc2reader-plugins copy, else a sample
PER_PROCESS = 200
CHILD_KEYS = {"players": ["slot"], "chat": ["seq"], "build_order": ["seq"], "player_stats": []}


def make_player(slot: int, depth: str = "stats", **overrides: Any) -> dict[str, Any]:
    """Return a PlayerRow with every field set, as a 1v1 ladder player."""
    # fmt: off
    at_stats = depth != "summary"
    player: dict[str, Any] = {
        "pid": slot + 1, "uid": slot, "sid": slot, "team": slot + 1,
        "name": ["Serral", "Maru"][slot % 2], "clan_tag": ["BSTS", None][slot % 2],
        "toon_handle": f"2-S2-1-{1000 + slot}", "region_id": 2, "subregion": 1, "toon_id": 1000 + slot,
        "is_human": True, "is_observer": False, "is_referee": False, "ai_difficulty": None,
        "pick_race": ["Zerg", "Random"][slot % 2], "play_race": ["Zerg", "Terran"][slot % 2],
        "result": ["Win", "Loss"][slot % 2], "handicap": 100, "color": ["B4141E", "0042FF"][slot % 2],
        "highest_league": 7, "combined_race_levels": 300 + slot, "mmr_lobby": 6500 + slot,
        "mmr_meta": 6600 + slot, "mmr_meta_raw": 6600 + slot, "apm_blizzard": 350.5 - slot,
        "apm_computed": None, "seconds_played": None, "commander": None,
        "workers_6m": 40 if at_stats else None, "workers_8m": 60 if at_stats else None,
        "workers_10m": 75 if at_stats else None, "bases_6m": 3 if at_stats else None,
        "bases_8m": 4 if at_stats else None, "bases_10m": 5 if at_stats else None,
        "army_value_8m": 3000 if at_stats else None, "supply_blocked_s": 12.5 if at_stats else None,
        "spending_quotient": 95.0 if at_stats else None, "units_lost": 20 if at_stats else None,
        "units_killed": 30 if at_stats else None,
    }
    # fmt: on
    player.update(overrides)
    return player


def make_result(
    sha: str | None = "a" * 64,
    *,
    status: str = "ok",
    depth: str = "stats",
    match_key: str | None = "mk-1",
    map_name: str = "Alcyone LE",
    **replay_overrides: Any,
) -> Any:  # a Result; Any so tests can spoil fields without casts
    """Return a Result dict filling every field of result.py: a 1v1, 2 players, 2 chat lines, stats rows."""
    # fmt: off
    if status == "failed":
        return {
            "schema_version": schema.SCHEMA_VERSION, "status": "failed", "sha256": sha, "source": None,
            "size": 1234, "depth_requested": depth, "depth_reached": None, "parse_seconds": 0.01,
            "cpu_seconds": 0.01, "peak_rss_bytes": None, "peak_rss_scope": None, "parser": dict(PARSER),
            "error": {"kind": "parse_error", "type": "MPQError", "message": "bad header", "stage": "archive",
                      "release": "5.0.16.97364"},
            "quality": None, "replay": None, "players": [], "chat": [], "build_order": [], "player_stats": [],
        }
    replay: dict[str, Any] = {
        "sha256": sha, "map_name": map_name, "map_hash": "f" * 64, "played_at": "2024-05-01T12:00:00+00:00",
        "played_at_raw": None, "utc_offset_hours": 2.0, "duration_s": 612.5, "game_loops": 13720,
        "game_speed": "Faster", "release": "5.0.13.92440", "build": 92440, "base_build": 92440,
        "expansion": "LotV", "region": "eu", "game_type": "1v1", "category": "Ladder", "is_ladder": True,
        "is_private": False, "amm": True, "competitive": True, "cooperative": False, "vs_ai": False,
        "has_observers": False, "player_count": 2, "observer_count": 0, "winner_team": 1,
        "match_key": match_key, "random_seed": 424242, "meta_duration_game_s": 857, "depth": depth,
    }
    replay.update(replay_overrides)
    at_stats = depth != "summary"
    error = None
    if status == "partial":
        error = {"kind": "parse_error", "type": "KeyError", "message": "'tracker'", "stage": "stats",
                 "release": "5.0.13.92440"}
    return {
        "schema_version": schema.SCHEMA_VERSION, "status": status, "sha256": sha, "source": "game.SC2Replay",
        "size": 1234, "depth_requested": depth, "depth_reached": depth, "parse_seconds": 0.25,
        "cpu_seconds": 0.2, "peak_rss_bytes": 48_000_000, "peak_rss_scope": "file",
        "parser": dict(PARSER), "error": error, "replay": replay,
        "quality": {"degraded": False, "reasons": [], "raw_values": {}},
        "players": [make_player(0, depth), make_player(1, depth)],
        "chat": [
            {"sender_uid": 0, "sender_pid": 1, "sender_name": "Serral", "channel": "all", "text": "glhf",
             "game_loop": 32, "game_s": 2.0, "real_s": 1.43},
            {"sender_uid": 1, "sender_pid": 2, "sender_name": "Maru", "channel": "all", "text": "gg",
             "game_loop": 13700, "game_s": 856.25, "real_s": 611.61},
        ],
        "build_order": [
            {"pid": pid, "kind": kind, "name": name, "started_loop": loop, "finished_loop": loop + 272,
             "died_loop": None, "started_s": loop / 22.4, "finished_s": (loop + 272) / 22.4}
            for pid, kind, name, loop in [(1, "unit", "Drone", 0), (1, "structure", "Hatchery", 400),
                                          (2, "unit", "SCV", 0), (2, "structure", "SupplyDepot", 380)]
        ] if at_stats else [],
        "player_stats": [
            {"pid": pid, "game_loop": loop, "real_s": loop / 22.4, "minerals": 50 + loop // 10, "vespene": 0,
             "minerals_rate": 500, "vespene_rate": 0, "workers": 12 + loop // 160, "supply_used": 12.0,
             "supply_made": 14.0, "army_value": 0, "minerals_lost": 0, "vespene_lost": 0,
             "minerals_killed": 0, "vespene_killed": 0}
            for pid in (1, 2) for loop in (0, 160, 320)
        ] if at_stats else [],
    }
    # fmt: on


def stat(
    path: str = "/r/a.SC2Replay", size: int = 1234, mtime_ns: int = 1_700_000_000_000_000_000
) -> FileStat:
    return FileStat(path, size, mtime_ns)


def rows(db: Path | Store, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Read rows with a plain sqlite3 connection: the file must need nothing special."""
    if isinstance(db, Store):
        db = Path(db.path)
    conn = sqlite3.connect(db)
    try:
        cursor = conn.execute(sql, params)
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor]
    finally:
        conn.close()


def as_stored(row: dict[str, Any]) -> dict[str, Any]:
    """Return a row as SQLite gives it back: bools become 0/1."""
    return {k: int(v) if isinstance(v, bool) else v for k, v in row.items()}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "replays.db"


@pytest.fixture
def store(db_path: Path):
    with open_store(db_path) as opened:
        yield opened


# --- opening and migrations ---------------------------------------------------------------------------


def test_open_applies_migrations_once_and_sets_pragmas(db_path: Path) -> None:
    open_store(db_path).close()
    with open_store(db_path) as store:
        assert store._conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert store._conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
        assert store._conn.execute("PRAGMA foreign_keys").fetchone() == (0,)  # kept by the writer, not checked
        assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000 == BUSY_TIMEOUT_MS
        assert store._conn.execute("PRAGMA page_size").fetchone() == (PAGE_SIZE,)  # a new database
    migrations = rows(db_path, "SELECT name, applied_at FROM _replaycli_migrations")
    assert [m["name"] for m in migrations] == [
        "m001_initial", "m002_files_error_release", "m003_child_tables_without_rowid", "m004_replay_quality",
        "m005_files_resources", "m006_packs_and_filters", "m007_runs_pool", "m008_integer_replay_ids",
    ]
    assert migrations[0]["applied_at"].endswith("+00:00")
    tables = {r["name"] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"replays", "players", "chat", "build_order", "player_stats", "files", "runs"} <= tables
    views = {r["name"] for r in rows(db_path, "SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert views == {"v_1v1", "v_player_games", "matches", "v_failures"}


def test_tables_match_result_schema(store: Store) -> None:
    def columns(table: str) -> list[str]:
        return [r["name"] for r in rows(store, f"PRAGMA table_info({table})")]

    assert columns("replays") == ["id", *schema.ReplayRow.__annotations__, "stored_at", "first_path", "stored_run",
                                  "degraded", "quality"]
    assert columns("players") == ["replay_id", "slot", *schema.PlayerRow.__annotations__]
    assert columns("chat") == ["replay_id", "seq", *schema.ChatRow.__annotations__]
    assert columns("build_order") == ["replay_id", "seq", *schema.BuildOrderRow.__annotations__]
    assert columns("player_stats") == ["replay_id", *schema.PlayerStatsRow.__annotations__]
    indexes = {r["name"] for r in rows(store, "SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {
        "idx_players_region_id_subregion_toon_id",
        "idx_players_toon_handle",
        "idx_players_name",
        "idx_files_sha256",
        "idx_files_status",
    } <= indexes


def test_in_memory_store_works() -> None:
    with open_store(":memory:") as store:
        counts = store.save_batch([(stat(), make_result())], run_id=1)
        assert counts == BatchCounts(ok=1)
        assert store.summary()["replays"] == 1


def test_not_a_database_raises_store_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as info:
        open_store(garbage)
    assert str(info.value) == f"cannot open database {garbage}: file is not a database"
    assert isinstance(info.value, ReplayCliError)


def test_unwritable_location_raises_store_error(tmp_path: Path) -> None:
    # Root ignores permission bits, so make the "folder" a regular file instead.
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    target = blocker / "db.sqlite"
    with pytest.raises(StoreError) as info:
        open_store(target)
    message = str(info.value)
    assert message.startswith(f"cannot open database {target}: unable to open database file")
    assert "\n" not in message


def test_locked_beyond_timeout_raises_store_error(db_path: Path) -> None:
    open_store(db_path).close()
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    locked = r"^cannot write to database .*database is locked \(another"
    try:
        # Migrated already, so opening needs no lock; the first write waits 100 ms, then gives up.
        with open_store(db_path, busy_timeout_ms=100) as store, pytest.raises(StoreError, match=locked):
            store.save_batch([(stat(), make_result())], run_id=1)
    finally:
        holder.rollback()
        holder.close()


# --- save_batch semantics -----------------------------------------------------------------------------


def test_save_ok_writes_exact_rows(store: Store) -> None:
    result = make_result()
    assert store.save_batch([(stat(), result)], run_id=7) == BatchCounts(ok=1)
    [replay] = rows(store, "SELECT * FROM replays")
    stored_at = replay.pop("stored_at")
    assert stored_at.endswith("+00:00")
    assert json.loads(replay.pop("quality")) == result["quality"]
    assert replay == {"id": 1, **as_stored(result["replay"]), "first_path": "/r/a.SC2Replay", "stored_run": 7,
                      "degraded": 0}
    for table, keys in CHILD_KEYS.items():
        stored = rows(store, f"SELECT * FROM {table}")  # clustered on the key (m003), not insert order
        expected = [
            {"replay_id": 1, **{key: seq for key in keys}, **as_stored(row)}
            for seq, row in enumerate(result[table])
        ]
        assert sorted(stored, key=json.dumps) == sorted(expected, key=json.dumps), table
    assert rows(store, "SELECT * FROM files") == [
        {
            "path": "/r/a.SC2Replay",
            "size": 1234,
            "mtime_ns": 1_700_000_000_000_000_000,
            "sha256": "a" * 64,
            "status": "ok",
            "error_kind": None,
            "error_type": None,
            "error_message": None,
            "error_stage": None,
            "depth": "stats",
            "error_release": None,
            "parse_seconds": 0.25,
            "parser_version": PARSER_VERSION,
            "attempts": 1,
            "first_run": 7,
            "last_run": 7,
            "cpu_seconds": 0.2,
            "peak_rss_bytes": 48_000_000,
            "peak_rss_scope": "file",
            "crc32": None,  # a loose file: no archive directory declares one
            "filter_key": None,  # no ingest filters
        }
    ]


def test_save_partial_keeps_error_fields(store: Store) -> None:
    result = make_result(status="partial", depth="summary")
    assert store.save_batch([(stat(), result)], run_id=1) == BatchCounts(partial=1)
    assert rows(
        store, "SELECT status, depth, error_kind, error_type, error_message, error_stage FROM files"
    ) == [
        {
            "status": "partial",
            "depth": "summary",
            "error_kind": "parse_error",
            "error_type": "KeyError",
            "error_message": "'tracker'",
            "error_stage": "stats",
        }
    ]
    assert rows(store, "SELECT sha256, depth FROM replays") == [{"sha256": "a" * 64, "depth": "summary"}]
    assert len(rows(store, "SELECT * FROM players")) == 2


def test_save_failed_counts_attempts(store: Store) -> None:
    failed = make_result(sha=None, status="failed")
    assert store.save_batch([(stat(), failed)], run_id=1) == BatchCounts(failed=1)
    assert store.save_batch([(stat(), failed)], run_id=2) == BatchCounts(failed=1)
    assert rows(store, "SELECT * FROM files") == [
        {
            "path": "/r/a.SC2Replay",
            "size": 1234,
            "mtime_ns": 1_700_000_000_000_000_000,
            "sha256": None,
            "status": "failed",
            "error_kind": "parse_error",
            "error_type": "MPQError",
            "error_message": "bad header",
            "error_stage": "archive",
            "depth": None,
            "error_release": "5.0.16.97364",
            "parse_seconds": 0.01,
            "parser_version": PARSER_VERSION,
            "attempts": 2,
            "first_run": 1,
            "last_run": 2,
            "cpu_seconds": 0.01,
            "peak_rss_bytes": None,
            "peak_rss_scope": None,
            "crc32": None,
            "filter_key": None,
        }
    ]
    assert rows(store, "SELECT count(*) AS n FROM replays") == [{"n": 0}]


def test_retry_of_failed_path_is_stored_as_ok(store: Store) -> None:
    store.save_batch([(stat(), make_result(status="failed"))], run_id=1)
    assert store.save_batch([(stat(), make_result())], run_id=2) == BatchCounts(ok=1)
    assert rows(store, "SELECT status, sha256, error_kind, attempts, first_run, last_run FROM files") == [
        {"status": "ok", "sha256": "a" * 64, "error_kind": None, "attempts": 2, "first_run": 1, "last_run": 2}
    ]
    assert store.failures() == []


def test_same_path_reparsed_updates_files_row_only(store: Store) -> None:
    store.save_batch([(stat(), make_result())], run_id=1)
    before = rows(store, "SELECT * FROM replays")
    counts = store.save_batch([(stat(mtime_ns=5), make_result(map_name="Changed"))], run_id=2)
    assert counts == BatchCounts(ok=1)
    assert rows(store, "SELECT * FROM replays") == before  # same depth, no force: replay untouched
    assert rows(store, "SELECT status, mtime_ns, attempts, last_run FROM files") == [
        {"status": "ok", "mtime_ns": 5, "attempts": 2, "last_run": 2}
    ]


def test_copy_from_another_path_is_a_duplicate(store: Store) -> None:
    store.save_batch([(stat("/r/a.SC2Replay"), make_result(depth="stats"))], run_id=1)
    before = {t: rows(store, f"SELECT * FROM {t}") for t in ("replays", *CHILD_KEYS)}
    counts = store.save_batch([(stat("/r/copy.SC2Replay"), make_result(depth="summary"))], run_id=2)
    assert counts == BatchCounts(duplicate=1)
    assert {t: rows(store, f"SELECT * FROM {t}") for t in before} == before
    assert rows(store, "SELECT path, status, sha256, depth FROM files ORDER BY path") == [
        {"path": "/r/a.SC2Replay", "status": "ok", "sha256": "a" * 64, "depth": "stats"},
        {"path": "/r/copy.SC2Replay", "status": "duplicate", "sha256": "a" * 64, "depth": "stats"},
    ]


def test_deeper_result_replaces_replay_and_children(store: Store) -> None:
    store.save_batch([(stat("/r/a.SC2Replay"), make_result(depth="summary", status="partial"))], run_id=1)
    assert rows(store, "SELECT count(*) AS n FROM player_stats") == [{"n": 0}]
    deeper = make_result(depth="stats")
    assert store.save_batch([(stat("/r/b.SC2Replay"), deeper)], run_id=2) == BatchCounts(ok=1)
    assert rows(store, "SELECT depth, first_path, stored_run FROM replays") == [
        {"depth": "stats", "first_path": "/r/a.SC2Replay", "stored_run": 2}
    ]
    assert rows(store, "SELECT slot, workers_8m FROM players ORDER BY slot") == [
        {"slot": 0, "workers_8m": 60},
        {"slot": 1, "workers_8m": 60},
    ]
    assert rows(store, "SELECT count(*) AS n FROM player_stats") == [{"n": len(deeper["player_stats"])}]
    assert rows(store, "SELECT count(*) AS n FROM build_order") == [{"n": len(deeper["build_order"])}]


def test_force_replaces_once_per_run(store: Store) -> None:
    store.save_batch([(stat("/r/a.SC2Replay"), make_result(map_name="Old"))], run_id=1)
    forced = [
        (stat("/r/a.SC2Replay"), make_result(map_name="New")),
        (stat("/r/copy.SC2Replay"), make_result(map_name="Copy")),
    ]
    assert store.save_batch(forced, run_id=2, replace=True) == BatchCounts(ok=1, duplicate=1)
    assert rows(store, "SELECT map_name, stored_run FROM replays") == [{"map_name": "New", "stored_run": 2}]
    assert rows(store, "SELECT count(*) AS n FROM players") == [{"n": 2}]
    assert rows(store, "SELECT path, status FROM files ORDER BY path") == [
        {"path": "/r/a.SC2Replay", "status": "ok"},
        {"path": "/r/copy.SC2Replay", "status": "duplicate"},
    ]


def test_same_sha_twice_in_one_batch(store: Store) -> None:
    batch = [(stat("/r/a.SC2Replay"), make_result()), (stat("/r/b.SC2Replay"), make_result())]
    assert store.save_batch(batch, run_id=1) == BatchCounts(ok=1, duplicate=1)
    assert rows(store, "SELECT count(*) AS n FROM players") == [{"n": 2}]


# --- atomicity ----------------------------------------------------------------------------------------


def _bad_player_name(result: dict[str, Any]) -> None:
    result["players"][1]["name"] = None  # NOT NULL


def _unbindable_chat(result: dict[str, Any]) -> None:
    result["chat"][1]["text"] = {"not": "a string"}  # sqlite3 cannot bind a dict


def _huge_integer(result: dict[str, Any]) -> None:
    result["replay"]["game_loops"] = 2**64  # OverflowError when bound


def _no_replay(result: dict[str, Any]) -> None:
    result["replay"] = None  # malformed: status ok without a replay


@pytest.mark.parametrize("spoil", [_bad_player_name, _unbindable_chat, _huge_integer, _no_replay])
def test_a_file_that_cannot_be_written_fails_alone(store: Store, spoil: Any) -> None:
    """Its rows are rolled back to its SAVEPOINT; it is recorded as store_error; the batch commits."""
    store.save_batch([(stat("/r/before.SC2Replay"), make_result("b" * 64))], run_id=1)
    bad = make_result("c" * 64)
    spoil(bad)
    batch = [
        (stat("/r/good.SC2Replay"), make_result("d" * 64)),
        (stat("/r/bad.SC2Replay"), bad),
        (stat("/r/failed.SC2Replay"), make_result(status="failed")),
        (stat("/r/after.SC2Replay"), make_result("e" * 64)),
    ]
    counts = store.save_batch(batch, run_id=2)
    assert (counts.ok, counts.failed) == (2, 2)
    assert [path for path, _type, _reason in counts.store_errors] == ["/r/bad.SC2Replay"]
    assert not store._conn.in_transaction
    assert rows(store, "SELECT sha256 FROM replays ORDER BY sha256") == [{"sha256": c * 64} for c in "bde"]
    for table in CHILD_KEYS:  # the rolled-back file left no child rows: every one belongs to b, d or e
        assert rows(store, f"SELECT DISTINCT r.sha256 FROM {table} JOIN replays r ON r.id = replay_id "
                           "ORDER BY r.sha256") == [{"sha256": c * 64} for c in "bde"]
        assert rows(store, f"SELECT count(*) AS n FROM {table} WHERE replay_id NOT IN (SELECT id FROM replays)") \
            == [{"n": 0}]
    [bad_row] = rows(store, "SELECT status, error_kind, error_stage, error_message FROM files WHERE path = ?",
                     ("/r/bad.SC2Replay",))
    assert bad_row["status"] == "failed" and bad_row["error_kind"] == "store_error"
    assert bad_row["error_stage"] == "store" and "\n" not in bad_row["error_message"]
    assert rows(store, "SELECT count(*) AS n FROM files") == [{"n": 5}]


def test_closed_connection_raises_store_error(db_path: Path) -> None:
    store = open_store(db_path)
    store.close()
    with pytest.raises(StoreError, match=r"^cannot write to database .*closed database"):
        store.save_batch([(stat(), make_result())], run_id=1)
    assert rows(db_path, "SELECT count(*) AS n FROM replays") == [{"n": 0}]


# --- two writers ----------------------------------------------------------------------------------------


def _write_many(db: str, worker: int, start: Any, errors: Any) -> None:
    """Open the store and save PER_PROCESS distinct results in small batches (runs in a child process)."""
    try:
        start.wait()
        with open_store(db) as store:
            run_id = store.begin_run("ingest", {"worker": worker}, workers=1, depth="stats")
            batch = []
            for n in range(PER_PROCESS):
                sha = f"{worker:02d}{n:062d}"
                batch.append((stat(f"/w{worker}/{n}.SC2Replay"), make_result(sha, match_key=sha)))
                if len(batch) == 10:
                    store.save_batch(batch, run_id)
                    batch = []
            store.finish_run(run_id, {"ok": PER_PROCESS}, 1.0, 0, False)
    except BaseException as exc:
        errors.put(f"{type(exc).__name__}: {exc}")
        raise


def test_two_processes_write_the_same_new_database(db_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    workers = [context.Process(target=_write_many, args=(str(db_path), w, start, errors)) for w in (1, 2)]
    for process in workers:
        process.start()
    start.set()  # both open the brand-new file (and migrate it) at the same moment
    for process in workers:
        process.join(timeout=120)
    reported = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert reported == []
    assert [p.exitcode for p in workers] == [0, 0]
    assert rows(db_path, "SELECT count(*) AS n, count(DISTINCT sha256) AS d FROM replays") == [
        {"n": 2 * PER_PROCESS, "d": 2 * PER_PROCESS}
    ]
    assert rows(db_path, "SELECT count(*) AS n FROM players") == [{"n": 4 * PER_PROCESS}]
    assert rows(db_path, "SELECT status, count(*) AS n FROM files GROUP BY status") == [
        {"status": "ok", "n": 2 * PER_PROCESS}
    ]
    assert rows(db_path, "SELECT name FROM _replaycli_migrations") == [
        {"name": migration.__name__} for migration in MIGRATIONS]
    assert rows(db_path, "SELECT count(*) AS n FROM runs WHERE exit_code = 0") == [{"n": 2}]


# --- reads -------------------------------------------------------------------------------------------------


def test_lookup_files_queries_in_chunks(store: Store) -> None:
    count = 2 * LOOKUP_CHUNK + 100
    store.save_batch([(stat(f"/r/{n:05d}"), make_result(status="failed")) for n in range(count)], run_id=1)
    queries: list[str] = []
    store._conn.set_trace_callback(queries.append)
    wanted = [f"/r/{n:05d}" for n in range(count + 50)]  # 50 unknown paths
    found = store.lookup_files(wanted)
    store._conn.set_trace_callback(None)
    assert len(found) == count
    assert found["/r/00007"] == FileRecord(
        "/r/00007", 1234, 1_700_000_000_000_000_000, "failed", None, "a" * 64, parser_version=PARSER_VERSION
    )
    assert f"/r/{count:05d}" not in found
    assert len([q for q in queries if "FROM files" in q]) == 3  # 500 + 500 + 150
    assert store.lookup_files([]) == {}


def test_runs_are_recorded(store: Store) -> None:
    run_id = store.begin_run("ingest", {"force": False, "paths": ["/r"]}, workers=4, depth="stats")
    counts = {"discovered": 10, "parsed": 8, "ok": 6, "partial": 1, "duplicate": 1, "skipped": 2, "failed": 0}
    store.finish_run(run_id, counts, wall_seconds=2.0, exit_code=0, interrupted=False)
    [run] = rows(store, "SELECT * FROM runs")
    assert run["started_at"].endswith("+00:00") and run["finished_at"].endswith("+00:00")
    del run["started_at"], run["finished_at"]
    assert run == {
        "id": run_id,
        "command": "ingest",
        "options": '{"force": false, "paths": ["/r"]}',
        "workers": 4,
        "depth": "stats",
        "counts": json.dumps(counts, sort_keys=True),
        **counts,
        "wall_seconds": 2.0,
        "files_per_second": 4.0,
        "exit_code": 0,
        "interrupted": 0,
        "filtered": 0,  # m006: not in this run's counts, so none
        # m007: no pool was watched, so nothing is known
        "workers_started": None, "replaced_crash": None, "replaced_memory": None, "replaced_recycle": None,
        "replaced_timeout": None, "max_queued": None, "max_in_flight": None, "max_worker_rss_bytes": None,
    }
    with pytest.raises(StoreError, match="no such run"):
        store.finish_run(run_id + 1, counts, 1.0, 0, False)
    pool = {"workers_started": 5, "workers_replaced": {"crash": 1, "memory": 2, "recycle": 3, "timeout": 4},
            "max_queued": 6, "max_in_flight": 7, "max_worker_rss_bytes": 8 * 1024**2}
    store.finish_run(run_id, counts, 2.0, 0, False, pool=pool)
    assert rows(store, "SELECT workers_started, replaced_crash, replaced_memory, replaced_recycle, replaced_timeout, "
                       "max_queued, max_in_flight, max_worker_rss_bytes FROM runs") == [{
        "workers_started": 5, "replaced_crash": 1, "replaced_memory": 2, "replaced_recycle": 3, "replaced_timeout": 4,
        "max_queued": 6, "max_in_flight": 7, "max_worker_rss_bytes": 8 * 1024**2}]


def test_failures_and_summary(store: Store) -> None:
    run_id = store.begin_run("ingest", {}, workers=1, depth="stats")
    store.save_batch(
        [
            (stat("/r/a.SC2Replay"), make_result("a" * 64)),
            (stat("/r/copy.SC2Replay"), make_result("a" * 64)),
            (stat("/r/b.SC2Replay"), make_result("b" * 64, map_name="Oceanborn LE", game_type="2v2")),
            (stat("/r/bad.SC2Replay"), make_result(None, status="failed")),
            (stat("/r/timeout.SC2Replay"), make_result("a" * 64, status="failed")),
        ],
        run_id,
    )
    store.finish_run(run_id, {"ok": 2}, 1.0, 1, False)
    base = {
        "error_kind": "parse_error",
        "error_type": "MPQError",
        "error_message": "bad header",
        "error_stage": "archive",
        "last_run": run_id,
    }
    assert store.failures() == [
        {"path": "/r/bad.SC2Replay", **base, "build": None, "release": "5.0.16.97364"},  # from the header
        {"path": "/r/timeout.SC2Replay", **base, "build": 92440, "release": "5.0.13.92440"},
    ]
    assert [f["path"] for f in store.failures(limit=1)] == ["/r/bad.SC2Replay"]
    summary = store.summary()
    measured = ("last_runs", "degraded_by_reason", "cost_by_depth", "cost_by_release", "heaviest_files")
    assert {k: v for k, v in summary.items() if k not in measured} == {
        "replays": 2,
        "by_release": [{"release": "5.0.13.92440", "base_build": 92440, "replays": 2}],
        "by_game_type": [{"game_type": "1v1", "replays": 1}, {"game_type": "2v2", "replays": 1}],
        "top_maps": [{"map_name": "Alcyone LE", "replays": 1}, {"map_name": "Oceanborn LE", "replays": 1}],
        "players": 4,
        "distinct_toons": 2,
        "files_by_status": {"duplicate": 1, "failed": 2, "ok": 2},
    }
    assert [(r["id"], r["exit_code"]) for r in summary["last_runs"]] == [(run_id, 1)]
    # Three stored files measured 48 MB each (make_result); failures carry no measurement.
    assert summary["degraded_by_reason"] == []
    assert summary["cost_by_depth"] == [{"depth": "stats", "files": 3, "p50_seconds": 0.25, "p95_seconds": 0.25,
                                         "p50_peak_mib": 45.8, "p95_peak_mib": 45.8, "max_peak_mib": 45.8}]
    assert [row["path"] for row in summary["heaviest_files"]] == [
        "/r/a.SC2Replay", "/r/b.SC2Replay", "/r/copy.SC2Replay"]


def test_views_return_expected_rows(store: Store) -> None:
    observer = make_player(2, is_observer=True, name="Caster", pid=None, team=None)
    with_observer = make_result(
        "b" * 64,
        match_key="mk-1",
        has_observers=True,
        observer_count=1,
        played_at="2024-05-01T11:59:59+00:00",
    )
    with_observer["players"].append(observer)
    store.save_batch(
        [
            (stat("/r/a.SC2Replay"), make_result("a" * 64, match_key="mk-1")),
            (stat("/r/b.SC2Replay"), with_observer),
            (stat("/r/bad.SC2Replay"), make_result("a" * 64, status="failed")),
        ],
        run_id=1,
    )
    one_v_one = rows(store, "SELECT * FROM v_1v1 ORDER BY sha256")
    assert [
        (
            r["sha256"][0],
            r["p1_name"],
            r["p1_race"],
            r["p1_result"],
            r["p1_mmr"],
            r["p2_name"],
            r["p2_race"],
            r["p2_result"],
            r["p2_mmr"],
        )
        for r in one_v_one
    ] == [
        ("a", "Serral", "Zerg", "Win", 6600, "Maru", "Terran", "Loss", 6601),
        ("b", "Serral", "Zerg", "Win", 6600, "Maru", "Terran", "Loss", 6601),
    ]
    games = rows(
        store,
        "SELECT replay_sha256, name, play_race, result, toon_id FROM v_player_games "
        "ORDER BY replay_sha256, slot",
    )
    assert [(g["replay_sha256"][0], g["name"]) for g in games] == [
        ("a", "Serral"),
        ("a", "Maru"),
        ("b", "Serral"),
        ("b", "Maru"),  # the observer is left out
    ]
    assert rows(store, "SELECT * FROM matches") == [
        {
            "match_key": "mk-1",
            "copies": 2,
            "first_played_at": "2024-05-01T11:59:59+00:00",
            "map_name": "Alcyone LE",
            "sha256s": json.dumps(["a" * 64, "b" * 64], separators=(",", ":")),
        }
    ]
    assert [(f["path"], f["build"]) for f in rows(store, "SELECT * FROM v_failures")] == [
        ("/r/bad.SC2Replay", 92440)
    ]


def test_ensure_shape_repairs_a_dropped_view(store: Store) -> None:
    store._conn.execute("DROP VIEW matches")
    store.ensure_shape()
    store.ensure_shape()
    assert rows(store, "SELECT count(*) AS n FROM matches") == [{"n": 0}]


def test_database_opens_with_plain_sqlite_utils(db_path: Path, store: Store) -> None:
    import sqlite_utils

    store.save_batch([(stat(), make_result())], run_id=1)
    db = sqlite_utils.Database(db_path)
    assert db["players"].count == 2
    assert [fk.other_table for fk in db.table("chat").foreign_keys] == ["replays"]
    db.close()


# --- a real replay --------------------------------------------------------------------------------------


def test_stores_a_real_parse(store: Store, game) -> None:
    from replay_cli import parse

    replay_file = game(REAL_1V1)
    data = replay_file.read_bytes()
    result = parse.parse_replay(data, depth="stats", source=str(replay_file))
    assert result["status"] in ("ok", "partial"), result["error"]
    file_stat = FileStat(str(replay_file), len(data), replay_file.stat().st_mtime_ns)
    counts = store.save_batch([(file_stat, result)], run_id=store.begin_run("ingest", {}, 0, "stats"))
    assert counts == BatchCounts(**{result["status"]: 1})
    assert rows(store, "SELECT sha256, map_name, game_type FROM replays") == [
        {
            "sha256": result["sha256"],
            "map_name": result["replay"]["map_name"],
            "game_type": result["replay"]["game_type"],
        }
    ]
    assert len(rows(store, "SELECT * FROM players")) == len(result["players"])
    assert len(rows(store, "SELECT * FROM player_stats")) == len(
        {(s["pid"], s["game_loop"]) for s in result["player_stats"]}
    )
    assert store.lookup_files([str(replay_file)])[str(replay_file)].sha256 == result["sha256"]
    assert copy.deepcopy(result) == result  # the store must not mutate what it was given


# --- invariants under random histories ----------------------------------------------------------------

SAVE = st.tuples(
    st.sampled_from(["/r/a", "/r/b", "/r/c"]),
    st.sampled_from(["1" * 64, "2" * 64]),
    st.sampled_from(["ok", "partial", "failed"]),
    st.sampled_from(schema.DEPTHS),
    st.booleans(),  # replace
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(st.lists(SAVE, min_size=1, max_size=4), min_size=1, max_size=5))
def test_random_histories_keep_the_store_consistent(
    history: list[list[tuple[str, str, str, str, bool]]],
) -> None:
    deepest: dict[str, int] = {}
    with open_store(":memory:") as store:
        for run_id, batch in enumerate(history, start=1):
            items = [
                (stat(path), make_result(sha, status=status, depth=depth))
                for path, sha, status, depth, _ in batch
            ]
            forced = any(replace for *_, replace in batch)
            store.save_batch(items, run_id, replace=forced)
            for _, sha, status, depth, _ in batch:
                if status != "failed" and not forced:
                    deepest[sha] = max(deepest.get(sha, -1), schema.DEPTHS.index(depth))
        conn = store._conn
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # Never a replay without its players, never a stored file pointing at a missing replay.
        assert conn.execute(
            "SELECT count(*) FROM replays WHERE id NOT IN (SELECT replay_id FROM players)"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM files WHERE status != 'failed' AND sha256 NOT IN (SELECT sha256 FROM replays)"
        ).fetchone() == (0,)
        if not any(replace for batch in history for *_, replace in batch):
            stored = dict(conn.execute("SELECT sha256, depth FROM replays"))
            assert {sha: schema.DEPTHS.index(depth) for sha, depth in stored.items()} == deepest


def test_a_database_from_schema_v1_is_migrated_forward(db_path: Path) -> None:
    """A database made before m002 gains files.error_release on open, its rows intact."""
    import sqlite_utils

    from replay_cli.migrations import m001_initial

    old = sqlite_utils.Database(db_path)
    m001_initial(old)
    old["_replaycli_migrations"].insert({"name": "m001_initial", "applied_at": "2026-11-01T00:00:00+00:00"})
    old["files"].insert({"path": "/old.SC2Replay", "status": "ok", "size": 1, "mtime_ns": 1})
    old.close()
    with open_store(db_path) as store:
        assert "error_release" in {c.name for c in store.db["files"].columns}
        assert rows(store, "SELECT path, error_release FROM files") == [
            {"path": "/old.SC2Replay", "error_release": None}
        ]


def _insert_before_m003(db: Any, result: dict[str, Any], path: str) -> None:
    """Write a result as the writer did up to m002: every child row keyed by the replay's sha256."""
    sha = result["sha256"]
    db["replays"].insert({**as_stored(result["replay"]), "sha256": sha, "first_path": path, "stored_run": 1})
    for table, keys in CHILD_KEYS.items():
        db[table].insert_all([{"replay_sha256": sha, **{key: seq for key in keys}, **as_stored(row)}
                              for seq, row in enumerate(result[table])])


def _by_sha(conn: Any, table: str, key: str) -> list[dict[str, Any]]:
    """A child table's rows with the replay's sha256 in place of whichever key the schema uses."""
    conn.row_factory = sqlite3.Row
    try:
        found = [dict(row) for row in conn.execute(f"SELECT r.sha256 AS replay_sha256, c.* FROM {table} c "
                                                   f"JOIN replays r ON r.{key}")]
    finally:
        conn.row_factory = None
    for row in found:
        row.pop("replay_id", None)
    return sorted(found, key=json.dumps)


def test_migrations_keep_every_row_from_a_database_before_m003(db_path: Path) -> None:
    # m003 clusters the child tables; m008 re-keys them on the integer replay id.
    import sqlite_utils

    old = sqlite_utils.Database(sqlite3.connect(db_path, isolation_level=None))
    old["_replaycli_migrations"].create({"name": str, "applied_at": str}, pk="name")
    for number, migration in enumerate(MIGRATIONS[:7], start=1):
        if number == 3:
            _insert_before_m003(old, make_result("a" * 64), "/r/a.SC2Replay")
            _insert_before_m003(old, make_result("b" * 64), "/r/b.SC2Replay")
        old.execute("BEGIN")  # each migration in its own transaction, as the store runs them
        migration(old)
        old.execute("INSERT INTO _replaycli_migrations VALUES (?, '2026-11-01')", [migration.__name__])
        old.execute("COMMIT")
    before = {table: _by_sha(old.conn, table, "sha256 = c.replay_sha256") for table in CHILD_TABLES}
    old.close()
    with open_store(db_path) as store:
        conn = store._conn
        after = {table: _by_sha(conn, table, "id = c.replay_id") for table in CHILD_TABLES}
        clustered = {name for name, sql in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
                     if sql.endswith("WITHOUT ROWID")}
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert {row[2:5] for row in conn.execute("PRAGMA foreign_key_list(build_order)")} == \
            {("replays", "replay_id", "id")}
        assert rows(store, "SELECT id, sha256 FROM replays ORDER BY id") == [
            {"id": 1, "sha256": "a" * 64}, {"id": 2, "sha256": "b" * 64}]
        assert rows(store, "SELECT count(*) AS n FROM v_1v1") == [{"n": 2}]  # views rebuilt
        store.save_batch([(stat("/r/c.SC2Replay"), make_result("c" * 64))], run_id=2)
        assert rows(store, "SELECT DISTINCT replay_id FROM players ORDER BY 1") == [
            {"replay_id": 1}, {"replay_id": 2}, {"replay_id": 3}]
    assert after == before and all(before.values())
    assert clustered == set(CHILD_TABLES)
    assert rows(db_path, "PRAGMA page_size") == [{"page_size": 4096}]  # an existing database keeps its pages


# --- packed child rows (rowpack.py) ------------------------------------------------------------


def test_packed_rows_store_what_plain_rows_store(tmp_path: Path) -> None:
    result = make_result()
    repeated = dict(result["player_stats"][0], minerals=999)  # a repeated sample: the last one wins
    result["player_stats"].append(repeated)
    packed = pack(copy.deepcopy(result))
    assert packed_bytes(packed) is not None and packed["build_order"] == packed["player_stats"] == []
    with open_store(tmp_path / "plain.db") as plain, open_store(tmp_path / "packed.db") as other:
        assert plain.save_batch([(stat(), result)], run_id=1) == other.save_batch([(stat(), packed)], run_id=1)
    for table in CHILD_TABLES:
        query = f"SELECT * FROM {table} ORDER BY 1, 2, 3"
        assert rows(tmp_path / "packed.db", query) == rows(tmp_path / "plain.db", query) != [], table
    assert {"minerals": 999} in rows(tmp_path / "packed.db", "SELECT minerals FROM player_stats")


def _reordered_database() -> bytes:
    """A database with the packed tables created in another order: their root pages differ."""
    conn = sqlite3.connect(":memory:")
    for _table, _root, create_sql in reversed(LAYOUT):
        conn.execute(create_sql)
    return conn.serialize()


@pytest.mark.parametrize("spoiled", [b"not a database " * 100, _reordered_database()], ids=["garbage", "reordered"])
def test_unreadable_packed_rows_fail_that_file_alone(store: Store, spoiled: bytes) -> None:
    bad = pack(make_result("c" * 64))
    bad[PACKED_KEY] = spoiled
    counts = store.save_batch([(stat("/r/good.SC2Replay"), pack(make_result("d" * 64))),
                               (stat("/r/bad.SC2Replay"), bad)], run_id=2)
    assert (counts.ok, counts.failed) == (1, 1)
    assert [path for path, _type, _reason in counts.store_errors] == ["/r/bad.SC2Replay"]
    assert rows(store, "SELECT sha256 FROM replays") == [{"sha256": "d" * 64}]
    assert store._conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert rows(store, "SELECT count(*) AS n FROM build_order WHERE replay_id NOT IN (SELECT id FROM replays)") \
        == [{"n": 0}]


def test_a_result_sqlite_cannot_hold_travels_as_plain_rows() -> None:
    result = make_result()
    _unbindable_chat(result)
    assert pack(result) is result  # the writer binds it row by row and records the store_error
