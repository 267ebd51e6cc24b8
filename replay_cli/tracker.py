"""Turn the raw `replay.tracker.events` member into the `stats` depth's records, without sc2reader.

The member is a list of events in Blizzard's self-describing "versioned" encoding: every value
starts with a type byte, and structs carry their field tags, so one generic decoder reads every
protocol version. Unit types and upgrades are named by strings, so no balance data is needed.
The few byte layouts nearly every event comes in are matched by one regular expression instead
(the fast path below); the generic decoder reads whatever else a stream holds.

The records are exactly what extract.py builds from a level-3 sc2reader replay run through the
GameHeartNormalizer and ContextLoader plugins: this module repeats sc2reader 1.9.0's rules
(field positions, build thresholds, which datapack knows which unit name) and nothing else.
Whatever it does not reproduce, or finds malformed, it refuses with an exception, so the caller
can fall back to sc2reader.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from operator import getitem, itemgetter
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


def _generic_event(data: bytes, pos: int, build: int) -> tuple[int, int, list[Any], int]:
    """Decode the event at pos with the generic decoder and check it as sc2reader's constructor would.

    Return (loop delta, event id, the values the records read, next position); raise TrackerError
    when the event is truncated or malformed.
    """
    try:
        if data[pos] != _CHOICE or data[pos + 1] not in _DELTA_TAGS or data[pos + 2] != _VINT:
            raise TrackerError(f"no event header at byte {pos}")
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
    except IndexError as exc:
        raise TrackerError(f"tracker events truncated at byte {min(pos, len(data))} of {len(data)}") from exc
    if event_id >= len(_FIELD_TAGS):
        raise TrackerError(f"unknown tracker event id {event_id}")
    tags = _DIED_WITH_KILLER_TAGS if event_id == _UNIT_DIED and build >= KILLER_UNIT_FIRST_BUILD \
        else _FIELD_TAGS[event_id]
    if not fields.keys() >= tags:
        raise TrackerError(f"tracker event {event_id} lacks fields {sorted(tags - fields.keys())}")
    return delta, event_id, _read_values(event_id, fields, build), pos


def _read_values(event_id: int, fields: dict[int, Any], build: int) -> list[Any]:
    """Return the values the records read from a decoded event, as the fast path converts them."""
    if event_id == _PLAYER_STATS:
        stats = fields[1]
        if not stats.keys() >= (_STATS_TAGS_WITH_FRIENDLY_FIRE if build >= FRIENDLY_FIRE_FIRST_BUILD
                                else _STATS_TAGS):
            raise TrackerError("stats event lacks score fields")
        sum(stats.values())  # sc2reader does arithmetic on every score field: all must be integers
        return [fields[0], *(stats[tag] for tag in _STATS_READ)]
    if event_id == _UPGRADE:
        return [fields[0], _upgrade_name(fields[1])]
    if event_id >= _UNIT_POSITIONS:
        if event_id == _UNIT_POSITIONS:
            _check_positions(fields)
        return []
    values = [fields[0], fields[1], *(fields[tag] for tag in _VALUE_TAGS[event_id])]
    if event_id in _TYPED_EVENTS:
        values[2] = _unit_type(values[2])
    return values


def _upgrade_name(raw_name: bytes) -> str | None:
    """Return an upgrade's name, or None for the cosmetic ones the records leave out."""
    name = raw_name.decode("utf8")
    return None if name.startswith(COSMETIC_UPGRADE_PREFIXES) else name


# Unit type names as tracker events carry them (UTF-8) -> (KNOWN mask, display name, name).
_TYPES_BY_RAW_NAME = {name.encode("utf8"): (mask, TITLES.get(name, name), name) for name, mask in KNOWN.items()}


def _unit_type(raw_name: bytes) -> tuple[int, str | None, str]:
    """Return (KNOWN mask, display name, name) for a type name; a name no datapack knows has mask 0.

    The name is decoded even then, as sc2reader decodes every one: invalid UTF-8 is refused.
    """
    known = _TYPES_BY_RAW_NAME.get(raw_name)
    return (0, None, raw_name.decode("utf8")) if known is None else known


def _check_positions(fields: dict[int, Any]) -> None:
    """Refuse unit positions sc2reader's constructor would fail on."""
    items = fields[1]
    if len(items) % 3:
        raise TrackerError("unit positions do not come in (index, x, y) triples")
    sum(items[::3], fields[0])  # sc2reader accumulates the unit indexes: all must be integers


