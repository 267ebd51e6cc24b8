"""Ingest filters: which replays a run keeps, decided on the cheapest data that can decide them.

A filter reads the same values the database stores (`replays.game_type`, `is_ladder`, `vs_ai`,
`played_at`, `build`, `duration_s`, the players' names and toon handles), so the replays an
ingest keeps are exactly those the equivalent SQL selects from an unfiltered database. Build and
length can often be decided from the replay header alone; the rest need the summary depth. This
module holds the rules only: parse.py reads the replay and asks them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from typing import Any

from replay_cli.extract import LOOPS_PER_GAME_SECOND, SPEED_FACTORS

# The header has the game loops but not the game speed: a length is certain from the header
# alone only when it holds at every speed a lobby can pick.
_FASTEST_LOOPS_PER_S = LOOPS_PER_GAME_SECOND * max(SPEED_FACTORS.values())
_SLOWEST_LOOPS_PER_S = LOOPS_PER_GAME_SECOND * min(SPEED_FACTORS.values())


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a replay was left out: the rule (a stable name, e.g. "game_type") and one line of detail."""

    rule: str
    detail: str


@dataclass(frozen=True, slots=True)
class IngestFilters:
    """The filters of one ingest; they combine with AND. Empty means keep everything."""

    game_types: tuple[str, ...] = ()  # e.g. ("1v1", "2v2"), as replays.game_type holds them
    ladder_only: bool = False
    exclude_ai: bool = False
    since: date | None = None  # played on or after this UTC day
    until: date | None = None  # played on or before this UTC day
    min_build: int | None = None
    max_build: int | None = None
    min_duration: float | None = None  # real seconds, as replays.duration_s
    max_duration: float | None = None
    players: tuple[str, ...] = ()  # names (any case) or toon handles; one of them must have played

    @property
    def active(self) -> bool:
        return self != IngestFilters()

    def key(self) -> str | None:
        """A canonical text of the filters, stored with every row they decided; None when inactive."""
        if not self.active:
            return None
        values = {name: value for name, value in asdict(self).items() if value not in ((), False, None)}
        return json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)

    def check_header(self, build: int | None, loops: int | None) -> Rejection | None:
        """Decide what the header alone can: the build, and a length that holds at any game speed."""
        if build is not None:
            if self.min_build is not None and build < self.min_build:
                return Rejection("min_build", f"build {build} is below {self.min_build}")
            if self.max_build is not None and build > self.max_build:
                return Rejection("max_build", f"build {build} is above {self.max_build}")
        if loops is not None:
            longest, shortest = loops / _SLOWEST_LOOPS_PER_S, loops / _FASTEST_LOOPS_PER_S
            if self.min_duration is not None and longest < self.min_duration:
                return Rejection("min_duration", f"at most {longest:.0f} s long, under {self.min_duration:g} s")
            if self.max_duration is not None and shortest > self.max_duration:
                return Rejection("max_duration", f"at least {shortest:.0f} s long, over {self.max_duration:g} s")
        return None

    @property
    def needs_summary(self) -> bool:
        """Whether any filter is left that only the summary depth can decide."""
        header_only = IngestFilters(min_build=self.min_build, max_build=self.max_build)
        return self != header_only

    def check_rows(self, replay: Mapping[str, Any], players: Sequence[Mapping[str, Any]]) -> Rejection | None:
        """Decide every filter on a summary's replay row and player rows (the values stored)."""
        return (self._check_game(replay) or self._check_length_and_build(replay) or self._check_date(replay)
                or self._check_players(players))

    def _check_game(self, replay: Mapping[str, Any]) -> Rejection | None:
        game_type = replay.get("game_type")
        if self.game_types and game_type not in self.game_types:
            return Rejection("game_type", f"game type {game_type} is not {', '.join(self.game_types)}")
        if self.ladder_only and not replay.get("is_ladder"):
            return Rejection("ladder_only", "not a ladder game")
        if self.exclude_ai and replay.get("vs_ai"):
            return Rejection("exclude_ai", "a computer player took part")
        return None

    def _check_length_and_build(self, replay: Mapping[str, Any]) -> Rejection | None:
        build, seconds = replay.get("build"), replay.get("duration_s")
        if (self.min_build is not None or self.max_build is not None) and build is None:
            return Rejection("min_build" if self.min_build is not None else "max_build", "the build is unknown")
        rejection = self.check_header(build, None)
        if rejection is not None:
            return rejection
        if self.min_duration is not None and (seconds is None or seconds < self.min_duration):
            return Rejection("min_duration", f"length {_seconds(seconds)}, under {self.min_duration:g} s")
        if self.max_duration is not None and (seconds is None or seconds > self.max_duration):
            return Rejection("max_duration", f"length {_seconds(seconds)}, over {self.max_duration:g} s")
        return None

    def _check_date(self, replay: Mapping[str, Any]) -> Rejection | None:
        if self.since is None and self.until is None:
            return None
        played = _utc_day(replay.get("played_at"))
        if self.since is not None and (played is None or played < self.since):
            return Rejection("since", f"played {played or 'on an unknown date'}, before {self.since}")
        if self.until is not None and (played is None or played > self.until):
            return Rejection("until", f"played {played or 'on an unknown date'}, after {self.until}")
        return None

    def _check_players(self, players: Sequence[Mapping[str, Any]]) -> Rejection | None:
        if not self.players:
            return None
        wanted = {name.casefold() for name in self.players}
        for player in players:
            if player.get("is_observer"):
                continue
            if str(player.get("name") or "").casefold() in wanted or player.get("toon_handle") in self.players:
                return None
        return Rejection("player", f"none of {', '.join(self.players)} played")


def _utc_day(played_at: object) -> date | None:
    if not isinstance(played_at, str):
        return None
    try:
        return datetime.fromisoformat(played_at).astimezone(UTC).date()
    except ValueError:
        return None


def _seconds(value: object) -> str:
    return f"{value:.0f} s" if isinstance(value, (int, float)) else "unknown"
