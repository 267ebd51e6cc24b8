"""The store's schema: numbered migrations (frozen once released) and the views `ensure_shape()` keeps current.

A migration is a function `mNNN_<what>(db)`; store.py runs each one that is not yet recorded in
`_replaycli_migrations`, inside its own BEGIN IMMEDIATE transaction. Never edit a released migration: add the
next number. The column lists below are schema v1 of result.py written out, so a field added to result.py
fails `test_tables_match_result_schema` until a new migration adds its column.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlite_utils import Database

MIGRATIONS_TABLE = "_replaycli_migrations"

# fmt: off
# result.py ReplayRow, in declaration order; bools are stored as 0/1 integers.
REPLAY_COLUMNS: dict[str, Any] = {
    "sha256": str, "map_name": str, "map_hash": str, "played_at": str, "played_at_raw": str,
    "utc_offset_hours": float, "duration_s": float, "game_loops": int, "game_speed": str, "release": str,
    "build": int, "base_build": int, "expansion": str, "region": str, "game_type": str, "category": str,
    "is_ladder": bool, "is_private": bool, "amm": bool, "competitive": bool, "cooperative": bool,
    "vs_ai": bool, "has_observers": bool, "player_count": int, "observer_count": int, "winner_team": int,
    "match_key": str, "random_seed": int, "meta_duration_game_s": int, "depth": str,
}
# Store bookkeeping on top of ReplayRow: when, from which path and by which run the row was (re)written.
REPLAY_EXTRA_COLUMNS: dict[str, Any] = {"stored_at": str, "first_path": str, "stored_run": int}
# m004: the result's quality block. `degraded` (0/1) to filter on; `quality` the whole block as JSON.
REPLAY_QUALITY_COLUMNS: dict[str, Any] = {"degraded": bool, "quality": str}

PLAYER_COLUMNS: dict[str, Any] = {
    "pid": int, "uid": int, "sid": int, "team": int, "name": str, "clan_tag": str, "toon_handle": str,
    "region_id": int, "subregion": int, "toon_id": int, "is_human": bool, "is_observer": bool,
    "is_referee": bool, "ai_difficulty": str, "pick_race": str, "play_race": str, "result": str,
    "handicap": int, "color": str, "highest_league": int, "combined_race_levels": int, "mmr_lobby": int,
    "mmr_meta": int, "mmr_meta_raw": int, "apm_blizzard": float, "apm_computed": float,
    "seconds_played": float, "commander": str, "workers_6m": int, "workers_8m": int, "workers_10m": int,
    "bases_6m": int, "bases_8m": int, "bases_10m": int, "army_value_8m": int, "supply_blocked_s": float,
    "spending_quotient": float, "units_lost": int, "units_killed": int,
}
CHAT_COLUMNS: dict[str, Any] = {
    "sender_uid": int, "sender_pid": int, "sender_name": str, "channel": str, "text": str,
    "game_loop": int, "game_s": float, "real_s": float,
}
BUILD_ORDER_COLUMNS: dict[str, Any] = {
    "pid": int, "kind": str, "name": str, "started_loop": int, "finished_loop": int, "died_loop": int,
    "started_s": float, "finished_s": float,
}
PLAYER_STATS_COLUMNS: dict[str, Any] = {
    "pid": int, "game_loop": int, "real_s": float, "minerals": int, "vespene": int, "minerals_rate": int,
    "vespene_rate": int, "workers": int, "supply_used": float, "supply_made": float, "army_value": int,
    "minerals_lost": int, "vespene_lost": int, "minerals_killed": int, "vespene_killed": int,
}
FILE_COLUMNS_V1: dict[str, Any] = {
    "path": str, "size": int, "mtime_ns": int, "sha256": str, "status": str, "error_kind": str,
    "error_type": str, "error_message": str, "error_stage": str, "depth": str, "parse_seconds": float,
    "parser_version": str, "attempts": int, "first_run": int, "last_run": int,
}
# m005: what the parse cost the worker: its CPU seconds and the process's peak memory (meter.py).
FILE_RESOURCE_COLUMNS: dict[str, Any] = {"cpu_seconds": float, "peak_rss_bytes": int, "peak_rss_scope": str}
# m006: a pack member's CRC-32 (zip), part of what says it changed; the filters that decided the row.
FILE_PACK_COLUMNS: dict[str, Any] = {"crc32": int, "filter_key": str}
FILE_COLUMNS: dict[str, Any] = {  # m002, m005, m006
    **FILE_COLUMNS_V1, "error_release": str, **FILE_RESOURCE_COLUMNS, **FILE_PACK_COLUMNS,
}
RUN_COUNT_NAMES_V1: tuple[str, ...] = ("discovered", "parsed", "ok", "partial", "duplicate", "skipped", "failed")
RUN_COUNT_NAMES: tuple[str, ...] = (*RUN_COUNT_NAMES_V1, "filtered")  # m006
RUN_COLUMNS_V1: dict[str, Any] = {
    "id": int, "started_at": str, "finished_at": str, "command": str, "options": str, "workers": int,
    "depth": str, "counts": str, **{name: int for name in RUN_COUNT_NAMES_V1}, "wall_seconds": float,
    "files_per_second": float, "exit_code": int, "interrupted": bool,
}
# m007: what the run's worker pool did (poolwatch.py says exactly what each number counts).
RUN_POOL_COLUMNS: dict[str, Any] = {
    "workers_started": int, "replaced_crash": int, "replaced_memory": int, "replaced_recycle": int,
    "replaced_timeout": int, "max_queued": int, "max_in_flight": int, "max_worker_rss_bytes": int,
}
RUN_COLUMNS: dict[str, Any] = {**RUN_COLUMNS_V1, "filtered": int, **RUN_POOL_COLUMNS}
# m006: one row per pack read to the end, so an unchanged pack is skipped without being opened.
PACK_COLUMNS: dict[str, Any] = {
    "path": str, "size": int, "mtime_ns": int, "members": int, "depth": str, "filter_key": str, "last_run": int,
}
# fmt: on

PLAYER_REQUIRED = ("name", "is_human", "is_observer", "is_referee")

# Child tables: name -> (row columns, key column after replay_id, or None when the pk is in the row).
CHILD_TABLES: dict[str, tuple[dict[str, Any], str | None]] = {
    "players": (PLAYER_COLUMNS, "slot"),
    "chat": (CHAT_COLUMNS, "seq"),
    "build_order": (BUILD_ORDER_COLUMNS, "seq"),
    "player_stats": (PLAYER_STATS_COLUMNS, None),
}


def child_columns(table: str) -> list[str]:
    """A child table's columns after replay_id: its sequence number where it has one, then the row's."""
    columns, seq_column = CHILD_TABLES[table]
    return [*([seq_column] if seq_column else []), *columns]


def child_insert_verb(table: str) -> str:
    """How a child row goes in. player_stats is keyed on (pid, game_loop): a repeated sample
    replaces the earlier one (last wins) instead of sinking its whole batch."""
    return "INSERT" if CHILD_TABLES[table][1] else "INSERT OR REPLACE"


# A child row's values in column order, as one tuple built in C (every child table has several
# columns, so each getter returns a tuple): the store binds them and pool workers pack them
# (rowpack.py), both once per row.
ROW_VALUES = {table: operator.itemgetter(*columns) for table, (columns, _) in CHILD_TABLES.items()}


def child_params(table: str, rows: Sequence[Mapping[str, Any]], *lead: Any) -> Iterator[tuple[Any, ...]]:
    """Each row's values in child_columns order after `lead` (the replay id, or nothing); the
    sequence number, where the table has one, is the row's position."""
    values_of = ROW_VALUES[table]
    if CHILD_TABLES[table][1]:
        return ((*lead, seq, *values_of(row)) for seq, row in enumerate(rows))
    return ((*lead, *values_of(row)) for row in rows)

