"""Encode the replay header, ``replay.details`` and ``replay.gamemetadata.json``."""

from __future__ import annotations

import json

from replay_cli.synth import build
from replay_cli.synth.bitpacked import (
    v_array,
    v_blob,
    v_bool,
    v_fourcc,
    v_int,
    v_optional,
    v_struct,
    v_text,
)
from replay_cli.synth.model import GameDescription, PlayerDescription

MINIMAP_FILE = b"Minimap.tga"
DEPOT_MAP_TYPE = b"s2ma"
DEPOT_SERVER_PAD = b"\x00\x00"
NO_HASH = bytes(16)


def parse_toon_handle(handle: str) -> tuple[int, int, int]:
    """Split 'region-S2-subregion-toon_id' into (region, subregion, toon id)."""
    parts = handle.split("-")
    if len(parts) != 4 or parts[1] != "S2":
        raise ValueError(f"bad toon handle {handle!r}")
    region, subregion, toon_id = int(parts[0]), int(parts[2]), int(parts[3])
    if region not in build.REGION_GATEWAYS:
        raise ValueError(f"unknown region in toon handle {handle!r}")
    return region, subregion, toon_id


def game_region(desc: GameDescription) -> int:
    """The region the game was hosted in: the first human's region."""
    return parse_toon_handle(desc.humans[0].toon_handle)[0]


def cache_handles(desc: GameDescription) -> list[bytes]:
    """The 40-byte depot handles: the standard mods, then the map itself."""
    server = DEPOT_SERVER_PAD + build.REGION_GATEWAYS[game_region(desc)]
    labels = [*build.STANDARD_DEPENDENCIES, f"map:{desc.map_name}"]
    return [DEPOT_MAP_TYPE + server + build.depot_hash(label) for label in labels]


def length_seconds(desc: GameDescription) -> int:
    """Game length in whole seconds, truncated the way sc2reader does it."""
    return int(desc.duration_loops / build.GAME_LOOPS_PER_SECOND)


def end_time_windows_ticks(desc: GameDescription) -> int:
    """The end of the game as a Windows FILETIME (100 ns ticks since 1601)."""
    end_unix = int(desc.start_time.timestamp()) + length_seconds(desc)
    return (end_unix + build.WINDOWS_EPOCH_OFFSET_SECONDS) * build.WINDOWS_TICKS_PER_SECOND


def encode_header(
    desc: GameDescription,
    release: tuple[int, int, int] = build.RELEASE,
    build_number: int = build.BUILD,
    base_build: int = build.BASE_BUILD,
) -> bytes:
    """The replay header struct stored in the MPQ user-data block.

    The version can be set to another release's, to make a replay of a patch the parser has no
    data for; the members stay in this build's format.
    """
    major, minor, revision = release
    version = v_struct(
        {
            0: v_int(build.VERSION_FLAGS),
            1: v_int(major),
            2: v_int(minor),
            3: v_int(revision),
            4: v_int(build_number),
            5: v_int(base_build),
        }
    )
    return v_struct(
        {
            0: v_blob(build.REPLAY_SIGNATURE),
            1: version,
            2: v_int(build.REPLAY_HEADER_TYPE),
            3: v_int(desc.duration_loops),
            4: v_bool(True),  # use scaled time
            5: v_struct({1: v_blob(build.DATA_VERSION)}),
            6: v_int(base_build),
            7: v_struct({1: v_blob(NO_HASH)}),
            8: v_bool(False),
        }
    )


def details_name(player: PlayerDescription) -> str:
    """The name as replay.details spells it: humans carry their clan tag."""
    if player.clan_tag and not player.is_ai:
        return f"&lt;{player.clan_tag}&gt;<sp/>{player.name}"
    return player.name


def _encode_details_player(player: PlayerDescription, slot_id: int) -> bytes:
    if player.is_ai:
        toon = {0: v_int(0), 1: v_fourcc(build.NO_PROGRAM_ID), 2: v_int(0), 4: v_int(0)}
    else:
        region, subregion, toon_id = parse_toon_handle(player.toon_handle)
        toon = {
            0: v_int(region),
            1: v_fourcc(build.PROGRAM_ID),
            2: v_int(subregion),
            4: v_int(toon_id),
        }
    red, green, blue = build.COLORS[player.color][1]
    color = {0: v_int(build.OPAQUE_ALPHA), 1: v_int(red), 2: v_int(green), 3: v_int(blue)}
    control = build.CONTROL_COMPUTER if player.is_ai else build.CONTROL_HUMAN
    return v_struct(
        {
            0: v_text(details_name(player)),
            1: v_struct(toon),
            2: v_text(player.race),
            3: v_struct(color),
            4: v_int(control),
            5: v_int(player.team - 1),
            6: v_int(player.handicap),
            7: v_int(build.OBSERVE_NONE),
            8: v_int(build.RESULT_CODES[player.result]),
            9: v_optional(v_int(slot_id)),
            10: v_blob(b""),
        }
    )


def encode_details(desc: GameDescription, with_cache_handles: bool = True) -> bytes:
    """The ``replay.details`` struct (players, map, time, dependencies).

    Replays written through the SC2 API (bot games) name no map or mods: ``with_cache_handles=False``
    writes one like them.
    """
    players = [_encode_details_player(p, slot) for slot, p in enumerate(desc.players)]
    utc_offset_ticks = round(desc.utc_offset_hours * build.TICKS_PER_HOUR)
    return v_struct(
        {
            0: v_optional(v_array(players)),
            1: v_text(desc.map_name),
            2: v_blob(b""),
            3: v_struct({0: v_blob(MINIMAP_FILE)}),
            4: v_bool(True),
            5: v_int(end_time_windows_ticks(desc)),
            6: v_int(utc_offset_ticks),
            7: v_blob(b""),
            8: v_blob(b""),
            9: v_blob(b""),
            10: v_optional(v_array(v_blob(h) for h in (cache_handles(desc) if with_cache_handles else []))),
            11: v_bool(False),
            12: v_int(build.GAME_SPEED_FASTER),
            13: v_int(build.DEFAULT_DIFFICULTY),
            14: v_optional(None),
            15: v_int(0),
            16: v_optional(v_bool(False)),
            17: v_bool(False),
        }
    )


def encode_gamemetadata(desc: GameDescription) -> bytes:
    """``replay.gamemetadata.json`` in the layout the SC2 client writes."""
    players = []
    for player_id, player in enumerate(desc.players, start=1):
        entry: dict[str, object] = {"PlayerID": player_id}
        if player.mmr is not None:
            entry["MMR"] = player.mmr
        entry["APM"] = float(player.apm)  # the client writes APM as a float
        entry["Result"] = player.result
        entry["SelectedRace"] = build.RACE_CODES[player.race]
        entry["AssignedRace"] = build.RACE_CODES[player.race]
        players.append(entry)
    document = {
        "Title": desc.map_name,
        "GameVersion": build.RELEASE_STRING,
        "DataBuild": str(build.BUILD),
        "DataVersion": build.DATA_VERSION.hex().upper(),
        "BaseBuild": f"Base{build.BASE_BUILD}",
        "Duration": length_seconds(desc),
        "Players": players,
    }
    return json.dumps(document, indent=4, ensure_ascii=False).encode("utf-8")
