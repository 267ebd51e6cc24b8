"""Decide whether a parse result is complete, and say why when it is not.

sc2reader reads a damaged member as an empty one: a zeroed `replay.details` gives players with
empty names, a lost `replay.tracker.events` gives a game without a build order, and a broken
`replay.gamemetadata.json` drops MMR and APM. Each would look like a healthy row. A result is
`ok` only when every member its depth needs was read and yielded plausible content; otherwise
its quality block names each reason, and the worker stores it as `partial`.

Like extract.py, this reads the sc2reader replay by attribute only.
"""

from __future__ import annotations

from typing import Any

from replay_cli.bounds import Problems
from replay_cli.extract import METADATA_MISSING, METADATA_UNREADABLE
from replay_cli.result import Quality

# 2.0.8: the first build whose replays carry replay.tracker.events.
TRACKER_FIRST_BUILD = 25604
# 3.4.0: the first base build whose replays carry replay.gamemetadata.json (MMR, APM, results).
METADATA_FIRST_BASE_BUILD = 44401

REASON_UNNAMED = "unnamed_players"
REASON_NO_TRACKER = "no_tracker_events"
REASON_LOBBY_UNVERIFIED = "lobby_unverified"
REASON_BY_METADATA_STATE = {METADATA_MISSING: "metadata_missing", METADATA_UNREADABLE: "metadata_unreadable"}


def completeness_reasons(replay: Any, rows: dict[str, Any], depth: str, metadata_state: str) -> list[str]:
    """Return why the rows of this replay are not complete at `depth` (empty when they are)."""
    reasons = []
    if any(not row["name"] for row in rows["players"] if not row["is_observer"]):
        reasons.append(REASON_UNNAMED)
    if depth != "summary" and (replay.build or 0) >= TRACKER_FIRST_BUILD and not replay.tracker_events:
        reasons.append(REASON_NO_TRACKER)
    if metadata_state in REASON_BY_METADATA_STATE and (replay.base_build or 0) >= METADATA_FIRST_BASE_BUILD:
        reasons.append(REASON_BY_METADATA_STATE[metadata_state])
    elif metadata_state == METADATA_UNREADABLE:
        reasons.append(REASON_BY_METADATA_STATE[metadata_state])  # present but broken, whatever the build
    return reasons


def quality_block(reasons: list[str], problems: Problems) -> Quality:
    """Combine completeness reasons and what bounding changed into the result's quality block."""
    every_reason = sorted({*reasons, *problems.reasons})
    return {"degraded": bool(every_reason), "reasons": every_reason, "raw_values": dict(problems.raw_values)}
