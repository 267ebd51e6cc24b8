"""The result schema (version 1): the plain data the parse function returns and the database stores.

Everything here is JSON-serialisable and picklable: dicts, lists, str, int, float, bool and None.
The same shape is printed by `replaycli parse --json`, described by `result.schema.json`, and
written row for row into the SQLite tables (`replays`, `players`, `chat`, `build_order`,
`player_stats`); see store.py.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# 2: `quality`, the kinds `incomplete` and `store_error`, nullable numbers in child rows.
SCHEMA_VERSION = 2

Depth = Literal["summary", "stats", "full"]
# Ordered shallow to deep: a result "reached" every depth up to its depth_reached.
DEPTHS: tuple[Depth, ...] = ("summary", "stats", "full")
DEFAULT_DEPTH: Depth = "stats"

Status = Literal["ok", "partial", "failed", "filtered"]
STATUS_OK: Status = "ok"
STATUS_PARTIAL: Status = "partial"  # summary succeeded, a deeper stage failed
STATUS_FAILED: Status = "failed"  # no usable summary
STATUS_FILTERED: Status = "filtered"  # read, but left out by an ingest filter: `error` names the rule

# Stable error kinds. Scripts and the `files` table key on these strings: never rename one.
ERROR_KINDS: dict[str, str] = {
    "invalid_replay": "the file is an archive but not a usable game (no players, no game loops)",
    "unsupported_build": "sc2reader has no reader for this build (too old or too new)",
    "parse_error": "sc2reader raised while decoding the replay",
    "memory": "the parse ran out of memory (decompression bomb or huge replay)",
    "timeout": "the parse took longer than the per-file timeout",
    "worker_crash": "the worker process died (signal or exit) while parsing",
    "too_large": "the file is larger than the size cap and was not read",
    "not_regular_file": "the path is a directory, FIFO, device or similar and was not opened",
    "unreadable": "the file could not be read (missing, permissions, I/O error)",
    "pool_broken": "the file was in flight during two worker-pool breakages",
    "incomplete": "the replay parsed, but something its depth needs was missing or unusable (see quality.reasons)",
    "store_error": "the result could not be written to the database; the rest of its batch was",
    "encrypted": "a pack member is encrypted and no --pack-password unlocked it",
    "bad_pack": "the pack (zip or tar) is corrupt or truncated: the members after the damage were not read",
    "filtered": "not an error: an ingest filter left the replay out (status filtered; `type` names the rule)",
}

# Why a result is not complete, or not to be trusted as it stands (Quality.reasons). Stable strings.
QUALITY_REASONS: dict[str, str] = {
    "value_out_of_range": "a source value did not fit its column (see quality.raw_values); stored as NULL",
    "text_truncated": "a text value was longer than any the game allows and was shortened",
    "row_dropped": "a child row had no usable key and was left out",
    "unnamed_players": "a player has no name: replay.details was damaged or stripped",
    "no_tracker_events": "the build writes tracker events, but none were read: no build order or stats",
    "metadata_missing": "the build writes replay.gamemetadata.json, but the replay has none: no MMR or APM",
    "metadata_unreadable": "replay.gamemetadata.json could not be read or decoded: no MMR or APM",
    "lobby_unverified": "an in-game lobby (GameHeart) could not be checked: players and observers may be mixed",
    "no_cache_handles": "the replay names no map or mods (SC2 API and bot replays): region and map hash unknown",
    "no_game_speed": "the lobby recorded no game speed (editor games): Faster was assumed for real seconds",
    # The reasons below flag a result without making it partial: every field is filled, some may be wrong.
    "datapack_gap": "the replay is newer than sc2reader's balance data: unit and ability names may be wrong",
    "no_balance_data": "sc2reader has no balance data for this build: unit and ability names are unknown",
    "unknown_unit_types": "players' units of types the balance data does not know (arcade, co-op, new patches)",
    "unknown_abilities": "commands of abilities the balance data does not know (full depth)",
    "unknown_attributes": "lobby settings whose value sc2reader does not know (race, difficulty...)",
}
# Reasons that leave a result incomplete: it is stored as `partial`, with the kind `incomplete`.
INCOMPLETE_REASONS = frozenset({
    "value_out_of_range", "text_truncated", "row_dropped", "unnamed_players", "no_tracker_events",
    "metadata_missing", "metadata_unreadable", "lobby_unverified", "no_cache_handles", "no_game_speed",
})

# Where a failure happened, shallow to deep.
Stage = Literal["read", "header", "archive", "summary", "validate", "stats", "full", "store"]


class ErrorInfo(TypedDict):
    kind: str  # one of ERROR_KINDS
    type: str  # exception class name, e.g. "MPQError"
    message: str  # one line, at most MAX_MESSAGE_CHARS
    stage: str  # one of Stage
    release: str | None  # the build from the file's header when it could be read, e.g. "5.0.15.95299"


class ReplayRow(TypedDict):
    sha256: str
    map_name: str | None
    map_hash: str | None
    played_at: str | None  # UTC ISO-8601; None when the recorded date is a sentinel
    played_at_raw: str | None  # the date as recorded, kept when it was cleaned away
    utc_offset_hours: float | None  # the recorder's clock offset from UTC
    duration_s: float | None  # real seconds (game loops / 22.4 at Faster)
    game_loops: int | None
    game_speed: str | None
    release: str | None  # e.g. "5.0.11.89720"
    build: int | None
    base_build: int | None
    expansion: str | None  # WoL / HotS / LotV
    region: str | None
    game_type: str | None  # 1v1, 2v2, FFA ... (sc2reader real_type)
    category: str | None  # Ladder / Private / Public
    is_ladder: bool | None
    is_private: bool | None
    amm: bool | None  # automated matchmaking
    competitive: bool | None
    cooperative: bool | None
    vs_ai: bool
    has_observers: bool
    player_count: int  # players, observers excluded
    observer_count: int
    winner_team: int | None
    match_key: str | None
    random_seed: int | None  # same for every player's copy of one game
    meta_duration_game_s: int | None  # gamemetadata Duration (game seconds)
    depth: str  # the depth reached


class PlayerRow(TypedDict):
    pid: int | None  # player id (None for observers without one)
    uid: int | None  # lobby user id: chat senders are keyed on this
    sid: int | None  # lobby slot
    team: int | None
    name: str
    clan_tag: str | None
    toon_handle: str | None
    region_id: int | None
    subregion: int | None
    toon_id: int | None
    is_human: bool
    is_observer: bool
    is_referee: bool
    ai_difficulty: str | None
    pick_race: str | None
    play_race: str | None
    result: str | None  # Win / Loss / Tie / None
    handicap: int | None
    color: str | None  # hex RRGGBB
    highest_league: int | None  # raw from initData; 0 and sentinels cleaned to None
    combined_race_levels: int | None
    mmr_lobby: int | None  # initData scaled_rating
    mmr_meta: int | None  # gamemetadata MMR, sentinels cleaned
    mmr_meta_raw: int | None
    apm_blizzard: float | None  # gamemetadata APM: the number the game shows
    apm_computed: float | None  # sc2reader APMTracker, full depth only
    seconds_played: float | None  # full depth only (real seconds)
    commander: str | None  # co-op
    # stats depth: derived benchmarks (None below stats)
    workers_6m: int | None
    workers_8m: int | None
    workers_10m: int | None
    bases_6m: int | None
    bases_8m: int | None
    bases_10m: int | None
    army_value_8m: int | None
    supply_blocked_s: float | None
    spending_quotient: float | None
    units_lost: int | None
    units_killed: int | None


class ChatRow(TypedDict):
    sender_uid: int | None  # sc2reader ChatEvent.pid is the lobby uid
    sender_pid: int | None  # the sender's player id, None for observers
    sender_name: str | None
    channel: str  # all / allies / observers
    text: str
    game_loop: int | None
    game_s: float | None  # game seconds (loops / 16): what sc2reader calls event.second
    real_s: float | None  # real seconds (loops / 22.4 at Faster)


class BuildOrderRow(TypedDict):
    pid: int | None
    kind: str  # unit / structure / upgrade
    name: str
    started_loop: int | None
    finished_loop: int | None
    died_loop: int | None
    started_s: float | None  # real seconds
    finished_s: float | None


class PlayerStatsRow(TypedDict):
    pid: int
    game_loop: int
    real_s: float | None
    minerals: int | None
    vespene: int | None
    minerals_rate: int | None
    vespene_rate: int | None
    workers: int | None
    supply_used: float | None
    supply_made: float | None
    army_value: int | None  # minerals + vespene used on active army
    minerals_lost: int | None
    vespene_lost: int | None
    minerals_killed: int | None
    vespene_killed: int | None


class Quality(TypedDict):
    degraded: bool  # true when any reason applies: the row is not to be trusted as it stands
    reasons: list[str]  # keys of QUALITY_REASONS, sorted
    raw_values: dict[str, str]  # "table[index].field" -> the source value a bound replaced, as text
    sentinels: dict[str, str]  # "table[index].field" -> a source value a cleaning rule read as unknown
    replay_build: int | None  # the build in the replay's header
    data_build: str | None  # the build of the balance data sc2reader decoded it with; None: none
    # What sc2reader met and did not know: attributes (ids, harmless), attribute_values, unit_types
    # (players' units; stats and full), abilities (full)
    unknown: dict[str, int]
    members: dict[str, bool]  # whether the optional members were present: tracker_events, game_metadata
    resumed: bool | None  # resumed from a replay (HijackReplayGameEvent); known at full depth only


class Result(TypedDict):
    schema_version: int
    status: str  # Status
    sha256: str | None
    source: str | None  # path or name the bytes came from (informational)
    size: int | None
    depth_requested: str
    depth_reached: str | None
    parse_seconds: float  # wall
    cpu_seconds: float
    # The highest resident memory of the process during this parse (meter.py); None where unknown.
    peak_rss_bytes: int | None
    # "file": this parse's own peak; "process": the process's peak so far (an upper bound).
    peak_rss_scope: str | None
    parser: dict[str, str]  # {"replaycli": ..., "sc2reader": ...}
    error: ErrorInfo | None
    quality: Quality | None  # None for a failed result
    replay: ReplayRow | None
    players: list[PlayerRow]
    chat: list[ChatRow]
    build_order: list[BuildOrderRow]
    player_stats: list[PlayerStatsRow]


def parser_version(parser: dict[str, str]) -> str:
    """A result's parser versions as the files table records them: "replaycli/sc2reader"."""
    return f"{parser.get('replaycli', '?')}/{parser.get('sc2reader', '?')}"
