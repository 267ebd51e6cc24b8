"""Derived benchmarks players look at, computed from plain stats rows and unit records.

Works on the plain data extract.py produced, so it is testable without sc2reader. All times are
real seconds (what the LotV in-game clock shows).
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any

from replay_cli.extract import STAT_UNIT_NAMES_EXCLUDED, TOWNHALL_NAMES
from replay_cli.result import PlayerRow

# Benchmarks are derived from the stats rows as extracted, before bounds.py checks them: every
# number is still the source's integer here, so the rows are plain dicts of ints.
StatsRow = dict[str, Any]

BENCHMARK_MINUTES = (6, 8, 10)
ARMY_VALUE_MINUTE = 8
MAX_SUPPLY = 200
# Spending quotient (Kim, "Spending Quotient", 2011): 35 * (0.00137 * income - ln(unspent)) + 240.
SQ_SCALE = 35.0
SQ_INCOME_WEIGHT = 0.00137
SQ_OFFSET = 240.0


def _stats_at(rows: list[StatsRow], loop: float) -> StatsRow | None:
    """Return the last sample at or before `loop` (rows sorted by game_loop)."""
    found = None
    for row in rows:
        if row["game_loop"] > loop:
            break
        found = row
    return found


def _bases_at(units: list[dict[str, Any]], loop: float) -> int:
    return sum(
        1
        for unit in units
        if (unit["name"] in TOWNHALL_NAMES or unit["final_name"] in TOWNHALL_NAMES)
        and unit["finished_loop"] is not None
        and unit["finished_loop"] <= loop
        and (unit["died_loop"] is None or unit["died_loop"] > loop)
    )


def supply_blocked_seconds(rows: list[StatsRow], per_second: float) -> float:
    """Return the real seconds spent at or over the supply cap (below the 200 maximum)."""
    blocked_loops = 0
    for current, following in itertools.pairwise(rows):
        if current["supply_made"] < MAX_SUPPLY and current["supply_used"] >= current["supply_made"]:
            blocked_loops += following["game_loop"] - current["game_loop"]
    return round(blocked_loops / per_second, 1)


def spending_quotient(rows: list[StatsRow]) -> float | None:
    """Return the spending quotient over the game, or None without samples after the start."""
    samples = [row for row in rows if row["game_loop"] > 0]
    if not samples:
        return None
    income = sum(r["minerals_rate"] + r["vespene_rate"] for r in samples) / len(samples)
    unspent = sum(r["minerals"] + r["vespene"] for r in samples) / len(samples)
    # ln(0) is undefined: an average of under one unspent resource is as good as one.
    return round(float(SQ_SCALE * (SQ_INCOME_WEIGHT * income - math.log(max(unspent, 1.0))) + SQ_OFFSET), 1)


def apply_benchmarks(
    players: list[PlayerRow],
    stats: list[StatsRow],
    units: list[dict[str, Any]],
    game_loops: int,
    per_second: float,
) -> None:
    """Fill each player's stats-depth benchmark fields in place."""
    stats_by_pid: dict[int, list[StatsRow]] = defaultdict(list)
    for row in sorted(stats, key=lambda r: r["game_loop"]):
        stats_by_pid[row["pid"]].append(row)
    units_by_pid: dict[int, list[dict[str, Any]]] = defaultdict(list)
    kills_by_pid: dict[int, int] = defaultdict(int)
    for unit in units:
        units_by_pid[unit["pid"]].append(unit)
        killer = unit["killer_pid"]
        counted = unit["name"] not in STAT_UNIT_NAMES_EXCLUDED and unit["died_loop"] is not None
        if counted and killer is not None and killer != unit["pid"]:
            kills_by_pid[killer] += 1

    for player in players:
        pid = player["pid"]
        if pid is None or player["is_observer"]:
            continue
        rows = stats_by_pid.get(pid, [])
        own_units = units_by_pid.get(pid, [])
        for minute in BENCHMARK_MINUTES:
            loop = minute * 60 * per_second
            reached = game_loops >= loop
            sample = _stats_at(rows, loop) if reached else None
            player[f"workers_{minute}m"] = sample["workers"] if sample else None  # type: ignore[literal-required]
            player[f"bases_{minute}m"] = _bases_at(own_units, loop) if reached and own_units else None  # type: ignore[literal-required]
        army_loop = ARMY_VALUE_MINUTE * 60 * per_second
        army_sample = _stats_at(rows, army_loop) if game_loops >= army_loop else None
        player["army_value_8m"] = army_sample["army_value"] if army_sample else None
        player["supply_blocked_s"] = supply_blocked_seconds(rows, per_second) if rows else None
        player["spending_quotient"] = spending_quotient(rows)
        player["units_lost"] = sum(
            1
            for unit in own_units
            if not unit["is_building"]
            and unit["died_loop"] is not None
            and unit["name"] not in STAT_UNIT_NAMES_EXCLUDED
        )
        player["units_killed"] = kills_by_pid.get(pid, 0)
