"""Turn a :class:`GameDescription` into the bytes of a ``.SC2Replay`` file."""

from __future__ import annotations

from replay_cli.synth.attributes import encode_attributes
from replay_cli.synth.details import encode_details, encode_gamemetadata, encode_header
from replay_cli.synth.events import (
    encode_game_events,
    encode_message_events,
    encode_tracker_events,
)
from replay_cli.synth.initdata import encode_init_data
from replay_cli.synth.model import GameDescription, validate
from replay_cli.synth.mpq import build_archive


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
