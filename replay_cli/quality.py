"""Decide whether a parse result is complete and trustworthy, and say why when it is not.

sc2reader reads a damaged member as an empty one: a zeroed `replay.details` gives players with
empty names, a lost `replay.tracker.events` gives a game without a build order, and a broken
`replay.gamemetadata.json` drops MMR and APM. Each would look like a healthy row. A result is
`ok` only when every member its depth needs was read and yielded plausible content; otherwise
its quality block names each reason, and the worker stores it as `partial`.

Other gaps leave every field filled but some possibly wrong: a replay newer than sc2reader's
balance data, units or abilities the data does not know. sc2reader only logs those, and the
result stays `ok` with `degraded: true` and the reasons.

Like extract.py, this reads the sc2reader replay by attribute only.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from replay_cli.bounds import Problems
from replay_cli.extract import METADATA_MISSING, METADATA_UNREADABLE, UNKNOWN_UNIT_NAME
from replay_cli.result import INCOMPLETE_REASONS, Quality

# 2.0.8: the first build whose replays carry replay.tracker.events.
TRACKER_FIRST_BUILD = 25604
# 3.4.0: the first base build whose replays carry replay.gamemetadata.json (MMR, APM, results).
METADATA_FIRST_BASE_BUILD = 44401
# The release each open-ended balance data of sc2reader describes. sc2reader decodes every later
# replay with its newest data all the same, so a later release's new or renamed units and
# abilities come out wrong without a word. Add a line when sc2reader ships newer data.
DATA_RELEASES: dict[str, tuple[int, int, int]] = {"97364": (5, 0, 16)}

REASON_UNNAMED = "unnamed_players"
REASON_NO_TRACKER = "no_tracker_events"
REASON_LOBBY_UNVERIFIED = "lobby_unverified"
REASON_NO_CACHE_HANDLES = "no_cache_handles"
REASON_NO_GAME_SPEED = "no_game_speed"
REASON_BY_METADATA_STATE = {METADATA_MISSING: "metadata_missing", METADATA_UNREADABLE: "metadata_unreadable"}
# sc2reader log messages -> what they say it did not know (they are its only report of it). An
# unknown attribute id is a lobby setting no field is read from: counted, but it taints nothing.
NOTE_PREFIXES: dict[str, tuple[str, ...]] = {
    "attributes": ("Unknown attribute id",),
    "attribute_values": ("Missing attribute value",),
}
# What makes a result degraded when any was met.
UNKNOWN_REASONS = {"unit_types": "unknown_unit_types", "abilities": "unknown_abilities",
                   "attribute_values": "unknown_attributes"}


class Sc2readerNotes(logging.Handler):
    """Counts, by kind, what sc2reader logs about data it met but did not know."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        for kind, prefixes in NOTE_PREFIXES.items():
            if message.startswith(prefixes):
                self.counts[kind] += 1
                return


@dataclass
class Assessment:
    """What a parse found out about its replay's completeness and trustworthiness."""

    reasons: list[str] = field(default_factory=list)
    sentinels: dict[str, str] = field(default_factory=dict)
    replay_build: int | None = None
    data_build: str | None = None
    unknown: dict[str, int] = field(default_factory=dict)
    members: dict[str, bool] = field(default_factory=dict)
    resumed: bool | None = None


def completeness_reasons(replay: Any, rows: dict[str, Any], depth: str, metadata_state: str,
                         tracker_events: int = 0) -> list[str]:
    """Return why the rows of this replay are not complete at `depth` (empty when they are)."""
    reasons = []
    if any(not row["name"] for row in rows["players"] if not row["is_observer"]):
        reasons.append(REASON_UNNAMED)
    if depth != "summary" and (replay.build or 0) >= TRACKER_FIRST_BUILD and not tracker_events:
        reasons.append(REASON_NO_TRACKER)
    if metadata_state == METADATA_UNREADABLE or (
        metadata_state == METADATA_MISSING and (replay.base_build or 0) >= METADATA_FIRST_BASE_BUILD
    ):
        reasons.append(REASON_BY_METADATA_STATE[metadata_state])
    if rows["replay"]["game_speed"] is None:  # extract.py keeps only a speed the lobby named
        reasons.append(REASON_NO_GAME_SPEED)
    return reasons


def _data_gap(replay: Any) -> list[str]:
    datapack = getattr(replay, "datapack", None)
    if datapack is None:
        return ["no_balance_data"]
    release = DATA_RELEASES.get(str(getattr(datapack, "id", "")))
    versions = list(getattr(replay, "versions", None) or [])
    return ["datapack_gap"] if release is not None and tuple(versions[1:4]) > release else []


def _unknown_unit_types(rows: dict[str, Any], depth: str) -> int | None:
    """Build-order entries whose unit type the balance data does not name (they read "Unknown")."""
    if depth == "summary":
        return None
    return sum(1 for row in rows["build_order"] if row["name"] == UNKNOWN_UNIT_NAME)


def _unknown_abilities(replay: Any, depth: str) -> int | None:
    """Commands whose ability the balance data does not name; counted where game events are read."""
    if depth != "full":
        return None
    return sum(1 for event in replay.game_events
               if getattr(event, "has_ability", False) and getattr(event, "ability", None) is None)


def assess(replay: Any, rows: dict[str, Any], depth: str, metadata_state: str,
           load_reasons: list[str], notes: Counter[str], sentinels: dict[str, str],
           tracker_events: int = 0) -> Assessment:
    """Judge one extracted replay: incomplete reasons, trust reasons, and the facts behind them."""
    unknown = {kind: notes.get(kind, 0) for kind in ("attributes", "attribute_values")}
    for kind, count in (("unit_types", _unknown_unit_types(rows, depth)),
                        ("abilities", _unknown_abilities(replay, depth))):
        if count is not None:
            unknown[kind] = count
    reasons = [*load_reasons, *completeness_reasons(replay, rows, depth, metadata_state, tracker_events),
               *_data_gap(replay)]
    reasons += [UNKNOWN_REASONS[kind] for kind, count in unknown.items() if count and kind in UNKNOWN_REASONS]
    members = {"game_metadata": metadata_state != METADATA_MISSING}
    if depth != "summary":
        members["tracker_events"] = tracker_events > 0
    resumed = None
    if depth == "full":
        resumed = any(event.name == "HijackReplayGameEvent" for event in replay.game_events)
    datapack = getattr(replay, "datapack", None)
    return Assessment(reasons=reasons, sentinels=sentinels, replay_build=replay.build,
                      data_build=None if datapack is None else str(getattr(datapack, "id", "")) or None,
                      unknown=unknown, members=members, resumed=resumed)


def quality_block(assessment: Assessment, problems: Problems) -> Quality:
    """Combine what the parse found and what bounding changed into the result's quality block."""
    every_reason = sorted({*assessment.reasons, *problems.reasons})
    return {
        "degraded": bool(every_reason),
        "reasons": every_reason,
        "raw_values": dict(problems.raw_values),
        "sentinels": dict(assessment.sentinels),
        "replay_build": assessment.replay_build,
        "data_build": assessment.data_build,
        "unknown": dict(assessment.unknown),
        "members": dict(assessment.members),
        "resumed": assessment.resumed,
    }


def is_incomplete(quality: Quality) -> bool:
    """Whether the result lacks something its depth needs (stored partial), not only flagged."""
    return any(reason in INCOMPLETE_REASONS for reason in quality["reasons"])
