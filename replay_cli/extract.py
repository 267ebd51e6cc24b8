"""Turn a loaded sc2reader replay into the plain rows of the result schema.

The objects arrive from parse.py, the only module that imports sc2reader; here they are read
by attribute only. sc2reader's traps are handled at this one place: chat is keyed on the lobby
uid (not the player id), game and real seconds are never mixed, "unknown" sentinels become None
with the raw value kept beside them, and cosmetic upgrades are dropped.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from replay_cli.result import BuildOrderRow, ChatRow, PlayerRow, PlayerStatsRow, ReplayRow

LOOPS_PER_GAME_SECOND = 16.0
# From this build on, ChatEvent.pid is a lobby uid (sc2reader engine/plugins/context.py).
CHAT_BY_UID_FIRST_BUILD = 24247
# Before LotV the game clock ran on "Blizzard time": a game second at Faster lasts 1/1.4 real
# seconds, so one real second is 22.4 loops in both eras at Faster speed.
FASTER_SPEED_FACTOR = 1.4
SPEED_FACTORS = {"Slower": 0.6, "Slow": 0.8, "Normal": 1.0, "Fast": 1.2, "Faster": 1.4}

# Sentinels that mean "unknown" in the wild: a uint32 all-ones, and the metadata's MMR placeholder.
UINT32_UNKNOWN = 4294967295
MMR_UNKNOWN_META = -36400
# Replays exist with year-1600 dates and dates in the future (GraylinKim/sc2reader#71).
EARLIEST_PLAUSIBLE_DATE = datetime(2010, 1, 1, tzinfo=UTC)  # WoL beta began in 2010
LEAGUE_NONE = 0

# Upgrades reported at loop 0 that are cosmetics (sprays, dances, skins), not upgrades a player bought.
COSMETIC_UPGRADE_PREFIXES = ("Spray", "RewardDance", "GameHeart", "Skin", "Portrait", "Emoticon")
STAT_UNIT_NAMES_EXCLUDED = frozenset(
    {
        # Spawned by other units or abilities, never "built": they would swamp a build order.
        "Larva", "Egg", "Broodling", "BroodlingEscort", "Interceptor", "Locust", "LocustMP",
        "LocustMPFlying", "AutoTurret", "Changeling", "ChangelingMarine", "ChangelingMarineShield",
        "ChangelingZealot", "ChangelingZergling", "ChangelingZerglingWings", "CreepTumor",
        "CreepTumorBurrowed", "CreepTumorQueen", "InfestedTerransEgg", "InfestorTerran",
        "AdeptPhaseShift", "BanelingCocoon", "BroodLordCocoon", "RavagerCocoon", "LurkerMPEgg",
        "OverlordCocoon", "TransportOverlordCocoon", "MULE", "DisruptorPhased", "ParasiticBombDummy",
        "KD8Charge", "ReleaseInterceptorsBeacon", "Beacon", "InvisibleTargetDummy",
    }
)
UNKNOWN_UNIT_NAME = "Unknown"
TOWNHALL_NAMES = frozenset(
    {
        "Nexus", "CommandCenter", "CommandCenterFlying", "OrbitalCommand", "OrbitalCommandFlying",
        "PlanetaryFortress", "Hatchery", "Lair", "Hive",
    }
)


def loops_per_real_second(replay: Any) -> float:
    """Return how many game loops make one real second at this replay's speed."""
    factor = SPEED_FACTORS.get(getattr(replay, "speed", "") or "", FASTER_SPEED_FACTOR)
    return LOOPS_PER_GAME_SECOND * factor


def real_seconds(loops: int | None, per_second: float) -> float | None:
    """Convert game loops to real seconds, rounded to milliseconds."""
    return None if loops is None else round(loops / per_second, 3)


METADATA_PRESENT, METADATA_MISSING, METADATA_UNREADABLE = "present", "missing", "unreadable"


