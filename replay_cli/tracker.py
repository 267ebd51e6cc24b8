"""Turn the raw `replay.tracker.events` member into the `stats` depth's records, without sc2reader.

The member is a list of events in Blizzard's self-describing "versioned" encoding: every value
starts with a type byte, and structs carry their field tags, so one generic decoder reads every
protocol version. Unit types and upgrades are named by strings, so no balance data is needed.

The records are exactly what extract.py builds from a level-3 sc2reader replay run through the
GameHeartNormalizer and ContextLoader plugins: this module repeats sc2reader 1.9.0's rules
(field positions, build thresholds, which datapack knows which unit name) and nothing else.
Whatever it does not reproduce, or finds malformed, it refuses with an exception, so the caller
can fall back to sc2reader.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, NamedTuple

from replay_cli.extract import COSMETIC_UPGRADE_PREFIXES, UNKNOWN_UNIT_NAME
from replay_cli.result import PlayerStatsRow
from replay_cli.tracker_names import BUILDINGS, DATAPACKS, KNOWN, TITLES, WORKERS

# Value type bytes of the versioned encoding.
_ARRAY, _BITARRAY, _BLOB, _CHOICE, _OPTIONAL, _STRUCT, _U8, _U32, _U64, _VINT = range(10)
# Every event starts with its game-loop delta as a choice (03, tag, 09, varint) and its id as a
# varint; the choice tag names one of four integer widths, all of them written as varints.
_DELTA_TAGS = frozenset({0, 2, 4, 6})
# Varints carry the sign in bit 0 of the first byte and seven bits per byte after six. A 64-bit
# value needs at most ten bytes; more can only be garbage, and an unbounded run of continuation
# bytes would make the integer, and the time to build it, grow without limit.
_MAX_VINT_SHIFT = 6 + 7 * 9
_MAX_DEPTH = 16  # tracker events nest three levels deep; garbage must not exhaust the stack
_LOOP_WRAP = 1 << 32  # sc2reader keeps the low 32 bits of the accumulated game loop
_UNIT_INDEX_SHIFT = 18  # a unit tag is index << 18 | recycle
# The value of every one-byte varint (bit 0 is the sign, bits 1-6 the magnitude), by byte.
_ONE_BYTE_VINTS = tuple(-(byte >> 1) if byte & 1 else byte >> 1 for byte in range(0x80))

# Event ids (the same in every protocol version that has tracker events).
_PLAYER_STATS, _UNIT_BORN, _UNIT_DIED, _OWNER_CHANGE, _TYPE_CHANGE = range(5)
_UPGRADE, _UNIT_INIT, _UNIT_DONE, _UNIT_POSITIONS, _PLAYER_SETUP = range(5, 10)

# sc2reader reads six friendly-fire score fields from this build on (events/tracker.py).
FRIENDLY_FIRE_FIRST_BUILD = 26490
_STATS_TAGS = frozenset(range(33))
_STATS_TAGS_WITH_FRIENDLY_FIRE = frozenset(range(39))
# From this build on, unit died events carry the killing unit's tag, which sc2reader reads.
KILLER_UNIT_FIRST_BUILD = 27950
FOOD_FIXED_POINT = 4096.0  # supply is stored times 4096

# GameHeart tournament replays are rewritten by sc2reader's GameHeartNormalizer (players become
# observers, every loop shifts) unless a town hall is born on loop 0 or the game is LotV.
_GAMEHEART_TOWN_HALLS = frozenset({"Hatchery", "Nexus", "CommandCenter"})
_GAMEHEART_FUZZ_LOOPS = 5
_GAMEHEART_SKIPPED = "LotV"

# sc2reader's datapack choice (resources.py register_default_datapacks), most specific first:
# (expansion, first build, first build after, DATAPACKS key); None leaves that end open.
_DATAPACK_RULES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("LotV", 97364, None, "LotV/97364"),
    ("LotV", 95122, 97364, "LotV/96883"),
    ("LotV", 89634, 95122, "LotV/89720"),
    ("LotV", 80949, 89634, "LotV/80949"),
    ("LotV", 77379, 80949, "LotV/77379"),
    ("LotV", 76114, 77379, "LotV/76114"),
    ("LotV", 70154, 76114, "LotV/70154"),
    ("LotV", 59587, 70154, "LotV/59587"),
    ("LotV", 54724, 59587, "LotV/54724"),
    ("LotV", 53644, 54724, "LotV/53644"),
    ("LotV", 48258, 53644, "LotV/48258"),
    ("LotV", 47185, 48258, "LotV/47185"),
    ("LotV", 44401, 47185, "LotV/44401"),
    ("LotV", 34784, None, "LotV/base"),
    ("HotS", 38215, None, "HotS/38215"),
    ("HotS", 24764, 38215, "HotS/24764"),
    ("HotS", 24247, 24764, "HotS/24247"),
    ("HotS", 23925, 24247, "HotS/23925"),
    ("HotS", None, 23925, "HotS/base"),
    ("WoL", 24944, None, "WoL/24944"),
    ("WoL", 22612, 24944, "WoL/22612"),
    ("WoL", 19458, 22612, "WoL/19458"),
    ("WoL", 18092, 19458, "WoL/18092"),
    ("WoL", 17326, 18092, "WoL/17326"),
    ("WoL", 16117, 17326, "WoL/16117"),
)

# The field tags each event's sc2reader constructor reads, by event id.
_FIELD_TAGS = tuple(frozenset(range(count)) for count in (2, 7, 5, 4, 3, 3, 7, 2, 2, 4))
_DIED_WITH_KILLER_TAGS = frozenset(range(7))

Event = tuple[int, int, dict[int, Any]]  # (game loop, event id, fields by tag)


class TrackerError(ValueError):
    """The tracker member is truncated or malformed."""


class TrackerUnsupported(Exception):
    """The replay needs sc2reader handling this module does not repeat (GameHeart rewriting)."""


class StatsRecords(NamedTuple):
    """The `stats` depth's records, shaped as extract.py shapes them."""

    player_stats: list[PlayerStatsRow]
    units: list[dict[str, Any]]
    upgrades: list[dict[str, Any]]
    event_count: int  # tracker events read: 0 where sc2reader's replay.tracker_events is empty