# The declared type of each column kind, as sqlite-utils writes them (bools are 0/1 integers).
SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "INTEGER"}


def _create_child(
    db: Database, name: str, columns: dict[str, Any], seq_column: str | None, not_null: tuple[str, ...] = ()
) -> None:
    keys: dict[str, Any] = {"replay_sha256": str}
    pk: tuple[str, ...] = ("replay_sha256", "pid", "game_loop")
    if seq_column is not None:
        keys[seq_column] = int
        pk = ("replay_sha256", seq_column)
    db[name].create(  # type: ignore[union-attr]
        {**keys, **columns},
        pk=pk,
        not_null=[*keys, *pk, *not_null],
        foreign_keys=[("replay_sha256", "replays", "sha256")],
    )


def m001_initial(db: Database) -> None:
    """Create the replays, child, files and runs tables with their indexes (schema v1)."""
    db["replays"].create(  # type: ignore[union-attr]
        {**REPLAY_COLUMNS, **REPLAY_EXTRA_COLUMNS},
        pk="sha256",
        not_null=["sha256", "depth", "vs_ai", "has_observers", "player_count", "observer_count"],
    )
    for name, (columns, seq_column) in CHILD_TABLES.items():
        # A players row without a name or flags is a parser bug: fail the batch rather than store it.
        required = PLAYER_REQUIRED if name == "players" else ()
        _create_child(db, name, columns, seq_column, required)
    db["players"].create_index(["region_id", "subregion", "toon_id"])  # type: ignore[union-attr]
    db["players"].create_index(["toon_handle"])  # type: ignore[union-attr]
    db["players"].create_index(["name"])  # type: ignore[union-attr]
    db["build_order"].create_index(["replay_sha256", "pid"])  # type: ignore[union-attr]
    db["replays"].create_index(["match_key"])  # type: ignore[union-attr]
    # files.sha256 has no foreign key on purpose: a failed file has no replay row.
    db["files"].create(FILE_COLUMNS_V1, pk="path", not_null=["path", "status"])  # type: ignore[union-attr]
    db["files"].create_index(["sha256"])  # type: ignore[union-attr]
    db["files"].create_index(["status"])  # type: ignore[union-attr]
    db["runs"].create(RUN_COLUMNS_V1, pk="id", not_null=["id", "started_at"])  # type: ignore[union-attr]