def read_gamemetadata(replay: Any) -> tuple[dict[str, Any], str]:
    """Return replay.gamemetadata.json as a dict, and whether it was present, missing or unreadable.

    The member is optional (builds before 3.4 write none), so reading it never fails the parse;
    the caller decides from the state whether its absence makes the result incomplete.
    """
    try:
        raw = replay.archive.read_file("replay.gamemetadata.json")
    except Exception:  # a damaged member, or a bomb that hit the worker's memory cap
        return {}, METADATA_UNREADABLE
    if not raw:
        return {}, METADATA_MISSING
    try:
        meta = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # RecursionError: thousands of nested brackets
        return {}, METADATA_UNREADABLE
    return (meta, METADATA_PRESENT) if isinstance(meta, dict) else ({}, METADATA_UNREADABLE)


def _clean_date(value: datetime | None) -> tuple[str | None, str | None]:
    """Return (played_at, played_at_raw): an implausible date is kept only as raw."""
    if value is None:
        return None, None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    iso = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if value < EARLIEST_PLAUSIBLE_DATE or value > datetime.now(UTC):
        return None, iso
    return iso, None


def _optional_int(value: Any) -> Any:
    """An integer field as the source wrote it; None for absence and the uint32 "unknown" sentinel.

    A float that is no whole number (inf and nan are not) comes back unchanged rather than being
    turned into an invented integer: bounds.py then stores NULL and keeps the source value as text.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and not value.is_integer():
        return value
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return None if number == UINT32_UNKNOWN else number


def _positive_or_none(value: Any) -> Any:
    number = _optional_int(value)
    return number if number is not None and number > 0 else None


def _bool_or_none(value: Any) -> bool | None:
    return None if value is None else bool(value)


def match_key(replay: Any, handles: list[str]) -> str | None:
    """Return a key shared by every player's copy of the same game.

    ggpyjobs matched copies on the set of toon handles plus a start time within 180 s. The
    lobby's random seed is identical in every copy of one game, so it replaces the fuzzy time
    window; the map hash guards against seed collisions between different games.
    """
    seed = random_seed(replay)
    if not handles or seed is None:
        return None
    material = "|".join([",".join(sorted(handles)), str(seed), replay.map_hash or replay.map_name or ""])
    return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def random_seed(replay: Any) -> Any:
    """Return the lobby's random seed (the same in every copy of a game), if recorded."""
    init = getattr(replay, "raw_data", {}).get("replay.initData") or {}
    return _optional_int((init.get("game_description") or {}).get("random_value"))


def replay_row(replay: Any, sha256: str, meta: dict[str, Any], depth: str) -> ReplayRow:
    """Build the `replays` row."""
    played_at, played_at_raw = _clean_date(getattr(replay, "start_time", None))
    per_second = loops_per_real_second(replay)
    players = list(replay.players)
    humans = [p for p in players if getattr(p, "is_human", False)]
    winner = getattr(replay, "winner", None)
    handles = [p.toon_handle for p in humans if getattr(p, "toon_handle", "")]
    return {
        "sha256": sha256,
        "map_name": replay.map_name or None,
        "map_hash": replay.map_hash or None,
        "played_at": played_at,
        "played_at_raw": played_at_raw,
        "utc_offset_hours": getattr(replay, "time_zone", None),
        "duration_s": real_seconds(replay.frames, per_second),
        "game_loops": replay.frames,
        "game_speed": replay.speed if isinstance(replay.speed, str) and replay.speed else None,
        "release": replay.release_string,
        "build": replay.build,
        "base_build": replay.base_build,
        "expansion": replay.expansion or None,
        "region": replay.region or None,
        "game_type": replay.real_type or replay.game_type or None,
        "category": replay.category or None,
        "is_ladder": bool(replay.is_ladder),
        "is_private": bool(replay.is_private),
        "amm": _bool_or_none(getattr(replay, "amm", None)),
        "competitive": _bool_or_none(getattr(replay, "competitive", None)),
        "cooperative": _bool_or_none(getattr(replay, "cooperative", None)),
        "vs_ai": any(not getattr(p, "is_human", True) for p in players),
        "has_observers": bool(replay.observers),
        "player_count": len(players),
        "observer_count": len(replay.observers),
        "winner_team": getattr(winner, "number", None),
        "match_key": match_key(replay, handles),
        "random_seed": random_seed(replay),
        "meta_duration_game_s": _optional_int(meta.get("Duration")),
        "depth": depth,
    }