def _vint(data: bytes, pos: int) -> tuple[int, int]:
    """Read one varint at pos; return (value, next position)."""
    byte = data[pos]
    pos += 1
    value = (byte & 0x7F) >> 1
    negative = byte & 1
    shift = 6
    while byte & 0x80:
        if shift > _MAX_VINT_SHIFT:
            raise TrackerError(f"varint longer than 64 bits at byte {pos}")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
    return (-value if negative else value), pos


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """Read an element count, bounded by the bytes left (each element takes at least one)."""
    count, pos = _vint(data, pos)
    if not 0 <= count <= len(data) - pos:
        raise TrackerError(f"count {count} at byte {pos} does not fit the {len(data) - pos} bytes left")
    return count, pos


def _struct(data: bytes, pos: int, depth: int) -> tuple[dict[int, Any], int]:
    """Read a struct body: (tag, value) pairs.

    Tags, integers and short blobs, nearly every field of every event, are read inline, and
    one-byte varints through a table: a call per field would cost more than the decoding itself.
    """
    small = _ONE_BYTE_VINTS
    byte = data[pos]
    if byte < 0x80 and not byte & 1:
        count = byte >> 1
        pos += 1
    else:
        count, pos = _count(data, pos)
    fields: dict[int, Any] = {}
    for _ in range(count):
        byte = data[pos]
        if byte < 0x80:
            tag = small[byte]
            pos += 1
        else:
            tag, pos = _vint(data, pos)
        kind = data[pos]
        if kind == _OPTIONAL:
            if data[pos + 1] == 0:
                fields[tag] = None
                pos += 2
                continue
            pos += 2  # a present optional is followed by its value: read it below
            kind = data[pos]
        if kind == _VINT:
            byte = data[pos + 1]
            if byte < 0x80:
                fields[tag] = small[byte]
                pos += 2
            elif data[pos + 2] < 0x80:  # two bytes: values up to 8191, most of the rest
                value = (byte & 0x7F) >> 1 | data[pos + 2] << 6
                fields[tag] = -value if byte & 1 else value
                pos += 3
            else:
                fields[tag], pos = _vint(data, pos + 1)
        elif kind == _BLOB and data[pos + 1] < 0x80 and not data[pos + 1] & 1:
            start = pos + 2
            pos = start + (data[pos + 1] >> 1)
            if pos > len(data):
                raise TrackerError(f"blob at byte {start} runs past the end")
            fields[tag] = data[start:pos]
        else:
            fields[tag], pos = _value(data, pos, depth)
    return fields, pos