def m002_files_error_release(db: Database) -> None:
    """Record the header's release of a failed file, so failures can be grouped by build."""
    db["files"].add_column("error_release", str)  # type: ignore[union-attr]


# Covered by the (replay_sha256, seq) primary key: a replay's few hundred rows are one range scan.
REDUNDANT_INDEXES = ("idx_build_order_replay_sha256_pid",)


def m003_child_tables_without_rowid(db: Database) -> None:
    """Store the child tables clustered on their primary keys (WITHOUT ROWID).

    A rowid table with a composite key keeps every row twice, in the table and in the key's index.
    Clustered, the database is half the size (61 -> 29 MB for the corpus at stats) and the single
    writer spends 30% less CPU per batch (1.24 -> 0.87 s), CPU that two workers on two cores need.
    """
    conn = db.conn
    for view in VIEWS:  # views follow a renamed table; ensure_shape() recreates them afterwards
        conn.execute(f'DROP VIEW IF EXISTS "{view}"')
    for table in CHILD_TABLES:
        create_sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                  (table,)).fetchone()[0]
        index_sql = [sql for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
            (table,)) if name not in REDUNDANT_INDEXES]
        conn.execute(f'ALTER TABLE "{table}" RENAME TO "_m003_{table}"')
        conn.execute(f"{create_sql} WITHOUT ROWID")
        conn.execute(f'INSERT INTO "{table}" SELECT * FROM "_m003_{table}"')
        conn.execute(f'DROP TABLE "_m003_{table}"')
        for sql in index_sql:
            conn.execute(sql)


def m004_replay_quality(db: Database) -> None:
    """Say on each replay whether its rows can be trusted as they stand, and why not.

    Replays stored before this migration were never checked: their `degraded` stays NULL (unknown),
    and `--force` re-parses them.
    """
    for name, kind in REPLAY_QUALITY_COLUMNS.items():
        db["replays"].add_column(name, kind)  # type: ignore[union-attr]
    db["replays"].create_index(["degraded"])  # type: ignore[union-attr]


def m005_files_resources(db: Database) -> None:
    """Record per file the worker's CPU seconds and peak memory, for `replaycli stats`."""
    for name, kind in FILE_RESOURCE_COLUMNS.items():
        db["files"].add_column(name, kind)  # type: ignore[union-attr]