def _color_hex(entity: Any) -> str | None:
    color = getattr(entity, "color", None)
    return getattr(color, "hex", None) or None


def row_entities(replay: Any) -> list[Any]:
    """The replay's entities in `players` row order: players by pid, then observers."""
    return sorted(replay.players, key=lambda p: p.pid) + list(replay.observers)


def player_rows(replay: Any, meta: dict[str, Any]) -> list[PlayerRow]:
    """Build one `players` row per slot: players first (by pid), then observers."""
    meta_by_pid = {m.get("PlayerID"): m for m in meta.get("Players", []) if isinstance(m, dict)}
    rows: list[PlayerRow] = []
    for entity in row_entities(replay):
        is_observer = bool(getattr(entity, "is_observer", False))
        pid = None if is_observer else getattr(entity, "pid", None)
        player_meta = meta_by_pid.get(pid, {}) if pid is not None else {}
        mmr_meta_raw = _optional_int(player_meta.get("MMR"))
        apm = player_meta.get("APM")
        is_human = bool(getattr(entity, "is_human", True))
        league = _optional_int(getattr(entity, "highest_league", None))
        rows.append(
            {
                "pid": pid,
                "uid": getattr(entity, "uid", None),
                "sid": getattr(entity, "sid", None),
                "team": getattr(entity, "team_id", None),
                "name": str(getattr(entity, "name", "") or ""),
                "clan_tag": getattr(entity, "clan_tag", None) or None,
                "toon_handle": getattr(entity, "toon_handle", None) or None,
                "region_id": _positive_or_none(getattr(entity, "region_id", None)),
                "subregion": _positive_or_none(getattr(entity, "subregion", None)),
                "toon_id": _positive_or_none(getattr(entity, "toon_id", None)),
                "is_human": is_human,
                "is_observer": is_observer,
                "is_referee": bool(getattr(entity, "is_referee", False)),
                "ai_difficulty": None if is_human else getattr(entity, "difficulty", None),
                "pick_race": getattr(entity, "pick_race", None),
                "play_race": getattr(entity, "play_race", None),
                "result": getattr(entity, "result", None),
                "handicap": _optional_int(getattr(entity, "handicap", None)),
                "color": _color_hex(entity),
                "highest_league": None if league == LEAGUE_NONE else league,
                "combined_race_levels": _positive_or_none(getattr(entity, "combined_race_levels", None)),
                "mmr_lobby": _positive_or_none(getattr(entity, "mmr", None)),
                "mmr_meta": None if mmr_meta_raw == MMR_UNKNOWN_META else _positive_or_none(mmr_meta_raw),
                "mmr_meta_raw": mmr_meta_raw,
                # Blizzard's figure for every player, AIs included, and 0 is a value; kept as written
                # (an int may exceed the float range): bounds.py makes it fit its column.
                "apm_blizzard": apm if isinstance(apm, (int, float)) and not isinstance(apm, bool) else None,
                "apm_computed": None,
                "seconds_played": None,
                "commander": getattr(entity, "commander", None) or None,
                "workers_6m": None,
                "workers_8m": None,
                "workers_10m": None,
                "bases_6m": None,
                "bases_8m": None,
                "bases_10m": None,
                "army_value_8m": None,
                "supply_blocked_s": None,
                "spending_quotient": None,
                "units_lost": None,
                "units_killed": None,
            }
        )
    return rows


