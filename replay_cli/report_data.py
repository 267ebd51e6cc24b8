"""The numbers behind `replaycli report`: one player's games and the whole database, read with SQL.

Everything here is a query over a plain sqlite3 connection, returned as JSON-ready dicts and lists, so
`report --json` and the HTML page (report_html.py) show the same numbers. Copies of one game (every
player's replay of it shares a `match_key`) count once: the copy with the smallest sha256 stands for
the game. `--since`/`--until` bound `played_at`. Results are fully ordered, so a fixed database and a
fixed `now` give the same report.
"""

from __future__ import annotations

import json
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from replay_cli import __version__
from replay_cli.errors import ReplayCliError, StoreError
from replay_cli.store import dict_rows

REPORT_VERSION = 1  # the layout of `report --json`; bump it when a key changes meaning
OPENING_LENGTH = 3  # structures that make an opening
# Supply structures come first in nearly every game of their race, so they would make every opening
# look the same; an opening is the first structures after leaving them out.
SUPPLY_STRUCTURES = ("SupplyDepot", "Pylon")
TOP_OPENINGS = 10
RECENT_GAMES = 20
WORKER_MINUTES = (6, 8, 10)
# Player view: game length buckets in minutes, as (label, from, to); the last one is open-ended.
PLAYER_LENGTHS = (("<5", 0, 5), ("5-10", 5, 10), ("10-15", 10, 15), ("15-20", 15, 20), ("20-30", 20, 30),
                  ("30+", 30, None))
LENGTH_BIN_MINUTES = 2  # database view: the histogram's bin width
LENGTH_BINS = 20  # bins of LENGTH_BIN_MINUTES; longer games share one last, open-ended bin
RELATIVE_DAYS = re.compile(r"^(\d+)d$")  # --since 30d: thirty days before --now
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how replays.played_at is written: UTC, whole seconds

# One row per game in the period: the copy with the smallest sha256 stands for its match_key.
_GAMES_SELECT = """
  SELECT r.* FROM replays r
  WHERE r.sha256 IN (SELECT min(sha256) FROM replays GROUP BY coalesce(match_key, sha256))
    AND (:since IS NULL OR r.played_at >= :since) AND (:until IS NULL OR r.played_at < :until)"""
# The person's own rows: every non-observer row whose name or toon handle was asked for.
_ME_SELECT = """
  SELECT g.sha256 AS replay_sha256, p.replay_id, p.pid, p.slot, p.team, p.name, p.toon_handle, p.play_race, p.result,
    coalesce(p.mmr_meta, p.mmr_lobby) AS mmr, p.apm_blizzard, p.workers_6m, p.workers_8m, p.workers_10m,
    g.played_at, g.map_name, g.game_type, g.duration_s
  FROM players p JOIN games g ON g.id = p.replay_id
  WHERE p.is_observer = 0 AND (p.name IN (SELECT value FROM json_each(:who))
    OR p.toon_handle IN (SELECT value FROM json_each(:who)))"""
# Everyone the person played against: other non-observers on another team of the same game.
_OPPONENTS_SELECT = """
  SELECT m.replay_sha256, m.slot AS my_slot, o.* FROM me m JOIN players o ON o.replay_id = m.replay_id
  WHERE o.is_observer = 0 AND o.slot <> m.slot AND (o.team IS NOT m.team OR m.team IS NULL)"""
# All three are computed once per report into temporary tables: every section reads them, and
# recomputing the copies' grouping per query made a 12,000-replay report with a player five times
# slower. The opponents are read by some 25 queries (workers per minute, each recent game).
_TEMP_TABLES = (("report_games", _GAMES_SELECT),
                ("report_me", f"WITH games AS (SELECT * FROM temp.report_games) {_ME_SELECT}"),
                ("report_opponents", f"WITH me AS (SELECT * FROM temp.report_me) {_OPPONENTS_SELECT}"))
_GAMES = "games AS (SELECT * FROM temp.report_games)"
_ME = "me AS (SELECT * FROM temp.report_me)"
_OPPONENTS = "opponents AS (SELECT * FROM temp.report_opponents)"
# `IS`, not `=`: a game with no recorded result is neither a win nor a loss, and a group of such games
# sums to 0 rather than NULL. Ties and undecided games count as games but not in the win rate.
_DECIDED = """count(*) AS games, sum(result IS 'Win') AS wins, sum(result IS 'Loss') AS losses,
  round(100.0 * sum(result IS 'Win') / nullif(sum(result IN ('Win', 'Loss')), 0), 1) AS win_rate"""


class ReportUsageError(ReplayCliError):
    """The report was asked for something the database cannot answer (unknown player, bad date): exit 2."""


@dataclass(frozen=True)
class ReportOptions:
    """What to report on: players (names or toon handles, merged into one person) and the period."""

    now: datetime
    players: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    db_name: str = field(default="replays.db")