# -- the fast path ----------------------------------------------------------------------------
# Nearly every event comes in one of a few byte layouts: every field present, tags in order, the
# values plain varints, short blobs or optionals. One regular expression matches a whole event
# of those layouts and captures the values the records read, so the decoding runs in the re
# engine instead of a Python loop per field. Any other layout does not match and goes through
# _generic_event, so both give the same values for every stream.

_VINT_RE = rb"[\x80-\xff]{0,9}[\x00-\x7f]"  # ten bytes at most, as _vint allows
_FAST_BLOB_LONGEST = 63
_FAST_BLOB_BYTES = 2 + _FAST_BLOB_LONGEST  # with its type and length bytes
_VALUE_RES = {
    "i": rb"\x09" + _VINT_RE,
    "o": rb"(?:\x09" + _VINT_RE + rb"|\x04\x00|\x04\x01\x09" + _VINT_RE + rb")",
    # A blob's length is a one-byte varint here (up to 63 bytes): one alternative per length.
    "b": rb"\x02(?:"
    + b"|".join(re.escape(bytes([2 * n])) + b".{%d}" % n for n in range(_FAST_BLOB_LONGEST + 1))
    + rb")",
}
_VALUE_RES["q"] = rb"(?:\x04\x00|\x04\x01" + _VALUE_RES["b"] + rb")"
_VALUE_RES["t"] = _VALUE_RES["g"] = _VALUE_RES["b"]
# Unit positions: an array of small integers, captured with its count (see _Positions).
_VALUE_RES["p"] = rb"\x00" + _VINT_RE + rb"(?:\x09" + _VINT_RE + rb")*"

# After the unit's index and recycle (tags 0 and 1), the tags each unit event's records read.
_VALUE_TAGS = ((), (2, 3, 4), (2,), (3,), (2,), (), (2, 3, 4), (), (), ())
_TYPED_EVENTS = frozenset({_UNIT_BORN, _UNIT_INIT, _TYPE_CHANGE})  # their third value is a type
_STATS_READ = (0, 1, 2, 3, 4, *range(17, 33))  # the score fields the stats rows read

# (event id, field layout) per fast shape: one letter per tag in order: i int, o optional int,
# b blob, q optional blob, t a unit type, g an upgrade's name, p unit positions;
# upper case for the values _read_values returns, captured in that order (the positions array
# is captured only for the check its converter makes, the setup event's player only so that
# every layout captures a value: no record reads them).
_FAST_SHAPES = (
    (_UNIT_BORN, "IITIIiiooq"),
    (_UNIT_BORN, "IITIIii"),
    (_UNIT_DIED, "IIOiioo"),
    (_UNIT_DIED, "IIOii"),  # builds before KILLER_UNIT_FIRST_BUILD only
    (_OWNER_CHANGE, "IIiI"),
    (_TYPE_CHANGE, "IIT"),
    (_UPGRADE, "IGi"),
    (_UNIT_INIT, "IITIIii"),
    (_UNIT_DONE, "II"),
    (_UNIT_POSITIONS, "iP"),
    (_PLAYER_SETUP, "Iioo"),
)


def _struct_re(layout: str) -> tuple[bytes, str]:
    """Return the pattern of a struct with these fields, and the letters of the values it captures."""
    parts = [rb"\x05", re.escape(bytes([2 * len(layout)]))]
    for tag, letter in enumerate(layout):
        value = _VALUE_RES[letter.lower()]
        parts += [re.escape(bytes([2 * tag])), b"(" + value + b")" if letter.isupper() else value]
    return b"".join(parts), "".join(filter(str.isupper, layout))


def _stats_layout(count: int) -> str:
    """The layout of a stats event's `count` score fields: the ones the rows read captured."""
    return "".join("I" if tag in _STATS_READ else "i" for tag in range(count))


_Shape = tuple[int, tuple[int, ...], tuple[Any, ...]]  # (event id, group numbers, their converters)