# Player fields whose cleaned value (None) can hide a source value: field -> the sc2reader attribute.
CLEANED_PLAYER_FIELDS = {
    "region_id": "region_id", "subregion": "subregion", "toon_id": "toon_id", "handicap": "handicap",
    "highest_league": "highest_league", "combined_race_levels": "combined_race_levels", "mmr_lobby": "mmr",
}


def cleaned_values(replay: Any, replay_fields: dict[str, Any], players: list[PlayerRow],
                   meta: dict[str, Any]) -> dict[str, str]:
    """Return, as text, each source value that a cleaning rule turned into None ("table[i].field" -> raw).

    The rows keep None, which is what the value means ("unknown", "no league"); this keeps what the
    source wrote beside it, so no rule silently replaces a source value.
    """
    cleaned: dict[str, str] = {}
    init = (getattr(replay, "raw_data", {}).get("replay.initData") or {}).get("game_description") or {}
    for field, raw in (("random_seed", init.get("random_value")), ("meta_duration_game_s", meta.get("Duration"))):
        if replay_fields.get(field) is None and raw is not None:
            cleaned[f"replay.{field}"] = repr(raw)
    for index, (row, entity) in enumerate(zip(players, row_entities(replay))):
        for field, attribute in CLEANED_PLAYER_FIELDS.items():
            raw = getattr(entity, attribute, None)
            if row[field] is None and raw is not None:  # type: ignore[literal-required]
                cleaned[f"players[{index}].{field}"] = repr(raw)
    return cleaned


def _channel(message: Any) -> str:
    if getattr(message, "to_allies", False):
        return "allies"
    if getattr(message, "to_observers", False):
        return "observers"
    return "all"


def _chat_senders(replay: Any) -> dict[int, Any]:
    """Map the id a ChatEvent carries to the entity that sent it.

    Since HotS build 24247 ChatEvent.pid is the lobby *uid*, not the player id;
    before it, it is the entity's player id. sc2reader resolves message.player only when its
    engine runs, so the summary depth resolves senders here with the same rule.
    """
    versions = getattr(replay, "versions", None) or [0, 0]
    if versions[1] == 1 or (versions[1] == 2 and replay.build < CHAT_BY_UID_FIRST_BUILD):
        return {e.pid: e for e in replay.entities if getattr(e, "pid", None) is not None}
    return {e.uid: e for e in replay.entities if getattr(e, "uid", None) is not None}


def chat_rows(replay: Any) -> list[ChatRow]:
    """Build the chat rows from replay.messages (player.messages is never filled)."""
    per_second = loops_per_real_second(replay)
    senders = _chat_senders(replay)
    rows: list[ChatRow] = []
    for message in replay.messages:
        if getattr(message, "name", "") != "ChatEvent":
            continue
        sender = senders.get(getattr(message, "pid", -1))
        sender_is_player = sender is not None and not getattr(sender, "is_observer", False)
        rows.append(
            {
                "sender_uid": getattr(sender, "uid", None) if sender is not None else getattr(message, "pid", None),
                "sender_pid": getattr(sender, "pid", None) if sender_is_player else None,
                "sender_name": getattr(sender, "name", None) if sender is not None else None,
                "channel": _channel(message),
                "text": str(message.text),
                "game_loop": message.frame,
                "game_s": round(message.frame / LOOPS_PER_GAME_SECOND, 3),
                "real_s": round(message.frame / per_second, 3),
            }
        )
    return rows


