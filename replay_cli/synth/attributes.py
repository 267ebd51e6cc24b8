"""Encode ``replay.attributes.events``: the lobby attributes per player.

Layout (little endian): source u8, map namespace u32, count u32, then per
attribute namespace u32, attribute id u32, scope u8 and a 4-byte value that
holds the attribute code reversed and NUL padded.
"""

from __future__ import annotations

import struct
from collections import Counter

from replay_cli.synth import build
from replay_cli.synth.model import GameDescription

ATTRIBUTE_NAMESPACE = 999
GLOBAL_SCOPE = 16  # attributes of the whole game, not of one player
ATTR_CONTROLLER = 500
ATTR_RULES = 1000
ATTR_PREMADE_GAME = 1001
ATTR_TEAM_COUNT = 2000
ATTR_TEAM_FORMAT = 2001
# The per-format team attribute (value "T1", "T2", ...).
ATTR_TEAM_BY_FORMAT = {"1v1": 2002, "2v2": 2003, "3v3": 2004, "4v4": 2005, "FFA": 2006}
ATTR_GAME_SPEED = 3000
ATTR_RACE = 3001
ATTR_COLOR = 3002
ATTR_HANDICAP = 3003
ATTR_DIFFICULTY = 3004
ATTR_PARTICIPANT_ROLE = 3007
ATTR_OBSERVER_TYPE = 3008
ATTR_GAME_MODE = 3009
ATTR_LOCKED_ALLIANCES = 3010
HEADER_FORMAT = "<BII"
ENTRY_FORMAT = "<IIB4s"


def team_format(desc: GameDescription) -> str | None:
    """The lobby's "Teams" value: '1v1'..'6v6', 'FFA', or None if custom."""
    sizes = Counter(p.team for p in desc.players)
    if len(sizes) == 2 and len(set(sizes.values())) == 1:
        per_team = next(iter(sizes.values()))
        if per_team <= 6:
            return f"{per_team}v{per_team}"
    if len(sizes) > 2 and set(sizes.values()) == {1}:
        return "FFA"
    return None


def _value(code: str) -> bytes:
    """Attribute values are stored reversed and padded to four bytes."""
    return code[::-1].encode("ascii").ljust(4, b"\x00")


def encode_attributes(desc: GameDescription, with_game_speed: bool = True) -> bytes:
    """The ``replay.attributes.events`` member.

    Games started from the map editor record no game speed: ``with_game_speed=False`` writes one
    like them.
    """
    entries: list[tuple[int, int, str]] = []
    fmt = team_format(desc)
    if with_game_speed:
        entries.append((GLOBAL_SCOPE, ATTR_GAME_SPEED, "Fasr"))
    entries.append((GLOBAL_SCOPE, ATTR_GAME_MODE, build.GAME_MODE_CODES[desc.game_mode]))
    entries.append((GLOBAL_SCOPE, ATTR_RULES, "Dflt"))
    entries.append((GLOBAL_SCOPE, ATTR_PREMADE_GAME, "no"))
    entries.append((GLOBAL_SCOPE, ATTR_LOCKED_ALLIANCES, "yes"))
    team_count = len({p.team for p in desc.players})
    entries.append((GLOBAL_SCOPE, ATTR_TEAM_COUNT, f"t{team_count}" if fmt else "Cust"))
    if fmt:
        entries.append((GLOBAL_SCOPE, ATTR_TEAM_FORMAT, fmt))
    for player_id, player in enumerate(desc.players, start=1):
        controller = "Comp" if player.is_ai else "Humn"
        difficulty = build.DIFFICULTIES[player.ai_difficulty if player.is_ai else "Medium"][0]
        entries.append((player_id, ATTR_CONTROLLER, controller))
        entries.append((player_id, ATTR_PARTICIPANT_ROLE, "Part"))
        entries.append((player_id, ATTR_RACE, build.RACE_CODES[player.race]))
        entries.append((player_id, ATTR_COLOR, build.COLORS[player.color][0]))
        entries.append((player_id, ATTR_HANDICAP, str(player.handicap)))
        entries.append((player_id, ATTR_DIFFICULTY, difficulty))
        if fmt in ATTR_TEAM_BY_FORMAT:
            entries.append((player_id, ATTR_TEAM_BY_FORMAT[fmt], f"T{player.team}"))
    first_observer_id = len(desc.players) + 1
    for offset, _observer in enumerate(desc.observers):
        scope = first_observer_id + offset
        entries.append((scope, ATTR_CONTROLLER, "Humn"))
        entries.append((scope, ATTR_PARTICIPANT_ROLE, "Watc"))
        entries.append((scope, ATTR_OBSERVER_TYPE, "Obs"))
    body = b"".join(
        struct.pack(ENTRY_FORMAT, ATTRIBUTE_NAMESPACE, attr_id, scope, _value(code))
        for scope, attr_id, code in entries
    )
    return struct.pack(HEADER_FORMAT, 0, 0, len(entries)) + body