def parse_when(text: str, now: datetime, *, end: bool = False) -> str:
    """Turn a --since/--until value into a played_at bound (UTC text). Raises ReportUsageError.

    Accepts YYYY-MM-DD, an ISO-8601 time (UTC unless it says otherwise) or Nd, N days before now. A
    bare date as an end bound includes that whole day.
    """
    relative = RELATIVE_DAYS.match(text.strip())
    if relative:
        return (now - timedelta(days=int(relative.group(1)))).strftime(TIMESTAMP_FORMAT)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ReportUsageError(f"cannot read {text!r} as a date: use YYYY-MM-DD, an ISO-8601 time or Nd") from exc
    if end and len(text.strip()) == len("YYYY-MM-DD"):
        when += timedelta(days=1)
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime(TIMESTAMP_FORMAT)


def _one(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    return dict_rows(conn, sql, params)[0]


def _length_bucket_sql(column: str) -> str:
    """A CASE expression naming the PLAYER_LENGTHS bucket of a duration in seconds."""
    cases = " ".join(f"WHEN {column} < {to * 60} THEN '{label}'" for label, _, to in PLAYER_LENGTHS if to)
    return f"CASE WHEN {column} IS NULL THEN NULL {cases} ELSE '{PLAYER_LENGTHS[-1][0]}' END"


def database_totals(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Replays and games in the period, their players, first and last game, degraded games."""
    totals = _one(conn, f"""WITH {_GAMES}
SELECT (SELECT count(*) FROM replays WHERE (:since IS NULL OR played_at >= :since)
          AND (:until IS NULL OR played_at < :until)) AS replays,
  count(*) AS games, sum(degraded = 1) AS degraded_games, min(played_at) AS first_played_at,
  max(played_at) AS last_played_at,
  (SELECT count(*) FROM players p JOIN games g ON g.id = p.replay_id WHERE p.is_observer = 0) AS players,
  (SELECT count(DISTINCT p.toon_handle) FROM players p JOIN games g ON g.id = p.replay_id
     WHERE p.is_observer = 0) AS toons
FROM games""", params)
    totals["degraded_games"] = totals["degraded_games"] or 0
    return totals


def _length_histogram(conn: sqlite3.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Games per LENGTH_BIN_MINUTES-minute bin of duration, every bin up to the longest one present."""
    width = LENGTH_BIN_MINUTES * 60
    counts = dict(conn.execute(f"""WITH {_GAMES}
SELECT min(CAST(duration_s / {width} AS INTEGER), {LENGTH_BINS}) AS bin, count(*) FROM games
WHERE duration_s IS NOT NULL GROUP BY bin""", params).fetchall())
    last = max(counts, default=-1)
    return [{"from_min": b * LENGTH_BIN_MINUTES, "to_min": None if b == LENGTH_BINS else (b + 1) * LENGTH_BIN_MINUTES,
             "games": counts.get(b, 0)} for b in range(last + 1)]


def database_view(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """The whole database: games by month, release and map, matchups, lengths, failures, degraded reasons."""
    return {
        "totals": database_totals(conn, params),
        "games_per_month": dict_rows(conn, f"""WITH {_GAMES}
SELECT coalesce(substr(played_at, 1, 7), 'unknown') AS month, count(*) AS games FROM games
GROUP BY 1 ORDER BY 1""", params),
        "games_per_release": dict_rows(conn, f"""WITH {_GAMES}
SELECT coalesce(release, 'unknown') AS release, count(*) AS games FROM games
GROUP BY 1 ORDER BY games DESC, 1""", params),
        "matchups": _database_matchups(conn, params),
        "game_length": _length_histogram(conn, params),
        "maps": dict_rows(conn, f"""WITH {_GAMES}
SELECT coalesce(map_name, 'unknown') AS map_name, count(*) AS games FROM games
GROUP BY 1 ORDER BY games DESC, 1""", params),
        # A failed file has no game date: failures are the whole database's, whatever the period.
        "files_by_status": dict_rows(conn, "SELECT status, count(*) AS files FROM files GROUP BY status "
                                     "ORDER BY files DESC, status", {}),
        "failures": dict_rows(conn, "SELECT coalesce(error_kind, 'unknown') AS error_kind, count(*) AS files "
                              "FROM files WHERE status = 'failed' GROUP BY 1 ORDER BY files DESC, 1", {}),
        "degraded": dict_rows(conn, f"""WITH {_GAMES}
SELECT reason.value AS reason, count(*) AS games FROM games, json_each(games.quality, '$.reasons') AS reason
WHERE games.degraded = 1 GROUP BY 1 ORDER BY games DESC, 1""", params),
    }


def _database_matchups(conn: sqlite3.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """1v1 games per race pairing; wins and win rate are the first-named race's (none for mirrors)."""
    return dict_rows(conn, f"""WITH {_GAMES}, sides AS (
  SELECT CASE WHEN v.p1_race <= v.p2_race THEN v.p1_race ELSE v.p2_race END AS race_a,
         CASE WHEN v.p1_race <= v.p2_race THEN v.p2_race ELSE v.p1_race END AS race_b,
         CASE WHEN v.p1_race <= v.p2_race THEN v.p1_result ELSE v.p2_result END AS result
  FROM v_1v1 v JOIN games g ON g.sha256 = v.sha256
  WHERE v.p1_race IS NOT NULL AND v.p2_race IS NOT NULL)
SELECT substr(race_a, 1, 1) || 'v' || substr(race_b, 1, 1) AS matchup, race_a, race_b, count(*) AS games,
  CASE WHEN race_a = race_b THEN NULL ELSE sum(result IS 'Win') END AS wins,
  CASE WHEN race_a = race_b THEN NULL ELSE sum(result IS 'Loss') END AS losses,
  CASE WHEN race_a = race_b THEN NULL
    ELSE round(100.0 * sum(result IS 'Win') / nullif(sum(result IN ('Win', 'Loss')), 0), 1) END AS win_rate
FROM sides GROUP BY race_a, race_b ORDER BY games DESC, matchup""", params)


def _person(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Who the --player values name: their toons and totals over the period."""
    toons = dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT toon_handle, count(*) AS games FROM me GROUP BY toon_handle ORDER BY games DESC, toon_handle""", params)
    for toon in toons:
        toon["names"] = _names_of(conn, params, toon)
    totals = _one(conn, f"WITH {_GAMES}, {_ME} SELECT {_DECIDED} FROM me", params)
    totals["wins"], totals["losses"] = totals["wins"] or 0, totals["losses"] or 0
    return {"asked": json.loads(params["who"]), "toons": toons, "totals": totals}


def _names_of(conn: sqlite3.Connection, params: dict[str, Any], toon: dict[str, Any]) -> list[str]:
    return [name for (name,) in conn.execute(
        f"WITH {_GAMES}, {_ME} SELECT DISTINCT name FROM me WHERE toon_handle IS :toon ORDER BY name",
        {**params, "toon": toon["toon_handle"]})]


def _player_series(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """MMR per race and queue, and APM, game by game in time order."""
    return {
        "mmr": dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT played_at, coalesce(play_race, 'unknown') AS race, coalesce(game_type, 'unknown') AS queue, mmr FROM me
WHERE mmr IS NOT NULL AND played_at IS NOT NULL ORDER BY played_at, replay_sha256, slot""", params),
        "apm": dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT played_at, apm_blizzard AS apm FROM me WHERE apm_blizzard IS NOT NULL AND played_at IS NOT NULL
ORDER BY played_at, replay_sha256, slot""", params),
    }


def _player_win_rates(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Win rate by 1v1 matchup, by map and by game length."""
    order = {label: position for position, (label, _, _) in enumerate(PLAYER_LENGTHS)}
    lengths = dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT {_length_bucket_sql("duration_s")} AS length, {_DECIDED} FROM me WHERE duration_s IS NOT NULL
GROUP BY length""", params)
    return {
        "matchups": dict_rows(conn, f"""WITH {_GAMES}, {_ME}, {_OPPONENTS}
SELECT substr(coalesce(m.play_race, '?'), 1, 1) || 'v' || substr(coalesce(o.play_race, '?'), 1, 1) AS matchup,
  count(*) AS games, sum(m.result IS 'Win') AS wins, sum(m.result IS 'Loss') AS losses,
  round(100.0 * sum(m.result IS 'Win') / nullif(sum(m.result IN ('Win', 'Loss')), 0), 1) AS win_rate
FROM me m JOIN opponents o ON o.replay_sha256 = m.replay_sha256 AND o.my_slot = m.slot
WHERE m.game_type = '1v1' GROUP BY matchup ORDER BY games DESC, matchup""", params),
        "maps": dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT coalesce(map_name, 'unknown') AS map_name, {_DECIDED} FROM me
GROUP BY 1 ORDER BY games DESC, 1""", params),
        "lengths": sorted(lengths, key=lambda row: order[row["length"]]),
    }


def _player_workers(conn: sqlite3.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Average workers at 6, 8 and 10 minutes: the person's, and their opponents' in the same games."""
    rows = []
    for minute in WORKER_MINUTES:
        column = f"workers_{minute}m"
        rows.append(_one(conn, f"""WITH {_GAMES}, {_ME}, {_OPPONENTS}
SELECT {minute} AS minute, round(avg(m.{column}), 1) AS player, count(m.{column}) AS player_games,
  (SELECT round(avg(o.{column}), 1) FROM opponents o) AS opponents,
  (SELECT count(o.{column}) FROM opponents o) AS opponent_rows
FROM me m""", params))
    return rows


def _player_openings(conn: sqlite3.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The most played openings (first OPENING_LENGTH non-supply structures) and how they fared."""
    picks = ", ".join(f"max(CASE WHEN n = {k} THEN name END) AS s{k}" for k in range(1, OPENING_LENGTH + 1))
    joined = " || ".join(["s1", *(f"coalesce(' > ' || s{k}, '')" for k in range(2, OPENING_LENGTH + 1))])
    return dict_rows(conn, f"""WITH {_GAMES}, {_ME}, firsts AS (
  SELECT b.replay_id, b.pid, b.name,
    row_number() OVER (PARTITION BY b.replay_id, b.pid ORDER BY b.started_loop, b.seq) AS n
  FROM build_order b JOIN me m ON m.replay_id = b.replay_id AND m.pid = b.pid
  WHERE b.kind = 'structure' AND b.name NOT IN (SELECT value FROM json_each(:supply))),
openings AS (SELECT replay_id, pid, {picks} FROM firsts WHERE n <= {OPENING_LENGTH} GROUP BY replay_id, pid)
SELECT coalesce(m.play_race, 'unknown') AS race, {joined} AS opening, {_DECIDED.replace("result", "m.result")}
FROM openings o JOIN me m ON m.replay_id = o.replay_id AND m.pid = o.pid
GROUP BY race, opening ORDER BY games DESC, race, opening LIMIT {TOP_OPENINGS}""",
                 {**params, "supply": json.dumps(SUPPLY_STRUCTURES)})


def _player_recent(conn: sqlite3.Connection, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The RECENT_GAMES latest games, newest first, with the opponents' names in slot order."""
    games = dict_rows(conn, f"""WITH {_GAMES}, {_ME}
SELECT replay_sha256 AS sha256, slot, played_at, map_name, game_type, name, play_race AS race, result,
  duration_s, mmr, apm_blizzard AS apm
FROM me ORDER BY played_at DESC, replay_sha256, slot LIMIT {RECENT_GAMES}""", params)
    for game in games:
        game["opponents"] = [name for (name,) in conn.execute(
            f"WITH {_GAMES}, {_ME}, {_OPPONENTS} SELECT name FROM opponents "
            "WHERE replay_sha256 = :sha AND my_slot = :slot ORDER BY slot",
            {**params, "sha": game["sha256"], "slot": game.pop("slot")})]
    return games


def player_view(conn: sqlite3.Connection, params: dict[str, Any]) -> dict[str, Any]:
    """Everything the report shows about one person (the --player values merged)."""
    return {
        **_person(conn, params),
        **_player_series(conn, params),
        **_player_win_rates(conn, params),
        "workers": _player_workers(conn, params),
        "openings": _player_openings(conn, params),
        "recent": _player_recent(conn, params),
    }


def _check_players(conn: sqlite3.Connection, players: tuple[str, ...]) -> None:
    """Refuse --player values that name nobody in the database. Raises ReportUsageError."""
    unknown = [who for who in players if conn.execute(
        "SELECT 1 FROM players WHERE is_observer = 0 AND (name = ? OR toon_handle = ?) LIMIT 1",
        (who, who)).fetchone() is None]
    if unknown:
        raise ReportUsageError(f"no player named or with the toon handle {', '.join(map(repr, unknown))} "
                               "in the database")


def build_report(conn: sqlite3.Connection, options: ReportOptions) -> dict[str, Any]:
    """Compute the report of the database behind `conn`. Raises ReportUsageError, StoreError.

    Reads inside one transaction, so the numbers come from one snapshot even while an ingest writes.
    """
    since = parse_when(options.since, options.now) if options.since else None
    until = parse_when(options.until, options.now, end=True) if options.until else None
    params = {"since": since, "until": until, "who": json.dumps(list(options.players))}
    began = not conn.in_transaction
    try:
        if began:
            conn.execute("BEGIN")
        try:
            _check_players(conn, options.players)
            for name, select in _TEMP_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
                conn.execute(f"CREATE TEMP TABLE {name} AS {select}", params)
            return {
                "replaycli_report_version": REPORT_VERSION,
                "replaycli": __version__,
                "generated_at": options.now.astimezone(UTC).strftime(TIMESTAMP_FORMAT),
                "db": options.db_name,
                "period": {"since": since, "until": until},
                "database": database_view(conn, params),
                "player": player_view(conn, params) if options.players else None,
            }
        finally:
            for name, _ in _TEMP_TABLES:
                conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
            if began:
                conn.execute("ROLLBACK")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read database {options.db_name}: {exc}") from exc
