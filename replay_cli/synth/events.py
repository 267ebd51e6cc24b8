"""Encode the three event streams: message, tracker and game events.

* message and game events are bit-packed: game-loop delta, user id (5 bits),
  event id, payload, then byte alignment;
* tracker events are versioned structs: game-loop delta, event id, struct.
"""

from __future__ import annotations

from collections.abc import Iterator

from replay_cli.synth import build
from replay_cli.synth.bitpacked import (
    TAG_STRUCT,
    BitPackedWriter,
    v_gameloop_delta,
    v_int,
    v_optional,
    v_struct,
    v_text,
    vint,
    write_gameloop_delta,
)
from replay_cli.synth.model import GameDescription, PlayerDescription, StatsSample

USER_ID_WIDTH = 5
MESSAGE_ID_WIDTH = 4
MESSAGE_CHAT = 0
CHAT_RECIPIENT_WIDTH = 3
CHAT_TEXT_LENGTH_WIDTH = 11
CHAT_RECIPIENTS = {"all": 0, "allies": 2, "observers": 4}

TRACKER_PLAYER_STATS = 0
TRACKER_UNIT_BORN = 1
TRACKER_UPGRADE = 5
TRACKER_UNIT_INIT = 6
TRACKER_UNIT_DONE = 7
TRACKER_PLAYER_SETUP = 9
PLAYER_TYPE_HUMAN = 1
PLAYER_TYPE_COMPUTER = 2
STATS_FIELD_COUNT = 39
FOOD_FIXED_POINT = 4096  # food values are stored times 4096
FIRST_UNIT_INDEX = 300
UNIT_RECYCLE = 1
MAP_CENTRE = 88

GAME_EVENT_ID_WIDTH = 7
GAME_USER_OPTIONS = 7
GAME_COMMAND = 27
GAME_CONTROL_GROUP_UPDATE = 29
GAME_CAMERA_UPDATE = 49
GAME_USER_LEAVE = 101
COMMAND_FLAGS_WIDTH = 27
COMMAND_FLAG_USER = 0x100
COMMAND_TARGET_POINT = 1
POINT_COORD_WIDTH = 20
POINT_FIXED_POINT = 4096  # command target points are map cells times 4096
INT32_BIAS = 1 << 31
CAMERA_FIXED_POINT = 256  # camera targets are map cells times 256
CONTROL_GROUP_RECALL = 2
LEAVE_REASON_LEFT = 0
CAMERA_INTERVAL_LOOPS = 224  # one camera move every 10 game seconds
MAX_CAMERA_EVENTS = 60


# Field tags of the stats struct in the order StatsSample lists its values;
# the other score fields of the 39 are always zero.
_STATS_FIELD_TAGS = (0, 1, 2, 3, 4, 11, 14, 17, 23, 29, 30, 31, 32)
_ZERO_STATS_FIELDS = [vint(tag) + v_int(0) for tag in range(STATS_FIELD_COUNT)]
_STATS_STRUCT_PREFIX = bytes((TAG_STRUCT,)) + vint(STATS_FIELD_COUNT)


def encode_stats(sample: StatsSample) -> bytes:
    """The 39-field score struct of a PlayerStatsEvent."""
    values = (
        sample.minerals_current,
        sample.vespene_current,
        sample.minerals_collection_rate,
        sample.vespene_collection_rate,
        sample.workers_active,
        sample.minerals_used_current_army,
        sample.vespene_used_current_army,
        sample.minerals_lost_army,
        sample.minerals_killed_army,
        sample.food_used * FOOD_FIXED_POINT,
        sample.food_made * FOOD_FIXED_POINT,
        sample.minerals_used_current_army,  # active forces = current army value
        sample.vespene_used_current_army,
    )
    fields = _ZERO_STATS_FIELDS.copy()
    for tag, value in zip(_STATS_FIELD_TAGS, values):
        fields[tag] = vint(tag) + v_int(value)
    return _STATS_STRUCT_PREFIX + b"".join(fields)


def _unit_position(player_id: int, index: int) -> tuple[int, int]:
    """A deterministic spot near the player's corner of the map."""
    base = 30 + (player_id * 37) % 120
    return (base + index * 3) % 256, (base + index * 7) % 256