def m006_packs_and_filters(db: Database) -> None:
    """Read replay packs in place and filter at ingest: member CRCs, filter keys, a packs table."""
    for name, kind in FILE_PACK_COLUMNS.items():
        db["files"].add_column(name, kind)  # type: ignore[union-attr]
    db["runs"].add_column("filtered", int)  # type: ignore[union-attr]
    db["packs"].create(PACK_COLUMNS, pk="path", not_null=["path", "size", "mtime_ns"])  # type: ignore[union-attr]


def m007_runs_pool(db: Database) -> None:
    """Record per run what its worker pool did: workers started and replaced by reason, queue, memory.

    Runs recorded before this migration, and runs whose workers nobody watched (Dask), keep NULLs.
    """
    for name, kind in RUN_POOL_COLUMNS.items():
        db["runs"].add_column(name, kind)  # type: ignore[union-attr]


# m008: child rows point at their replay by this integer key, not by the 64-character sha256.
REPLAY_ID_COLUMN = "replay_id"
REPLAY_INDEXES: tuple[tuple[str, ...], ...] = (("match_key",), ("degraded",))
PLAYER_INDEXES: tuple[tuple[str, ...], ...] = (("region_id", "subregion", "toon_id"), ("toon_handle",), ("name",))


def _child_key(seq_column: str | None) -> tuple[dict[str, Any], tuple[str, ...]]:
    """A child table's key columns and primary key under m008: the replay's id, then its own key."""
    if seq_column is None:
        return {REPLAY_ID_COLUMN: int}, (REPLAY_ID_COLUMN, "pid", "game_loop")
    return {REPLAY_ID_COLUMN: int, seq_column: int}, (REPLAY_ID_COLUMN, seq_column)


def _create_keyed_child(db: Database, name: str, table: str, parent: str) -> None:
    """Create child table `table`'s shape as `name`: keyed by the integer replay id, WITHOUT ROWID."""
    columns, seq_column = CHILD_TABLES[table]
    keys, pk = _child_key(seq_column)
    required = (*keys, *(PLAYER_REQUIRED if table == "players" else ()))
    definitions = [f'"{column}" {SQL_TYPES[kind]}' + (" NOT NULL" if column in required else "")
                   for column, kind in {**keys, **columns}.items()]
    db.execute(f'CREATE TABLE "{name}" ({", ".join(definitions)}, PRIMARY KEY ({", ".join(pk)}), '
               f'FOREIGN KEY ({REPLAY_ID_COLUMN}) REFERENCES "{parent}"(id)) WITHOUT ROWID')


def m008_integer_replay_ids(db: Database) -> None:
    """Key child rows by an integer replay id instead of repeating the replay's sha256 on each one.

    The sha256 was 64 of the ~130 bytes of a build-order row; with an integer key the child tables
    are about half the size and each insert compares small keys. `replays` gains `id INTEGER
    PRIMARY KEY` (its old rowid, so the order is kept) and `sha256` stays its unique identity. The
    new tables are built beside the old ones, filled, and renamed into place; renaming `replays_new`
    rewrites the children's foreign keys to `replays`, as SQLite does from 3.26.
    """
    conn = db.conn
    for view in VIEWS:
        conn.execute(f'DROP VIEW IF EXISTS "{view}"')
    replay_columns = [c for c in db["replays"].columns_dict if c != "id"]
    kinds = {**REPLAY_COLUMNS, **REPLAY_EXTRA_COLUMNS, **REPLAY_QUALITY_COLUMNS}
    db["replays_new"].create(  # type: ignore[union-attr]
        {"id": int, **{column: kinds[column] for column in replay_columns}}, pk="id",
        not_null=["sha256", "depth", "vs_ai", "has_observers", "player_count", "observer_count"])
    listed = ", ".join(f'"{c}"' for c in replay_columns)
    conn.execute(f"INSERT INTO replays_new (id, {listed}) SELECT rowid, {listed} FROM replays ORDER BY rowid")
    for name, (columns, seq_column) in CHILD_TABLES.items():
        _create_keyed_child(db, f"{name}_new", name, "replays_new")
        keys, _pk = _child_key(seq_column)
        rest = ", ".join(f'c."{column}"' for column in [*list(keys)[1:], *columns])
        conn.execute(f'INSERT INTO "{name}_new" SELECT r.id, {rest} FROM "{name}" c '
                     f"JOIN replays_new r ON r.sha256 = c.replay_sha256 ORDER BY r.id")
        conn.execute(f'DROP TABLE "{name}"')
    conn.execute("DROP TABLE replays")
    conn.execute("ALTER TABLE replays_new RENAME TO replays")
    for name in CHILD_TABLES:
        conn.execute(f'ALTER TABLE "{name}_new" RENAME TO "{name}"')
    db["replays"].create_index(["sha256"], unique=True)  # type: ignore[union-attr]
    for indexed in REPLAY_INDEXES:
        db["replays"].create_index(list(indexed))  # type: ignore[union-attr]
    for indexed in PLAYER_INDEXES:
        db["players"].create_index(list(indexed))  # type: ignore[union-attr]


