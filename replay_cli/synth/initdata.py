"""Encode ``replay.initData``: users, game description and lobby slots.

The field order and widths are those of base build 95299 (every
``base_build >=`` branch of sc2reader's ``InitDataReader`` is taken).
"""

from __future__ import annotations

import hashlib

from replay_cli.synth import build
from replay_cli.synth.bitpacked import BitPackedWriter
from replay_cli.synth.details import cache_handles
from replay_cli.synth.model import GameDescription, ObserverDescription, PlayerDescription

SCALED_RATING_BIAS = 1 << 31  # ratings are stored offset by 2**31
GAME_CACHE_NAME = "Dflt"
MAX_COLORS = 16
RACE_COUNT = 3
CONTROL_KINDS = 1
MAP_SIZE = 176
LOBBY_PHASE_INGAME = 0
HANDICAP_WIDTH = 32
DIFFICULTY_WIDTH = 6
AI_BUILD_WIDTH = 8
USER_ID_WIDTH = 4
TEAM_ID_WIDTH = 4
COLOR_PREF_WIDTH = 5
OBSERVE_WIDTH = 2
ARTIFACT_SLOTS = 3
COMMANDER_MASTERY_TALENT_SLOTS = 6
RETRY_MUTATION_SLOTS = 4
# Allowed-value bit masks of a slot description: (count width, count, mask).
SLOT_ALLOWED_COLORS = (6, 16, 0xFEFF)
SLOT_ALLOWED_RACES = (8, 3, 0b111)
SLOT_ALLOWED_DIFFICULTY = (6, 11, 0x7FE)
SLOT_ALLOWED_CONTROLS = (8, 2, 0b11)
SLOT_ALLOWED_OBSERVE = (2, 3, 0b111)
SLOT_ALLOWED_AI_BUILDS = (8, 0, 0)


def _checksum(label: str) -> int:
    """A stable 32-bit value derived from a label (map/mod sync checksums)."""
    return int.from_bytes(hashlib.sha256(label.encode("utf-8")).digest()[:4], "big")


def _write_user(out: BitPackedWriter, user: PlayerDescription | ObserverDescription) -> None:
    is_observer = isinstance(user, ObserverDescription)
    out.write_sized_text(user.name, 8)
    if out.write_optional_flag(True):  # clan tag
        out.write_sized_text(user.clan_tag, 8)
    out.write_optional_flag(False)  # clan logo
    out.write_optional_flag(False)  # highest league
    out.write_optional_flag(False)  # combined race levels
    out.write_bits(0, 32)  # random seed
    out.write_optional_flag(False)  # race preference
    out.write_optional_flag(False)  # team preference
    for _flag in ("test_map", "test_auto", "examine", "custom_interface"):
        out.write_bool(False)
    out.write_bits(0, 32)  # test type
    out.write_bits(build.OBSERVE_SPECTATOR if is_observer else build.OBSERVE_NONE, 2)
    for _text in ("hero", "skin", "mount", "toon_handle"):
        out.write_sized_text("", 9 if _text != "toon_handle" else 7)
    mmr = user.mmr if isinstance(user, PlayerDescription) else None
    out.write_bool(mmr is not None)
    if mmr is not None:
        out.write_bits(mmr + SCALED_RATING_BIAS, 32)


def _write_game_options(out: BitPackedWriter, desc: GameDescription) -> None:
    is_ladder = desc.game_mode == "Ladder"
    options = (
        True,  # lock teams
        False,  # teams together
        False,  # advanced shared control
        False,  # random races
        True,  # battle.net
        is_ladder,  # amm
        is_ladder,  # competitive
        False,  # practice
        False,  # cooperative
        False,  # no victory or defeat
        True,  # hero duplicates allowed
    )
    for flag in options:
        out.write_bool(flag)
    out.write_bits(0, 2)  # fog
    out.write_bits(0, 2)  # observers
    out.write_bits(0, 2)  # user difficulty
    out.write_bits(0, 64)  # client debug flags
    out.write_bool(False)  # build coach


def _write_slot_description(out: BitPackedWriter) -> None:
    for width, count, mask in (
        SLOT_ALLOWED_COLORS,
        SLOT_ALLOWED_RACES,
        SLOT_ALLOWED_DIFFICULTY,
        SLOT_ALLOWED_CONTROLS,
        SLOT_ALLOWED_OBSERVE,
        SLOT_ALLOWED_AI_BUILDS,
    ):
        out.write_bits(count, width)
        out.write_bits(mask, count)


def _write_game_description(out: BitPackedWriter, desc: GameDescription, slots: int) -> None:
    out.write_bits(_checksum(f"random:{desc.map_name}"), 32)
    out.write_sized_text(GAME_CACHE_NAME, 10)
    _write_game_options(out, desc)
    teams = len({p.team for p in desc.players})
    out.write_bits(build.GAME_SPEED_FASTER, 3)
    out.write_bits(0, 3)  # game type: melee
    out.write_bits(len(desc.humans), 5)  # max users
    out.write_bits(len(desc.observers), 5)  # max observers
    out.write_bits(len(desc.players), 5)  # max players
    out.write_bits(teams - 1, 4)  # max teams (stored minus one)
    out.write_bits(MAX_COLORS, 6)
    out.write_bits(RACE_COUNT - 1, 8)  # max races (stored minus one)
    out.write_bits(CONTROL_KINDS, 8)
    out.write_bits(MAP_SIZE, 8)
    out.write_bits(MAP_SIZE, 8)
    out.write_bits(_checksum(f"map:{desc.map_name}"), 32)
    out.write_sized_text("", 11)  # map file name
    out.write_sized_text(desc.map_author, 8)
    out.write_bits(_checksum("mods"), 32)
    out.write_bits(slots, 5)
    for _ in range(slots):
        _write_slot_description(out)
    out.write_bits(build.DEFAULT_DIFFICULTY, DIFFICULTY_WIDTH)
    out.write_bits(0, AI_BUILD_WIDTH)
    handles = cache_handles(desc)
    out.write_bits(len(handles), 6)
    for handle in handles:
        out.write_aligned_bytes(handle)
    out.write_bool(False)  # has extension mod
    out.write_bool(False)  # has non-Blizzard extension mod
    out.write_bool(True)  # is Blizzard map
    out.write_bool(False)  # is premade FFA
    out.write_bool(False)  # is co-op mode
    out.write_bool(False)  # is realtime mode