@functools.cache
def _fast_pattern(friendly_fire: bool, killer_unit: bool) -> tuple[re.Pattern[bytes], dict[int, _Shape]]:
    """Compile the event pattern for a build; return it and, by the group number of each
    shape's end marker, (event id, group numbers, converters): the groups to read, the loop
    delta's first, and how to convert each."""
    shapes = [(event_id, _struct_re(layout)) for event_id, layout in _FAST_SHAPES
              if not (killer_unit and event_id == _UNIT_DIED and len(layout) == 5)]
    for count in (39,) if friendly_fire else (39, 33):
        body, letters = _struct_re(_stats_layout(count))
        shapes.append((_PLAYER_STATS, (rb"\x05\x04\x00(\x09" + _VINT_RE + rb")\x02" + body, "I" + letters)))
    branches, ends, group = [], {}, 1  # group 1 is the loop delta
    for event_id, (body, letters) in shapes:
        branches.append(re.escape(bytes([2 * event_id])) + body + b"()")
        # Two groups at least, so that match.group() returns a tuple: every layout captures a value.
        numbers = (1, *range(group + 1, group + len(letters) + 1))
        ends[group + len(letters) + 1] = (event_id, numbers, (_DECODED, *(_CONVERTERS[letter] for letter in letters)))
        group += len(letters) + 1
    header = rb"\x03[\x00\x02\x04\x06](\x09" + _VINT_RE + rb")\x09"
    return re.compile(header + b"(?:" + b"|".join(branches) + b")", re.DOTALL), ends


def compile_fast_path() -> None:
    """Compile the fast path's pattern for builds from KILLER_UNIT_FIRST_BUILD on (about 10 ms),
    so that forked workers inherit it instead of each compiling it on its first replay."""
    _fast_pattern(True, True)


class _Converted(dict[bytes, Any]):
    """Captured bytes -> the value _read_values gives for them.

    Short values repeat (small integers, pids, unit indexes, type and upgrade names), so they are
    kept and a lookup replaces the conversion; longer ones (large scores) rarely do and are
    converted each time. Emptied when full, so no stream can grow it without limit.
    """

    def __init__(self, convert: Callable[[bytes], Any], longest_kept: int) -> None:
        super().__init__()
        self.convert = convert
        self.longest_kept = longest_kept

    def __missing__(self, raw: bytes) -> Any:
        value = self.convert(raw)
        if len(raw) <= self.longest_kept:
            if len(self) >= _CONVERTED_LIMIT:
                self.clear()
            self[raw] = value
        return value


def _decoded(raw: bytes) -> Any:
    """Decode one captured value, type byte first, as the generic decoder would."""
    return _vint(raw, 1)[0] if raw[0] == _VINT else _value(raw, 0, 0)[0]


class _NotFast(Exception):
    """The fast path cannot tell this event's values: the generic decoder reads it."""


class _Positions:
    """Check a unit positions array as the generic decoder and _check_positions would.

    The array's items are all integers, so only their count can differ: a count that disagrees
    with the items, or that is no multiple of three, leaves the event to _generic_event.
    """

    def __getitem__(self, raw: bytes) -> None:
        count, start = _vint(raw, 1)  # past the array's type byte
        # Each item is a type byte and a varint ending in one byte below 0x80: two such bytes.
        items = len(raw[start:].translate(None, _CONTINUATION_BYTES)) // 2
        if count != items or items % 3:
            raise _NotFast


_CONTINUATION_BYTES = bytes(range(0x80, 0x100))
_CONVERTED_LIMIT = 1 << 15
# Integers up to three varint bytes (below 2**20) with their type byte, or a present optional
# with a one-byte varint; any name a blob of the fast path can hold.
_DECODED = _Converted(_decoded, longest_kept=4)
_CONVERTERS = {
    "I": _DECODED, "O": _DECODED,
    "T": _Converted(lambda raw: _unit_type(_decoded(raw)), longest_kept=_FAST_BLOB_BYTES),
    "G": _Converted(lambda raw: _upgrade_name(_decoded(raw)), longest_kept=_FAST_BLOB_BYTES),
    "P": _Positions(),
}
_UNIT_EVENTS = frozenset({_UNIT_BORN, _UNIT_DIED, _OWNER_CHANGE, _TYPE_CHANGE, _UNIT_INIT, _UNIT_DONE})


class EventStream:
    """One pass over the member: the stats rows and upgrades in stream order, the unit events
    for _unit_records, and what the GameHeart check reads."""

    __slots__ = ("count", "ordered", "player_stats", "trail", "unit_events", "upgrades")

    def __init__(self, keep_trail: bool) -> None:
        self.player_stats: list[PlayerStatsRow] = []
        self.upgrades: list[dict[str, Any]] = []
        self.unit_events: list[tuple[int, int, list[Any]]] = []  # (game loop, event id, values)
        self.trail: list[tuple[int, int, list[Any]]] | None = [] if keep_trail else None  # every event
        self.count = 0
        self.ordered = True  # the unit events' loops never go back