MIGRATIONS: tuple[Callable[[Database], None], ...] = (
    m001_initial,
    m002_files_error_release,
    m003_child_tables_without_rowid,
    m004_replay_quality,
    m005_files_resources,
    m006_packs_and_filters,
    m007_runs_pool,
    m008_integer_replay_ids,
)

VIEWS: dict[str, str] = {
    # One row per 1v1 game: the two non-observer players side by side, lower slot first.
    "v_1v1": """SELECT r.sha256, r.played_at, r.map_name, r.release, r.base_build, r.region, r.category,
  r.is_ladder, r.duration_s, r.match_key,
  p1.name AS p1_name, p1.toon_handle AS p1_toon_handle, p1.play_race AS p1_race, p1.result AS p1_result,
  coalesce(p1.mmr_meta, p1.mmr_lobby) AS p1_mmr, p1.apm_blizzard AS p1_apm,
  p2.name AS p2_name, p2.toon_handle AS p2_toon_handle, p2.play_race AS p2_race, p2.result AS p2_result,
  coalesce(p2.mmr_meta, p2.mmr_lobby) AS p2_mmr, p2.apm_blizzard AS p2_apm
FROM replays r
JOIN players p1 ON p1.replay_id = r.id AND p1.is_observer = 0
JOIN players p2 ON p2.replay_id = r.id AND p2.is_observer = 0 AND p2.slot > p1.slot
WHERE r.game_type = '1v1' AND r.player_count = 2""",
    # Every player of every game (observers left out), with the replay fields people filter on.
    "v_player_games": """SELECT r.sha256 AS replay_sha256, r.played_at, r.map_name, r.game_type, r.category, r.is_ladder,
  r.release, r.base_build, r.region, r.duration_s, r.match_key, p.slot, p.pid, p.team, p.name, p.clan_tag,
  p.toon_handle, p.region_id, p.subregion, p.toon_id, p.is_human, p.pick_race, p.play_race, p.result,
  p.mmr_lobby, p.mmr_meta, p.apm_blizzard, p.apm_computed, p.highest_league, p.workers_8m, p.bases_8m,
  p.army_value_8m, p.spending_quotient
FROM players p JOIN replays r ON r.id = p.replay_id
WHERE p.is_observer = 0""",
    # Every player's copy of one game shares a match_key but not its bytes: group the copies.
    "matches": """SELECT match_key, count(*) AS copies, min(played_at) AS first_played_at,
  min(map_name) AS map_name, json_group_array(sha256) AS sha256s
FROM replays WHERE match_key IS NOT NULL
GROUP BY match_key""",
    "v_failures": """SELECT f.path, f.size, f.error_kind, f.error_type, f.error_message, f.error_stage,
  f.sha256, r.build, coalesce(r.release, f.error_release) AS release, f.parser_version, f.attempts,
  f.first_run, f.last_run
FROM files f LEFT JOIN replays r ON r.sha256 = f.sha256
WHERE f.status = 'failed'""",
}


def stale_views(db: Database) -> list[str]:
    """Return the names of views that are missing or whose SQL differs from VIEWS."""
    stored = dict(db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'view'").fetchall())
    return [name for name, sql in VIEWS.items() if stored.get(name) != f'CREATE VIEW "{name}" AS {sql}']


def create_views(db: Database, names: list[str]) -> None:
    """Create or replace the named views; the caller holds the write transaction."""
    for name in names:
        db.create_view(name, VIEWS[name], replace=True)