def _write_slot(
    out: BitPackedWriter,
    control: int,
    user_id: int | None,
    team_index: int,
    color_index: int,
    difficulty: int,
    handicap: int,
    observe: int,
    slot_id: int,
    toon_handle: str,
) -> None:
    out.write_bits(control, 8)
    out.write_bool(user_id is not None)
    if user_id is not None:
        out.write_bits(user_id, USER_ID_WIDTH)
    out.write_bits(team_index, TEAM_ID_WIDTH)
    if out.write_optional_flag(color_index > 0):
        out.write_bits(color_index, COLOR_PREF_WIDTH)
    out.write_optional_flag(False)  # race preference
    out.write_bits(difficulty, DIFFICULTY_WIDTH)
    out.write_bits(0, AI_BUILD_WIDTH)
    out.write_bits(handicap, HANDICAP_WIDTH)
    out.write_bits(observe, OBSERVE_WIDTH)
    out.write_bits(0, 32)  # logo index
    for _text in ("hero", "skin", "mount"):
        out.write_sized_text("", 9)
    out.write_bits(ARTIFACT_SLOTS, 4)
    for _ in range(ARTIFACT_SLOTS):
        out.write_sized_text("", 9)
    if out.write_optional_flag(True):
        out.write_bits(slot_id, 8)  # working set slot
    out.write_bits(0, 17)  # rewards
    out.write_sized_text(toon_handle, 7)
    out.write_bits(0, 16)  # licenses
    out.write_optional_flag(False)  # tandem leader
    out.write_sized_bytes(b"", 9)  # commander
    out.write_bits(1, 32)  # commander level
    out.write_bool(False)  # has silence penalty
    out.write_optional_flag(False)  # tandem id
    out.write_bits(0, 32)  # commander mastery level
    out.write_bits(COMMANDER_MASTERY_TALENT_SLOTS, 3)
    for _ in range(COMMANDER_MASTERY_TALENT_SLOTS):
        out.write_bits(0, 32)
    out.write_bits(0, 32)  # trophy id
    out.write_bits(0, 17)  # reward overrides
    out.write_bits(0, 32)  # brutal plus difficulty
    out.write_bits(RETRY_MUTATION_SLOTS, 3)
    for _ in range(RETRY_MUTATION_SLOTS):
        out.write_bits(0, 32)
    for _field in ("ac_enemy_race", "ac_enemy_wave_type", "commander_prestige"):
        out.write_bits(0, 32)


def _color_index(color: str) -> int:
    return int(build.COLORS[color][0][2:])  # "tc05" -> 5


def encode_init_data(desc: GameDescription) -> bytes:
    """The bit-packed ``replay.initData`` member."""
    out = BitPackedWriter()
    humans = desc.humans
    out.write_bits(len(humans), 5)
    for user in humans:
        _write_user(out, user)
    slot_count = len(desc.players) + len(desc.observers)
    _write_game_description(out, desc, slot_count)

    out.write_bits(LOBBY_PHASE_INGAME, 3)
    out.write_bits(len(humans), 5)  # max users
    out.write_bits(len(desc.observers), 5)  # max observers
    out.write_bits(slot_count, 5)
    next_user_id = 0
    for slot_id, player in enumerate(desc.players):
        if player.is_ai:
            control, user_id, toon = build.CONTROL_COMPUTER, None, ""
            difficulty = build.DIFFICULTIES[player.ai_difficulty][1]
        else:
            control, user_id, toon = build.CONTROL_HUMAN, next_user_id, player.toon_handle
            difficulty = build.DEFAULT_DIFFICULTY
            next_user_id += 1
        _write_slot(
            out,
            control,
            user_id,
            player.team - 1,
            _color_index(player.color),
            difficulty,
            player.handicap,
            build.OBSERVE_NONE,
            slot_id,
            toon,
        )
    for offset, observer in enumerate(desc.observers):
        _write_slot(
            out,
            build.CONTROL_HUMAN,
            next_user_id + offset,
            0,
            0,
            build.DEFAULT_DIFFICULTY,
            100,
            build.OBSERVE_SPECTATOR,
            len(desc.players) + offset,
            observer.toon_handle,
        )
    out.write_bits(_checksum(f"seed:{desc.start_time.isoformat()}"), 32)
    if out.write_optional_flag(True):
        out.write_bits(0, USER_ID_WIDTH)  # host user id
    out.write_bool(len(humans) == 1 and len(desc.players) > 1)  # single player
    out.write_bits(0, 8)  # picked map tag
    out.write_bits(0, 32)  # game duration limit (none)
    out.write_bits(build.DEFAULT_DIFFICULTY, DIFFICULTY_WIDTH)
    out.write_bits(0, AI_BUILD_WIDTH)
    return out.getvalue()