def _player_tracker_events(
    player_id: int, player: PlayerDescription, next_unit: Iterator[int]
) -> Iterator[tuple[int, int, int, bytes]]:
    """Yield (loop, order, event id, struct) for one player's build and stats."""
    for position, item in enumerate(player.build_order):
        if item.kind == "upgrade":
            fields = {0: v_int(player_id), 1: v_text(item.name), 2: v_int(1)}
            yield item.loop, 1, TRACKER_UPGRADE, v_struct(fields)
            continue
        unit_index = next(next_unit)
        x, y = _unit_position(player_id, position)
        common = {
            0: v_int(unit_index),
            1: v_int(UNIT_RECYCLE),
            2: v_text(item.name),
            3: v_int(player_id),
            4: v_int(player_id),
            5: v_int(x),
            6: v_int(y),
        }
        if item.kind == "unit":
            born = {**common, 7: v_optional(None), 8: v_optional(None), 9: v_optional(None)}
            yield item.loop, 1, TRACKER_UNIT_BORN, v_struct(born)
        else:
            yield item.loop, 1, TRACKER_UNIT_INIT, v_struct(common)
            done_loop = item.done_loop if item.done_loop is not None else item.loop
            done = {0: v_int(unit_index), 1: v_int(UNIT_RECYCLE)}
            yield done_loop, 2, TRACKER_UNIT_DONE, v_struct(done)
    for sample in player.stats:
        fields = {0: v_int(player_id), 1: encode_stats(sample)}
        yield sample.loop, 3, TRACKER_PLAYER_STATS, v_struct(fields)


def encode_tracker_events(desc: GameDescription) -> bytes:
    """The ``replay.tracker.events`` member: setup, build orders, stats."""
    events: list[tuple[int, int, int, int, bytes]] = []
    next_user_id = 0
    for slot_id, player in enumerate(desc.players):
        player_id = slot_id + 1
        if player.is_ai:
            setup = {0: v_int(player_id), 1: v_int(PLAYER_TYPE_COMPUTER), 2: v_optional(None)}
        else:
            setup = {
                0: v_int(player_id),
                1: v_int(PLAYER_TYPE_HUMAN),
                2: v_optional(v_int(next_user_id)),
            }
            next_user_id += 1
        setup[3] = v_optional(v_int(slot_id))
        events.append((0, 0, len(events), TRACKER_PLAYER_SETUP, v_struct(setup)))
    unit_indexes = iter(range(FIRST_UNIT_INDEX, FIRST_UNIT_INDEX + 1_000_000))
    for player_id, player in enumerate(desc.players, start=1):
        for loop, order, event_id, payload in _player_tracker_events(player_id, player, unit_indexes):
            events.append((loop, order, len(events), event_id, payload))
    events.sort()
    out = bytearray()
    previous_loop = 0
    for loop, _order, _sequence, event_id, payload in events:
        out += v_gameloop_delta(loop - previous_loop)
        out += v_int(event_id)
        out += payload
        previous_loop = loop
    return bytes(out)


def encode_message_events(desc: GameDescription) -> bytes:
    """The ``replay.message.events`` member: the chat lines, in loop order."""
    out = BitPackedWriter()
    previous_loop = 0
    for line in sorted(desc.chat, key=lambda chat: chat.loop):
        write_gameloop_delta(out, line.loop - previous_loop)
        out.write_bits(line.sender_uid, USER_ID_WIDTH)
        out.write_bits(MESSAGE_CHAT, MESSAGE_ID_WIDTH)
        out.write_bits(CHAT_RECIPIENTS[line.channel], CHAT_RECIPIENT_WIDTH)
        out.write_sized_text(line.text, CHAT_TEXT_LENGTH_WIDTH)
        out.byte_align()
        previous_loop = line.loop
    return out.getvalue()


def _write_user_options(out: BitPackedWriter) -> None:
    for flag in (True, False, False, False, False, False, False, False, False, False):
        out.write_bool(flag)  # game fully downloaded, then cheats/debug switches
    out.write_bits(build.BASE_BUILD, 32)
    out.write_bits(build.BUILD, 32)
    out.write_bits(build.VERSION_FLAGS, 32)
    out.write_sized_text("", 9)  # hotkey profile