def read_events(data: bytes, build: int, per_second: float, keep_trail: bool = False) -> EventStream:
    """Decode the member and check every event as sc2reader's constructors would, in one pass.

    Raises TrackerError when the member is truncated or malformed.
    """
    stream = EventStream(keep_trail)
    if not data:
        return stream  # replays before tracker events: nothing to compile a pattern for
    pattern, ends = _fast_pattern(build >= FRIENDLY_FIRE_FIRST_BUILD, build >= KILLER_UNIT_FIRST_BUILD)
    match = pattern.match
    player_stats, upgrades, unit_events, trail = stream.player_stats, stream.upgrades, stream.unit_events, stream.trail
    pos, end, loop, last, count = 0, len(data), 0, 0, 0
    while pos < end:
        found = match(data, pos)
        try:
            if found is None:
                raise _NotFast
            # Never None: every branch ends in its marker group.
            event_id, numbers, converters = ends[found.lastindex]  # type: ignore[index]
            delta, *values = map(getitem, converters, found.group(*numbers))
            loop += delta
            pos = found.end()
        except _NotFast:
            delta, event_id, values, pos = _generic_event(data, pos, build)
            loop += delta
        at = loop % _LOOP_WRAP
        count += 1
        if event_id in _UNIT_EVENTS:
            if at < last:
                stream.ordered = False
            last = at
            unit_events.append((at, event_id, values))
        elif event_id == _UPGRADE:
            if values[1] is not None:
                upgrades.append({"pid": values[0], "name": values[1], "loop": at})
        elif event_id == _PLAYER_STATS:
            player_stats.append(_stats_row(at, values, per_second))
        if trail is not None:
            trail.append((at, event_id, values))
    stream.count = count
    return stream


def datapack_mask(expansion: str, build: int) -> int:
    """Return the KNOWN bit of the datapack sc2reader uses for this replay, or 0 when it has none."""
    for rule_expansion, first, after, key in _DATAPACK_RULES:
        if rule_expansion == expansion and (first is None or first <= build) and (after is None or build < after):
            return 1 << DATAPACKS.index(key)
    return 0


def _rewritten_by_gameheart(events: list[tuple[int, int, list[Any]]]) -> bool:
    """Tell whether sc2reader's GameHeartNormalizer would rewrite this replay's players and loops."""
    if not events:
        return False
    start = -1
    for loop, event_id, values in events:
        if start != -1 and loop > start + _GAMEHEART_FUZZ_LOOPS:
            break
        if event_id == _UNIT_BORN and values[3] and values[2][2] in _GAMEHEART_TOWN_HALLS:
            if loop == 0:
                return False  # town halls born on the first loop: an ordinary game
            start = loop
    return True


def _stats_row(loop: int, values: list[Any], per_second: float) -> PlayerStatsRow:
    """Build one player_stats row from a PlayerStatsEvent's player and _STATS_READ scores,
    clamped at zero as sc2reader does."""
    # score[i]: _STATS_READ[i - 1]. Values are rarely negative: clamp only when one is (the pid
    # is read from values, unclamped, either way).
    score = values if min(values) >= 0 else [value if value > 0 else 0 for value in values]
    return {
        "pid": values[0],
        "game_loop": loop,
        "real_s": round(loop / per_second, 3),
        "minerals": score[1],
        "vespene": score[2],
        "minerals_rate": score[3],
        "vespene_rate": score[4],
        "workers": score[5],
        "supply_used": score[18] / FOOD_FIXED_POINT,
        "supply_made": score[19] / FOOD_FIXED_POINT,
        "army_value": score[20] + score[21],
        "minerals_lost": score[6] + score[7] + score[8],
        "vespene_lost": score[9] + score[10] + score[11],
        "minerals_killed": score[12] + score[13] + score[14],
        "vespene_killed": score[15] + score[16] + score[17],
    }


# What ContextLoader keeps of one unit, as a list indexed by these: its type history's first
# entry (loop and display name), its current type, owner and the loops of its life.
_FIRST_LOOP, _FIRST_NAME, _NAME, _OWNER, _STARTED, _FINISHED, _DIED, _KILLER = range(8)
_UNIT_FIELDS = 8


