"""Turn a :class:`GameDescription` into the bytes of a ``.SC2Replay`` file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from replay_cli.synth.attributes import encode_attributes
from replay_cli.synth.details import encode_details, encode_gamemetadata, encode_header
from replay_cli.synth.events import (
    encode_game_events,
    encode_message_events,
    encode_tracker_events,
)
from replay_cli.synth.initdata import encode_init_data
from replay_cli.synth.model import BuildItem, GameDescription, validate
from replay_cli.synth.mpq import build_archive

# The unit each race builds most cheaply and most often: what with_units() builds.
BASIC_UNITS = {"Terran": "Marine", "Protoss": "Zealot", "Zerg": "Zergling"}


def replay_members(desc: GameDescription) -> list[tuple[str, bytes]]:
    """The archive members of the replay, in the order they are stored."""
    details = encode_details(desc)
    init_data = encode_init_data(desc)
    return [
        ("replay.attributes.events", encode_attributes(desc)),
        ("replay.details", details),
        ("replay.details.backup", details),
        ("replay.game.events", encode_game_events(desc)),
        ("replay.gamemetadata.json", encode_gamemetadata(desc)),
        ("replay.initData", init_data),
        ("replay.initData.backup", init_data),
        ("replay.message.events", encode_message_events(desc)),
        ("replay.tracker.events", encode_tracker_events(desc)),
    ]


def write_replay(desc: GameDescription, compression: str = "bzip2") -> bytes:
    """Encode ``desc`` as a complete, deterministic ``.SC2Replay`` file.

    ``compression`` is "bzip2" (what SC2 uses; reproducible everywhere) or
    "zlib" (faster; identical bytes only with the same zlib implementation).
    """
    validate(desc)
    return build_archive(replay_members(desc), encode_header(desc), compression)


def write_variant(
    desc: GameDescription,
    change: Callable[[str, bytes], bytes | None],
    *,
    header: bytes | None = None,
    compression: str = "bzip2",
) -> bytes:
    """Write ``desc`` with each member passed through ``change(name, data)``; None leaves it out.

    A valid archive around one damaged, replaced or missing member: how the tests make the
    replays a real corpus has too few of (bot games, editor games, stripped or hostile members).
    ``header`` replaces the header struct (another release's version, say).
    """
    members = [(name, changed) for name, data in replay_members(desc) if (changed := change(name, data)) is not None]
    return build_archive(members, header if header is not None else encode_header(desc), compression)


def with_units(desc: GameDescription, count: int) -> GameDescription:
    """``desc`` with its first player building ``count`` basic units, one per loop (at most the game's length).

    Thousands of units make a replay whose parse takes seconds and real memory at stats and full.
    """
    first = desc.players[0]
    items = tuple(BuildItem(loop=100 + i, name=BASIC_UNITS[first.race])
                  for i in range(min(count, desc.duration_loops - 200)))
    return replace(desc, players=(replace(first, build_order=items), *desc.players[1:]))