def _value(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    """Read one typed value at pos; return (value, next position). Values decode as sc2reader's do."""
    if depth > _MAX_DEPTH:
        raise TrackerError(f"values nested deeper than {_MAX_DEPTH} at byte {pos}")
    kind = data[pos]
    pos += 1
    if kind == _VINT:
        return _vint(data, pos)
    if kind == _STRUCT:
        return _struct(data, pos, depth + 1)
    if kind == _BLOB:
        length, pos = _count(data, pos)
        return data[pos : pos + length], pos + length
    if kind == _ARRAY:
        count, pos = _count(data, pos)
        items = []
        for _ in range(count):
            if data[pos] == _VINT and data[pos + 1] < 0x80:  # unit positions: long runs of small ints
                byte = data[pos + 1]
                items.append(-(byte >> 1) if byte & 1 else byte >> 1)
                pos += 2
            else:
                item, pos = _value(data, pos, depth + 1)
                items.append(item)
        return items, pos
    if kind == _OPTIONAL:
        return (None, pos + 1) if data[pos] == 0 else _value(data, pos + 1, depth + 1)
    if kind == _CHOICE:
        _, pos = _vint(data, pos)
        return _value(data, pos, depth + 1)
    if kind == _U8:
        return data[pos], pos + 1
    return _fixed(data, pos, kind)


def _fixed(data: bytes, pos: int, kind: int) -> tuple[Any, int]:
    """Read the rare fixed-width kinds: u32 (raw bytes, as sc2reader keeps it), u64, bit array."""
    if kind == _U32:
        width = 4
    elif kind == _U64:
        width = 8
    elif kind == _BITARRAY:
        bits, pos = _vint(data, pos)
        if bits < 0 or bits % 8:
            # No tracker event has a bit array; a partial byte would need sc2reader's bit order.
            raise TrackerError(f"bit array of {bits} bits at byte {pos} is not byte aligned")
        width = bits // 8
    else:
        raise TrackerError(f"unknown value type {kind} at byte {pos - 1}")
    if pos + width > len(data):
        raise TrackerError(f"value at byte {pos} runs past the end")
    raw = data[pos : pos + width]
    return (int.from_bytes(raw, "big") if kind == _U64 else raw), pos + width


def decode_events(data: bytes) -> list[Event]:
    """Decode the whole member into (game loop, event id, fields) in stream order.

    Raises TrackerError when the member is truncated or malformed.
    """
    events: list[Event] = []
    end = len(data)
    pos = 0
    loop = 0
    try:
        while pos < end:
            if data[pos] != _CHOICE or data[pos + 1] not in _DELTA_TAGS or data[pos + 2] != _VINT:
                raise TrackerError(f"no event header at byte {pos}")
            if data[pos + 3] < 0x80:  # most events come within 63 loops of the previous one
                delta = _ONE_BYTE_VINTS[data[pos + 3]]
                pos += 4
            else:
                delta, pos = _vint(data, pos + 3)
            if data[pos] != _VINT:
                raise TrackerError(f"no event id at byte {pos}")
            if data[pos + 1] >= 0x80 or data[pos + 1] & 1:
                raise TrackerError(f"unknown tracker event id at byte {pos + 1}")  # ids are 0-9: one byte
            event_id = data[pos + 1] >> 1
            pos += 2
            if data[pos] != _STRUCT:
                raise TrackerError(f"event at byte {pos} is not a struct")
            fields, pos = _struct(data, pos + 1, 1)
            if event_id >= len(_FIELD_TAGS):
                raise TrackerError(f"unknown tracker event id {event_id}")
            loop += delta
            events.append((loop % _LOOP_WRAP, event_id, fields))
    except IndexError as exc:
        raise TrackerError(f"tracker events truncated at byte {min(pos, end)} of {end}") from exc
    return events


def datapack_mask(expansion: str, build: int) -> int:
    """Return the KNOWN bit of the datapack sc2reader uses for this replay, or 0 when it has none."""
    for rule_expansion, first, after, key in _DATAPACK_RULES:
        if rule_expansion == expansion and (first is None or first <= build) and (after is None or build < after):
            return 1 << DATAPACKS.index(key)
    return 0


def _rewritten_by_gameheart(events: list[Event], expansion: str) -> bool:
    """Tell whether sc2reader's GameHeartNormalizer would rewrite this replay's players and loops."""
    if expansion == _GAMEHEART_SKIPPED or not events:
        return False
    start = -1
    for loop, event_id, fields in events:
        if start != -1 and loop > start + _GAMEHEART_FUZZ_LOOPS:
            break
        if event_id == _UNIT_BORN and fields[3] and fields[2].decode("utf8") in _GAMEHEART_TOWN_HALLS:
            if loop == 0:
                return False  # town halls born on the first loop: an ordinary game
            start = loop
    return True


def _stats_row(loop: int, fields: dict[int, Any], build: int, per_second: float) -> PlayerStatsRow:
    """Build one player_stats row from a PlayerStatsEvent, clamped at zero as sc2reader does."""
    stats = fields[1]
    if not stats.keys() >= (_STATS_TAGS_WITH_FRIENDLY_FIRE if build >= FRIENDLY_FIRE_FIRST_BUILD else _STATS_TAGS):
        raise TrackerError(f"stats event at loop {loop} lacks score fields")
    sum(stats.values())  # sc2reader does arithmetic on every score field: all must be integers
    return {
        "pid": fields[0],
        "game_loop": loop,
        "real_s": round(loop / per_second, 3),
        "minerals": max(0, stats[0]),
        "vespene": max(0, stats[1]),
        "minerals_rate": max(0, stats[2]),
        "vespene_rate": max(0, stats[3]),
        "workers": max(0, stats[4]),
        "supply_used": max(0, stats[29]) / FOOD_FIXED_POINT,
        "supply_made": max(0, stats[30]) / FOOD_FIXED_POINT,
        "army_value": max(0, stats[31]) + max(0, stats[32]),
        "minerals_lost": max(0, stats[17]) + max(0, stats[18]) + max(0, stats[19]),
        "vespene_lost": max(0, stats[20]) + max(0, stats[21]) + max(0, stats[22]),
        "minerals_killed": max(0, stats[23]) + max(0, stats[24]) + max(0, stats[25]),
        "vespene_killed": max(0, stats[26]) + max(0, stats[27]) + max(0, stats[28]),
    }


def _check_positions(fields: dict[int, Any]) -> None:
    """Refuse unit positions sc2reader's constructor would fail on."""
    items = fields[1]
    if len(items) % 3:
        raise TrackerError("unit positions do not come in (index, x, y) triples")
    sum(items[::3], fields[0])  # sc2reader accumulates the unit indexes: all must be integers


def _scan(
    events: list[Event], build: int, per_second: float
) -> tuple[list[PlayerStatsRow], list[dict[str, Any]], bool]:
    """Check every event as sc2reader's constructors would; return stats rows, upgrades, and
    whether the loops never go back (the engine's sort then changes nothing)."""
    tags_by_id = list(_FIELD_TAGS)
    if build >= KILLER_UNIT_FIRST_BUILD:
        tags_by_id[_UNIT_DIED] = _DIED_WITH_KILLER_TAGS
    player_stats: list[PlayerStatsRow] = []
    upgrades: list[dict[str, Any]] = []
    ordered, last_loop = True, 0
    for loop, event_id, fields in events:
        if not fields.keys() >= tags_by_id[event_id]:
            raise TrackerError(f"tracker event {event_id} lacks fields {sorted(tags_by_id[event_id] - fields.keys())}")
        if loop < last_loop:
            ordered = False
        last_loop = loop
        if event_id == _PLAYER_STATS:
            player_stats.append(_stats_row(loop, fields, build, per_second))
        elif event_id == _UPGRADE:
            name = fields[1].decode("utf8")
            if not name.startswith(COSMETIC_UPGRADE_PREFIXES):
                upgrades.append({"pid": fields[0], "name": name, "loop": loop})
        elif event_id == _UNIT_POSITIONS:
            _check_positions(fields)
    return player_stats, upgrades, ordered


class _Unit:
    """What ContextLoader keeps of one unit: its type history's first entry, owner and loops."""

    __slots__ = ("died", "finished", "first_loop", "first_name", "killer", "name", "owner", "started")

    def __init__(self) -> None:
        self.first_loop: int | None = None
        self.first_name: str | None = None
        self.name: str | None = None
        self.owner: int | None = None
        self.started: int | None = None
        self.finished: int | None = None
        self.died: int | None = None
        self.killer: int | None = None

    def set_type(self, type_name: bytes, loop: int, known: int) -> None:
        """Change type as sc2reader's datapack does: names it does not know leave the type as it was."""
        name = type_name.decode("utf8")
        if not KNOWN.get(name, 0) & known:
            return
        title = TITLES.get(name, name)
        # The history is keyed by loop: a second type on the first loop replaces the first entry.
        if self.first_loop is None or self.first_loop == loop:
            self.first_loop, self.first_name = loop, title
        self.name = title

    def record(self) -> dict[str, Any]:
        """Return the unit as extract.unit_records shapes it."""
        return {
            "pid": self.owner,
            "name": self.first_name or UNKNOWN_UNIT_NAME,
            "final_name": self.name or UNKNOWN_UNIT_NAME,
            "is_building": self.name in BUILDINGS,
            "is_worker": self.name in WORKERS,
            "started_loop": self.started,
            "finished_loop": self.finished,
            "died_loop": self.died,
            "killer_pid": self.killer,
        }


def _owner(upkeep_pid: int, player_pids: Collection[int], observer_pids: Collection[int]) -> int | None:
    """Return the new owner's pid, or None when the upkeep pid names no entity (neutral, hostile)."""
    if upkeep_pid in player_pids:
        return upkeep_pid
    if upkeep_pid in observer_pids:
        # sc2reader fails the whole load here: an observer has no unit list to append to.
        raise TrackerUnsupported(f"a unit is owned by observer pid {upkeep_pid}")
    return None


def _unit_records(
    events: list[Event], known: int, player_pids: Collection[int], observer_pids: Collection[int]
) -> list[dict[str, Any]]:
    """Follow the unit events as sc2reader's ContextLoader does; return the owned units in birth order."""
    units: dict[int, _Unit] = {}
    if not known:
        observer_pids = ()  # without a datapack sc2reader stops before it assigns owners
    for loop, event_id, fields in events:
        if event_id == _PLAYER_STATS or event_id >= _UNIT_POSITIONS or event_id == _UPGRADE:
            continue
        unit_id = fields[0] << _UNIT_INDEX_SHIFT | fields[1]
        unit = units.get(unit_id)
        if event_id == _UNIT_BORN or event_id == _UNIT_INIT:
            if unit is None:
                unit = units[unit_id] = _Unit()
                unit.set_type(fields[2], loop, known)
            unit.started = loop
            if event_id == _UNIT_BORN:
                unit.finished = loop
            owner = _owner(fields[4], player_pids, observer_pids)
            unit.owner = unit.owner if owner is None else owner
        elif event_id == _UNIT_DONE:
            if unit is not None:
                unit.finished = loop
        elif event_id == _UNIT_DIED:
            killer = fields[2] if fields[2] in player_pids else None
            if unit is not None:
                unit.died = loop
                unit.killer = unit.killer if killer is None else killer
        elif event_id == _TYPE_CHANGE:
            if unit is not None:
                unit.set_type(fields[2], loop, known)
        elif unit is not None:  # owner change
            owner = _owner(fields[3], player_pids, observer_pids)
            unit.owner = unit.owner if owner is None else owner
    return [unit.record() for unit in units.values() if unit.owner is not None]


def stats_records(
    data: bytes,
    *,
    build: int,
    expansion: str,
    player_pids: Collection[int],
    observer_pids: Collection[int],
    per_second: float,
) -> StatsRecords:
    """Decode `replay.tracker.events` into the player_stats rows, unit and upgrade records.

    `build`, `expansion`, the pids and `per_second` are the sc2reader replay's `build`,
    `expansion`, `player` keys, observers' pids and extract.loops_per_real_second(replay).
    Raises TrackerError for a truncated or malformed member and TrackerUnsupported for a
    replay only sc2reader's own path handles; both mean "use the sc2reader path".
    """
    try:
        events = decode_events(data)
        player_stats, upgrades, ordered = _scan(events, build, per_second)
        if _rewritten_by_gameheart(events, expansion):
            raise TrackerUnsupported("GameHeart replay: sc2reader rewrites its players and game loops")
        # sc2reader's engine visits events sorted by loop; a stable sort keeps stream order within one.
        if not ordered:
            events = sorted(events, key=lambda event: event[0])
        known = datapack_mask(expansion, build)
        units = _unit_records(events, known, player_pids, observer_pids)
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TrackerError(f"malformed tracker event: {type(exc).__name__}: {exc}") from exc
    return StatsRecords(player_stats, units if known else [], upgrades, len(events))
