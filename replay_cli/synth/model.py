"""The description of a synthetic game: frozen dataclasses of plain values.

A :class:`GameDescription` says everything the writer puts into a replay;
``write_replay`` turns it into ``.SC2Replay`` bytes and sc2reader reads the
same values back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

RACES = ("Terran", "Protoss", "Zerg")
RESULTS = ("Win", "Loss", "Tie", "Undecided")
CHAT_CHANNELS = ("all", "allies", "observers")
BUILD_KINDS = ("unit", "structure", "upgrade")
# sc2reader's names for the AI difficulty lobby attribute, easiest first.
AI_DIFFICULTIES = (
    "Very Easy",
    "Easy",
    "Medium",
    "Hard",
    "Harder",
    "Very Hard",
    "Elite",
    "Cheater 1 (Vision)",
    "Cheater 2 (Resources)",
    "Insane",
)
# The lobby colours SC2 offers, by the name sc2reader derives from the RGB.
PLAYER_COLORS = (
    "Red",
    "Blue",
    "Teal",
    "Purple",
    "Yellow",
    "Orange",
    "Green",
    "Light Pink",
    "Violet",
    "Light Grey",
    "Dark Green",
    "Brown",
)
HANDICAPS = (50, 60, 70, 80, 90, 100)
GAME_MODES = ("Ladder", "Private", "Public")
STATS_INTERVAL_LOOPS = 160  # SC2 writes a PlayerStatsEvent every 10 game seconds
MAX_GAME_LOOPS = (1 << 22) - 1  # sc2reader cannot read longer event deltas
MAX_PLAYERS = 8
MAX_SLOTS = 15  # attribute scope 16 means "the whole game"
MAX_CHAT_BYTES = 2047  # 11-bit length prefix
MAX_NAME_BYTES = 255  # 8-bit length prefix


@dataclass(frozen=True)
class BuildItem:
    """One entry of a player's build order.

    ``kind`` is ``"unit"`` (a UnitBornEvent), ``"structure"`` (a UnitInitEvent
    at ``loop`` and a UnitDoneEvent at ``done_loop``) or ``"upgrade"`` (an
    UpgradeCompleteEvent).
    """

    loop: int
    name: str
    kind: str = "unit"
    done_loop: int | None = None


@dataclass(frozen=True)
class StatsSample:
    """The values of one PlayerStatsEvent (food in whole supply)."""

    loop: int
    minerals_current: int = 0
    vespene_current: int = 0
    minerals_collection_rate: int = 0
    vespene_collection_rate: int = 0
    workers_active: int = 0
    food_used: int = 0
    food_made: int = 0
    minerals_used_current_army: int = 0
    vespene_used_current_army: int = 0
    minerals_lost_army: int = 0
    minerals_killed_army: int = 0


@dataclass(frozen=True)
class PlayerDescription:
    """A player (human or AI) of the game."""

    name: str
    race: str = "Terran"
    team: int = 1
    result: str = "Undecided"
    clan_tag: str = ""
    toon_handle: str = "1-S2-1-1"
    is_ai: bool = False
    ai_difficulty: str = "Medium"
    mmr: int | None = None
    apm: int = 0
    color: str = "Red"
    handicap: int = 100
    build_order: tuple[BuildItem, ...] = ()
    stats: tuple[StatsSample, ...] = ()


@dataclass(frozen=True)
class ObserverDescription:
    """A human spectator."""

    name: str
    toon_handle: str = "1-S2-1-1"
    clan_tag: str = ""


@dataclass(frozen=True)
class ChatLine:
    """A chat message; ``sender_uid`` is the user id (humans in slot order)."""

    loop: int
    sender_uid: int
    text: str
    channel: str = "all"


@dataclass(frozen=True)
class GameDescription:
    """Everything a synthetic replay contains."""

    map_name: str
    start_time: datetime  # timezone-aware UTC, whole seconds
    duration_loops: int
    players: tuple[PlayerDescription, ...]
    observers: tuple[ObserverDescription, ...] = ()
    chat: tuple[ChatLine, ...] = ()
    utc_offset_hours: float = 0.0
    game_mode: str = "Ladder"
    map_author: str = "1-S2-1-1"

    @property
    def humans(self) -> tuple[PlayerDescription | ObserverDescription, ...]:
        """Human participants in user-id order: players, then observers."""
        human_players = tuple(p for p in self.players if not p.is_ai)
        return human_players + self.observers


def validate(desc: GameDescription) -> None:
    """Raise ValueError if the description cannot be written faithfully."""
    if not 1 <= len(desc.players) <= MAX_PLAYERS:
        raise ValueError("a game has 1 to 8 players")
    if len(desc.players) + len(desc.observers) > MAX_SLOTS or not desc.humans:
        raise ValueError("a game has 1 to 15 slots and at least one human")
    people: list[PlayerDescription | ObserverDescription] = [*desc.players, *desc.observers]
    for person in people:
        if len(person.name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"name too long: {person.name!r}")
        if len(person.clan_tag.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"clan tag too long: {person.clan_tag!r}")
    if not 0 < desc.duration_loops <= MAX_GAME_LOOPS:
        raise ValueError("duration_loops out of range")
    if desc.start_time.tzinfo is None or desc.start_time.microsecond:
        raise ValueError("start_time must be timezone-aware whole seconds")
    if desc.game_mode not in GAME_MODES:
        raise ValueError(f"unknown game mode {desc.game_mode!r}")
    for player in desc.players:
        if player.race not in RACES or player.result not in RESULTS:
            raise ValueError(f"bad race/result for {player.name!r}")
        if player.color not in PLAYER_COLORS or player.handicap not in HANDICAPS:
            raise ValueError(f"bad colour/handicap for {player.name!r}")
        if player.is_ai and player.ai_difficulty not in AI_DIFFICULTIES:
            raise ValueError(f"bad AI difficulty {player.ai_difficulty!r}")
        if not 1 <= player.team <= MAX_PLAYERS:
            raise ValueError("team numbers start at 1")
        for item in player.build_order:
            if item.kind not in BUILD_KINDS or not 0 <= item.loop <= desc.duration_loops:
                raise ValueError(f"bad build item {item!r}")
            if item.done_loop is not None and not item.loop <= item.done_loop <= desc.duration_loops:
                raise ValueError(f"build item finishes before it starts: {item!r}")
        for sample in player.stats:
            if not 0 <= sample.loop <= desc.duration_loops:
                raise ValueError(f"stats sample outside the game: {sample!r}")
    for line in desc.chat:
        if line.channel not in CHAT_CHANNELS or not 0 <= line.loop <= desc.duration_loops:
            raise ValueError(f"bad chat line {line!r}")
        if len(line.text.encode("utf-8")) > MAX_CHAT_BYTES:
            raise ValueError("chat line longer than 2047 bytes")
        if not 0 <= line.sender_uid < len(desc.humans):
            raise ValueError(f"chat sender {line.sender_uid} is not a human user id")