def player_stats_rows(replay: Any) -> list[PlayerStatsRow]:
    """Build one row per PlayerStatsEvent (every 160 loops per player)."""
    per_second = loops_per_real_second(replay)
    rows: list[PlayerStatsRow] = []
    for event in replay.tracker_events:
        if event.name != "PlayerStatsEvent":
            continue
        rows.append(
            {
                "pid": event.pid,
                "game_loop": event.frame,
                "real_s": round(event.frame / per_second, 3),
                "minerals": event.minerals_current,
                "vespene": event.vespene_current,
                "minerals_rate": event.minerals_collection_rate,
                "vespene_rate": event.vespene_collection_rate,
                "workers": event.workers_active_count,
                "supply_used": float(event.food_used),
                "supply_made": float(event.food_made),
                "army_value": event.minerals_used_active_forces + event.vespene_used_active_forces,
                "minerals_lost": event.minerals_lost,
                "vespene_lost": event.vespene_lost,
                "minerals_killed": event.minerals_killed,
                "vespene_killed": event.vespene_killed,
            }
        )
    return rows


def unit_records(replay: Any) -> list[dict[str, Any]]:
    """Return every tracked unit as a plain dict (owner pid, first type, loops, flags)."""
    records = []
    for unit in getattr(replay, "objects", {}).values():
        owner = getattr(unit, "owner", None)
        if owner is None or not hasattr(unit, "type_history"):
            continue
        history = list(unit.type_history.values())
        # Arcade maps have unit types the datapack does not know: their names are None.
        first_name = (history[0].name if history else unit.name) or UNKNOWN_UNIT_NAME
        killer = getattr(unit, "killing_player", None)
        records.append(
            {
                "pid": owner.pid,
                "name": first_name,
                "final_name": unit.name or UNKNOWN_UNIT_NAME,
                "is_building": bool(unit.is_building),
                "is_worker": bool(unit.is_worker),
                "started_loop": unit.started_at,
                "finished_loop": unit.finished_at,
                "died_loop": unit.died_at,
                "killer_pid": getattr(killer, "pid", None),
            }
        )
    return records


def upgrade_records(replay: Any) -> list[dict[str, Any]]:
    """Return completed, non-cosmetic upgrades as plain dicts."""
    return [
        {"pid": event.pid, "name": event.upgrade_type_name, "loop": event.frame}
        for event in replay.tracker_events
        if event.name == "UpgradeCompleteEvent"
        and not event.upgrade_type_name.startswith(COSMETIC_UPGRADE_PREFIXES)
    ]


def build_order_rows(
    units: list[dict[str, Any]], upgrades: list[dict[str, Any]], per_second: float
) -> list[BuildOrderRow]:
    """Build the build order: what each player made after the start, in time order."""
    rows: list[BuildOrderRow] = []
    # Sort keys, built with the rows: (start, or completion for upgrades; pid; name).
    keys: list[tuple[Any, Any, Any]] = []
    for unit in units:
        started = unit["started_loop"]
        if started is None or started == 0 or unit["name"] in STAT_UNIT_NAMES_EXCLUDED:
            continue  # starting units and spawned units are not part of a build order
        rows.append(
            {
                "pid": unit["pid"],
                "kind": "structure" if unit["is_building"] else "unit",
                "name": unit["name"],
                "started_loop": started,
                "finished_loop": unit["finished_loop"],
                "died_loop": unit["died_loop"],
                "started_s": round(started / per_second, 3),
                "finished_s": real_seconds(unit["finished_loop"], per_second),
            }
        )
        keys.append((started, unit["pid"], unit["name"]))
    for upgrade in upgrades:
        rows.append(
            {
                "pid": upgrade["pid"],
                "kind": "upgrade",
                "name": upgrade["name"],
                "started_loop": None,  # tracker events only report completion
                "finished_loop": upgrade["loop"],
                "died_loop": None,
                "started_s": None,
                "finished_s": real_seconds(upgrade["loop"], per_second),
            }
        )
        keys.append((upgrade["loop"] or 0, upgrade["pid"], upgrade["name"]))
    # A stable sort of the positions by key: the rows' order, without a Python call per row.
    return [rows[index] for index in sorted(range(len(rows)), key=keys.__getitem__)]