def _set_type(unit: list[Any], unit_type: tuple[int, str | None, str], loop: int, known: int) -> None:
    """Change type as sc2reader's datapack does: names it does not know leave the type as it was."""
    if unit_type[0] & known:
        # The history is keyed by loop: a second type on the first loop replaces the first entry.
        if unit[_FIRST_LOOP] is None or unit[_FIRST_LOOP] == loop:
            unit[_FIRST_LOOP], unit[_FIRST_NAME] = loop, unit_type[1]
        unit[_NAME] = unit_type[1]


def _refuse_observer(upkeep_pid: Any, observer_pids: Collection[int]) -> None:
    """Refuse a unit owned by an observer; any other pid that is no player's leaves the owner as it was."""
    if upkeep_pid in observer_pids:
        # sc2reader fails the whole load here: an observer has no unit list to append to.
        raise TrackerUnsupported(f"a unit is owned by observer pid {upkeep_pid}")


def _unit_records(
    unit_events: list[tuple[int, int, list[Any]]], known: int, player_pids: Collection[int],
    observer_pids: Collection[int],
) -> list[dict[str, Any]]:
    """Follow the unit events as sc2reader's ContextLoader does; return the owned units in birth order.

    The values are those _read_values gives: the unit's index and recycle, then its type, control
    and upkeep pids (born, init), the killer's pid (died), the upkeep pid (owner change) or the type.
    """
    units: dict[int, list[Any]] = {}
    if not known:
        observer_pids = ()  # without a datapack sc2reader stops before it assigns owners
    for loop, event_id, values in unit_events:
        unit_tag = values[0] << _UNIT_INDEX_SHIFT | values[1]
        unit = units.get(unit_tag)
        if event_id == _UNIT_BORN or event_id == _UNIT_INIT:
            if unit is None:
                unit = units[unit_tag] = [None] * _UNIT_FIELDS
                _set_type(unit, values[2], loop, known)
            unit[_STARTED] = loop
            if event_id == _UNIT_BORN:
                unit[_FINISHED] = loop
            if values[4] in player_pids:
                unit[_OWNER] = values[4]
            else:
                _refuse_observer(values[4], observer_pids)
        elif event_id == _UNIT_DIED:
            by_player = values[2] in player_pids
            if unit is not None:
                unit[_DIED] = loop
                if by_player:
                    unit[_KILLER] = values[2]
        elif unit is None:
            continue
        elif event_id == _TYPE_CHANGE:
            _set_type(unit, values[2], loop, known)
        elif event_id == _UNIT_DONE:
            unit[_FINISHED] = loop
        elif values[2] in player_pids:  # owner change
            unit[_OWNER] = values[2]
        else:
            _refuse_observer(values[2], observer_pids)
    return [_unit_record(unit) for unit in units.values() if unit[_OWNER] is not None]


def _unit_record(unit: list[Any]) -> dict[str, Any]:
    """Return the unit as extract.unit_records shapes it."""
    return {
        "pid": unit[_OWNER],
        "name": unit[_FIRST_NAME] or UNKNOWN_UNIT_NAME,
        "final_name": unit[_NAME] or UNKNOWN_UNIT_NAME,
        "is_building": unit[_NAME] in BUILDINGS,
        "is_worker": unit[_NAME] in WORKERS,
        "started_loop": unit[_STARTED],
        "finished_loop": unit[_FINISHED],
        "died_loop": unit[_DIED],
        "killer_pid": unit[_KILLER],
    }


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
        stream = read_events(data, build, per_second, keep_trail=expansion != _GAMEHEART_SKIPPED)
        if stream.trail is not None and _rewritten_by_gameheart(stream.trail):
            raise TrackerUnsupported("GameHeart replay: sc2reader rewrites its players and game loops")
        # sc2reader's engine visits events sorted by loop; a stable sort keeps stream order within one.
        unit_events = stream.unit_events if stream.ordered else sorted(stream.unit_events, key=itemgetter(0))
        known = datapack_mask(expansion, build)
        units = _unit_records(unit_events, known, player_pids, observer_pids)
    except (KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise TrackerError(f"malformed tracker event: {type(exc).__name__}: {exc}") from exc
    return StatsRecords(stream.player_stats, units if known else [], stream.upgrades, stream.count)