def _write_right_click(out: BitPackedWriter, x: int, y: int, sequence: int) -> None:
    out.write_bits(COMMAND_FLAG_USER, COMMAND_FLAGS_WIDTH)
    out.write_optional_flag(False)  # no ability: a plain right click
    out.write_bits(COMMAND_TARGET_POINT, 2)
    out.write_bits(x * POINT_FIXED_POINT, POINT_COORD_WIDTH)
    out.write_bits(y * POINT_FIXED_POINT, POINT_COORD_WIDTH)
    out.write_bits(INT32_BIAS, 32)  # z = 0
    out.write_bits(sequence - 1, 32)  # stored minus one
    out.write_optional_flag(False)  # other unit
    out.write_optional_flag(False)  # unit group


def _write_camera(out: BitPackedWriter, x: int, y: int) -> None:
    if out.write_optional_flag(True):
        out.write_bits(x * CAMERA_FIXED_POINT, 16)
        out.write_bits(y * CAMERA_FIXED_POINT, 16)
    out.write_optional_flag(False)  # distance
    out.write_optional_flag(False)  # pitch
    out.write_optional_flag(False)  # yaw
    out.write_optional_flag(False)  # reason
    out.write_bool(False)  # follow


def _write_control_group_recall(out: BitPackedWriter, group: int) -> None:
    out.write_bits(group, 4)
    out.write_bits(CONTROL_GROUP_RECALL, 3)
    out.write_bits(0, 2)  # no removal mask


def _human_game_events(
    desc: GameDescription, user_id: int, player: PlayerDescription | None
) -> Iterator[tuple[int, int, int, int]]:
    """Yield (loop, user id, event id, argument) for one human user."""
    yield 0, user_id, GAME_USER_OPTIONS, 0
    if player is not None:
        camera_loops = range(CAMERA_INTERVAL_LOOPS, desc.duration_loops, CAMERA_INTERVAL_LOOPS)
        for index, loop in enumerate(camera_loops):
            if index >= MAX_CAMERA_EVENTS:
                break
            yield loop, user_id, GAME_CAMERA_UPDATE, index
        for index, item in enumerate(player.build_order):
            yield item.loop, user_id, GAME_COMMAND, index
            yield item.loop, user_id, GAME_CONTROL_GROUP_UPDATE, index
    yield desc.duration_loops, user_id, GAME_USER_LEAVE, 0


def encode_game_events(desc: GameDescription) -> bytes:
    """The ``replay.game.events`` member: options, camera, commands, leaves."""
    events: list[tuple[int, int, int, int]] = []
    human_players = [p for p in desc.players if not p.is_ai]
    for user_id, player in enumerate(human_players):
        events.extend(_human_game_events(desc, user_id, player))
    for offset in range(len(desc.observers)):
        events.extend(_human_game_events(desc, len(human_players) + offset, None))
    events.sort()
    out = BitPackedWriter()
    previous_loop = 0
    sequences = [0] * (len(human_players) + len(desc.observers))
    for loop, user_id, event_id, argument in events:
        write_gameloop_delta(out, loop - previous_loop)
        out.write_bits(user_id, USER_ID_WIDTH)
        out.write_bits(event_id, GAME_EVENT_ID_WIDTH)
        x, y = MAP_CENTRE + argument % 40, MAP_CENTRE - argument % 30
        if event_id == GAME_USER_OPTIONS:
            _write_user_options(out)
        elif event_id == GAME_CAMERA_UPDATE:
            _write_camera(out, x, y)
        elif event_id == GAME_COMMAND:
            sequences[user_id] += 1
            _write_right_click(out, x, y, sequences[user_id])
        elif event_id == GAME_CONTROL_GROUP_UPDATE:
            _write_control_group_recall(out, argument % 10)
        elif event_id == GAME_USER_LEAVE:
            out.write_bits(LEAVE_REASON_LEFT, 4)
        out.byte_align()
        previous_loop = loop
    return out.getvalue()
