"""THE worker: one module-level, picklable function that turns replay bytes into plain data.

`parse_replay(data, depth)` and its path convenience `parse_file(path, depth, max_bytes)` are
the unit of work everywhere: inline, in the process pool, in an async service and on a Dask
cluster. They never raise for a bad replay and never return sc2reader objects; every failure
comes back as a `Result` with status "failed" and a classified `error`. This is the only module
that imports sc2reader, and the only place where `except Exception` is allowed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import time
import types
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from replay_cli import __version__
from replay_cli.bounds import fit_result_rows
from replay_cli.defaults import DEFAULT_MAX_BYTES
from replay_cli.derive import apply_benchmarks
from replay_cli.extract import (
    build_order_rows,
    chat_rows,
    cleaned_values,
    loops_per_real_second,
    player_rows,
    player_stats_rows,
    read_gamemetadata,
    replay_row,
    unit_records,
    upgrade_records,
)
from replay_cli.failures import exception_line, failed_result
from replay_cli.filters import IngestFilters, Rejection
from replay_cli.meter import peak_since, reset_peak
from replay_cli.quality import (
    REASON_LOBBY_UNVERIFIED,
    REASON_NO_CACHE_HANDLES,
    TRACKER_FIRST_BUILD,
    Assessment,
    Sc2readerNotes,
    assess,
    is_incomplete,
    quality_block,
)
from replay_cli.readfile import read_replay_file
from replay_cli.result import (
    DEFAULT_DEPTH,
    DEPTHS,
    INCOMPLETE_REASONS,
    SCHEMA_VERSION,
    STATUS_FILTERED,
    STATUS_OK,
    STATUS_PARTIAL,
    Depth,
    ErrorInfo,
    Quality,
    Result,
    parser_version,
)
from replay_cli.tracker import StatsRecords, TrackerError, TrackerUnsupported, compile_fast_path, stats_records

# sc2reader load levels: 0 header, 1 details + map, 2 players + chat, 3 tracker, 4 game events.
LOAD_LEVEL_BY_DEPTH: dict[str, int] = {"summary": 2, "stats": 3, "full": 4}
# sc2reader's message when no reader matches the build (resources.py `_get_reader`).
UNSUPPORTED_BUILD_MARKER = "could not found for build"
# sc2reader's MPQError message when the container itself cannot be opened (resources.py).
MPQ_OPEN_FAILED = "Unable to construct the MPQArchive"
# tracker.py decodes the tracker events at `stats`; REPLAYCLI_TRACKER=sc2reader selects sc2reader's own
# decoder instead, the reference the direct path is tested against.
TRACKER_PATH_ENV = "REPLAYCLI_TRACKER"
TRACKER_PATH_SC2READER = "sc2reader"
# The engine that only sorts an in-game lobby's players from its observers (see _load).
LOBBY_CHECK = "lobby"
TRACKER_LOAD_LEVEL = 3
# Failures a shallower depth cannot repair; a bomb must not get a second go either.
FINAL_ERROR_KINDS = frozenset({"memory", "invalid_replay", "unsupported_build"})


class _InvalidReplay(Exception):
    """sc2reader said OK, but the archive holds no game (testError2.SC2Replay: header only)."""


# sc2reader's log records are its only report of what it did not know (unknown units, attributes):
# they are counted here per parse (quality.py), never printed; thousands per file on arcade maps.
_NOTES = Sc2readerNotes()


def _sc2reader() -> Any:
    """Import sc2reader on first use, with its log records routed to the per-parse counter only."""
    import sc2reader

    logger = logging.getLogger("sc2reader")
    # Configured once per process, not per parse: changing a level clears every logger's cache.
    if logger.level != logging.INFO or logger.propagate or _NOTES not in logger.handlers:
        logger.setLevel(logging.INFO)
        logger.propagate = False
        if _NOTES not in logger.handlers:
            logger.addHandler(_NOTES)
    return sc2reader


@functools.cache
def _engine(depth: str) -> Any:
    """Return the sc2reader game engine for a depth (or LOBBY_CHECK), built once per process."""
    if depth == "summary":
        return None  # no events at level 2: the engine would have nothing to do
    sc2reader = _sc2reader()
    from sc2reader.engine import GameEngine
    from sc2reader.engine.plugins import APMTracker, ContextLoader, GameHeartNormalizer

    engine = GameEngine()
    engine.register_plugin(GameHeartNormalizer())
    if depth == LOBBY_CHECK:
        return engine
    engine.register_plugin(ContextLoader())  # fills replay.objects: units, deaths, killers
    if depth == "full":
        engine.register_plugin(APMTracker())  # reads the unit context ContextLoader builds
    del sc2reader
    return engine


def _type_name(exc: BaseException) -> str:
    """Return the exception's class name; module-qualified when bare (struct.error, zlib.error)."""
    name = type(exc).__name__
    return f"{type(exc).__module__}.{name}" if name == "error" else name


def _classify(exc: BaseException, depth: str) -> ErrorInfo:
    """Turn an exception raised while parsing at `depth` into a stable error kind and stage."""
    stage = depth
    cause = exc.args[1] if len(exc.args) == 2 and isinstance(exc.args[1], BaseException) else exc.__cause__
    if isinstance(exc, _InvalidReplay) and depth == "summary":
        stage = "validate"
    elif type(exc).__name__ == "MPQError" and str(exc.args[0] if exc.args else "").startswith(MPQ_OPEN_FAILED):
        stage = "archive"  # the MPQ container itself is broken: no depth can read it
    if isinstance(exc, MemoryError) or isinstance(cause, MemoryError):
        kind = "memory"  # mpyq wraps a bomb's MemoryError in MPQError: the cause decides
    elif isinstance(exc, _InvalidReplay):
        # At a deeper depth this is sc2reader losing the players (resumed games turn them into
        # observers at level 3): a failure of that stage, not proof that there is no game.
        kind = "invalid_replay" if depth == "summary" else "parse_error"
    elif isinstance(exc, ValueError) and UNSUPPORTED_BUILD_MARKER in str(exc):
        kind = "unsupported_build"
    else:
        kind = "parse_error"
    error_type = "InvalidReplay" if isinstance(exc, _InvalidReplay) else _type_name(exc)
    return {"kind": kind, "type": error_type, "message": exception_line(exc), "stage": stage, "release": None}


def current_parser_version() -> str:
    """The parser versions as the files table records them: "replaycli/sc2reader"."""
    return parser_version(_parser_versions())


def _parser_versions() -> dict[str, str]:
    version = getattr(_sc2reader(), "__version__", "unknown")
    return {"replaycli": __version__, "sc2reader": str(version)}


@dataclass(frozen=True)
class _StandInHandle:
    """Stands in for a depot handle in a replay that names none: no region, and no hash but a mod's."""

    hash: str | None
    server: str = ""


# sc2reader tells the expansion from the standard mods a replay depends on. A replay that names no
# mods at all (SC2 API and bot games) and comes from 3.0 (build 34784) or later can only be LotV.
LOTV_FIRST_BUILD = 34784
LOTV_MOD_HASH = hashlib.sha256(b"Standard Data: Void.SC2Mod").hexdigest()


def _stand_in_handles(build: int) -> list[_StandInHandle]:
    """The mod handle the build implies (if any), then a map handle without a hash."""
    mods = [_StandInHandle(LOTV_MOD_HASH)] if build >= LOTV_FIRST_BUILD else []
    return [*mods, _StandInHandle(None)]


@functools.cache
def _tolerant_replay_class() -> Any:
    """sc2reader's Replay, able to read replays that name no map or mods (SC2 API and bot games).

    sc2reader indexes the first cache handle unguarded, so such a replay fails with IndexError.
    This subclass gives it stand-in handles (no region, no map hash, the expansion its build
    implies) and says so in `recovered`. It changes nothing global: other replays parsed in the
    same worker see sc2reader as it is.
    """
    base = _sc2reader().resources.Replay

    class TolerantReplay(base):  # type: ignore[misc, valid-type]
        recovered: list[str]

        def load_details(self) -> None:
            self.recovered = []
            for name in ("replay.details", "replay.details.backup"):
                details = self.raw_data.get(name)
                if details is not None and not details.get("cache_handles"):
                    details["cache_handles"] = _stand_in_handles(self.build or 0)
                    self.recovered = [REASON_NO_CACHE_HANDLES]
            super().load_details()

        def register_default_readers(self) -> None:
            """Register sc2reader's default readers, built once per process (_default_readers)."""
            for name, entries in _default_readers().items():
                self.registered_readers[name][:0] = entries

    # sc2reader names each instance's logger after its class's module: keep it under "sc2reader",
    # where its messages are counted (and never printed) like those of the class it extends.
    TolerantReplay.__module__ = base.__module__
    return TolerantReplay


@functools.cache
def _default_readers() -> dict[str, list[tuple[Any, Any]]]:
    """sc2reader's default (filter, reader) registrations by member name, built once per process.

    sc2reader builds every reader, one for each game-events protocol among them, for each replay
    it opens: about a sixth of a summary load. Its readers keep no state between calls, so one
    set serves every replay, registered in the same order with the same filters.
    """
    base = _sc2reader().resources.Replay
    recorder = types.SimpleNamespace(registered_readers=defaultdict(list))
    recorder.register_reader = functools.partial(base.register_reader, recorder)
    base.register_default_readers(recorder)
    return dict(recorder.registered_readers)


def preload(depth: str) -> None:
    """Import sc2reader and build what parsing at `depth` needs, so that forked children inherit it."""
    _tolerant_replay_class()
    _default_readers()
    if depth == "stats":
        compile_fast_path()
    _engine(depth)
    if depth == "summary":
        _engine(LOBBY_CHECK)


def _read(data: bytes, level: int, engine: Any) -> Any:
    """Load the replay at an sc2reader level; its stray prints never reach our stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        replay = _tolerant_replay_class()(io.BytesIO(data), load_level=level, engine=engine, debug=False)
    if not replay.players or not replay.frames:
        raise _InvalidReplay(f"sc2reader found {len(replay.players)} players and {replay.frames} game loops: not a game")
    return replay


def _may_be_in_game_lobby(replay: Any) -> bool:
    """Could this be a GameHeart-style game, whose lobby lists the casters and observers as players?

    Such games predate LotV, have tracker events, and their lobby's teams disagree with the game
    type the lobby was set to (7 "players" on one team of a 1v1).
    """
    return replay.expansion != "LotV" and (replay.build or 0) >= TRACKER_FIRST_BUILD and (
        replay.real_type != replay.game_type)


@contextlib.contextmanager
def _sc2reader_notes() -> Iterator[Counter[str]]:
    """Count what sc2reader logs while it decodes (unknown units, attributes...), instead of discarding it."""
    _sc2reader()
    counts: Counter[str] = Counter()
    _NOTES.counts = counts
    try:
        yield counts
    finally:
        _NOTES.counts = Counter()  # records outside a parse belong to no file


def _direct_stats_enabled() -> bool:
    return os.environ.get(TRACKER_PATH_ENV, "").strip().lower() != TRACKER_PATH_SC2READER


def _load_direct_stats(data: bytes) -> tuple[Any, Counter[str], StatsRecords] | None:
    """Load at sc2reader level 2 and decode the tracker events with tracker.py; None when it declines.

    tracker.py builds the same records as sc2reader's level 3 and ContextLoader for about half the
    CPU; it declines (TrackerError, TrackerUnsupported) whatever it does not reproduce exactly, such
    as GameHeart games or a damaged member, and the caller then takes sc2reader's path.
    """
    with _sc2reader_notes() as notes:
        replay = _read(data, LOAD_LEVEL_BY_DEPTH["summary"], None)
    try:
        records = direct_stats(replay)
    except (TrackerError, TrackerUnsupported):
        return None
    return replay, notes, records


def direct_stats(replay: Any) -> StatsRecords:
    """tracker.py's records for a replay sc2reader loaded at level 2; raises TrackerError or TrackerUnsupported.

    The member is read as sc2reader reads it at level 3 (decompression forced, then a plain read).
    """
    raw = _sc2reader().utils.extract_data_file("replay.tracker.events", replay.archive) or b""
    return stats_records(raw, build=replay.build, expansion=replay.expansion, player_pids=set(replay.player),
                         observer_pids={o.pid for o in replay.observers}, per_second=loops_per_real_second(replay))


def _load(data: bytes, depth: str) -> tuple[Any, list[str], Counter[str]]:
    """Load the replay at a depth; return it, the reasons its core fields may be incomplete, and
    what sc2reader met but did not know.

    sc2reader tells an in-game lobby's real players from its observers only from the first tracker
    events, which `summary` does not read. For the few replays that may be such games, summary
    reads them too, so players, observers, game type and winner are the same at every depth.
    """
    with _sc2reader_notes() as notes:
        replay = _read(data, LOAD_LEVEL_BY_DEPTH[depth], _engine(depth))
    reasons = list(replay.recovered)
    if depth != "summary" or not _may_be_in_game_lobby(replay):
        return replay, reasons, notes
    try:
        with _sc2reader_notes() as notes:
            return _read(data, TRACKER_LOAD_LEVEL, _engine(LOBBY_CHECK)), reasons, notes
    except Exception:  # worker boundary: the unchecked summary is still a summary, flagged as such
        return replay, [*reasons, REASON_LOBBY_UNVERIFIED], notes


def _header_release(data: bytes) -> str | None:
    """Return the release in the replay header (sc2reader load level 0), or None if unreadable.

    Failures are grouped by build in summaries: "40 files from 5.0.16 fail" says "wait for an
    sc2reader release" where a bare count does not.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            header = _sc2reader().resources.Replay(io.BytesIO(data), load_level=0, engine=None, debug=False)
        return str(header.release_string)
    except Exception:  # worker boundary: a header we cannot read just leaves the build unknown
        return None


def _extract(replay: Any, sha256: str, depth: str,
             direct: StatsRecords | None = None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Extract every row the depth provides; also whether the game metadata could be read, and the
    source values that cleaning rules read as unknown. `direct`: the stats records tracker.py decoded."""
    meta, metadata_state = read_gamemetadata(replay)
    players = player_rows(replay, meta)
    replay_fields = replay_row(replay, sha256, meta, depth)
    rows: dict[str, Any] = {
        "replay": replay_fields,
        "players": players,
        "chat": chat_rows(replay),
        "build_order": [],
        "player_stats": [],
    }
    sentinels = cleaned_values(replay, dict(replay_fields), players, meta)
    if depth == "summary":
        return rows, metadata_state, sentinels
    per_second = loops_per_real_second(replay)
    if direct is not None:
        units, upgrades, rows["player_stats"] = direct.units, direct.upgrades, direct.player_stats
    else:
        units, upgrades, rows["player_stats"] = unit_records(replay), upgrade_records(replay), player_stats_rows(replay)
    rows["build_order"] = build_order_rows(units, upgrades, per_second)
    apply_benchmarks(players, rows["player_stats"], units, replay.frames, per_second)
    if depth == "full":
        _apply_full(replay, players, per_second)
    return rows, metadata_state, sentinels


def _apply_full(replay: Any, players: list[Any], per_second: float) -> None:
    """Add sc2reader's computed APM and the real seconds each player stayed in the game."""
    left_at = {
        event.player.pid: event.frame
        for event in replay.game_events
        if event.name == "PlayerLeaveEvent" and getattr(event, "player", None) is not None
    }
    by_pid = {p.pid: p for p in replay.players}
    for row in players:
        entity = by_pid.get(row["pid"]) if not row["is_observer"] else None
        if entity is None:
            continue
        apm = getattr(entity, "avg_apm", None)
        row["apm_computed"] = round(float(apm), 1) if apm is not None else None
        row["seconds_played"] = round(left_at.get(entity.pid, replay.frames) / per_second, 3)


@dataclass
class _Attempts:
    """What parsing at the requested depth, then shallower ones, produced."""

    rows: dict[str, Any] | None = None
    reached: str | None = None
    assessment: Assessment = field(default_factory=Assessment)  # of the rows that were reached
    stats_path: str = "sc2reader"  # who decoded the tracker events: tracker.py or sc2reader
    error: ErrorInfo | None = None  # the failure of the requested depth, or of every depth


def _parse_deepest(data: bytes, sha256: str, depth: str) -> _Attempts:
    """Parse at `depth`, falling back a depth at a time; deepest first, so one load in the common case."""
    attempts = _Attempts()
    for attempt in reversed(DEPTHS[: DEPTHS.index(depth) + 1]):
        try:
            loaded = _load_direct_stats(data) if attempt == "stats" and _direct_stats_enabled() else None
            if loaded is not None:
                replay, notes, direct = loaded
                load_reasons: list[str] = list(replay.recovered)
            else:
                (replay, load_reasons, notes), direct = _load(data, attempt), None
            rows, metadata_state, sentinels = _extract(replay, sha256, attempt, direct)
            tracker_events = direct.event_count if direct is not None else len(replay.tracker_events)
            assessment = assess(replay, rows, attempt, metadata_state, load_reasons, notes, sentinels,
                                tracker_events)
        except Exception as exc:  # worker boundary: one bad replay must never end a batch
            error = _classify(exc, attempt)
            if error["kind"] in FINAL_ERROR_KINDS or error["stage"] in ("archive", "validate"):
                attempts.error = error
                return attempts
            attempts.error = attempts.error or error
            continue
        attempts.rows, attempts.reached, attempts.assessment = rows, attempt, assessment
        attempts.stats_path = "replaycli" if direct is not None else "sc2reader"
        return attempts
    return attempts


def _incomplete_error(quality: Quality, stage: str, release: str | None) -> ErrorInfo:
    missing = [reason for reason in quality["reasons"] if reason in INCOMPLETE_REASONS]
    return {"kind": "incomplete", "type": "Incomplete", "message": "incomplete: " + ", ".join(missing),
            "stage": stage, "release": release}


def parse_replay(data: bytes, depth: Depth | str = DEFAULT_DEPTH, *, source: str | None = None,
                 filters: IngestFilters | None = None) -> Result:
    """Parse replay bytes to `depth`; never raises for a bad replay.

    When a deeper stage fails the deepest depth that worked is returned with status "partial"
    and the failing stage in `error`; only a replay with no usable summary is "failed". A result
    whose content is incomplete (see quality.py) or had to be bounded (bounds.py) is "partial" too,
    with the reasons in `quality`. A replay that `filters` leave out comes back with status
    "filtered" and the rule in `error`, decided on its header or summary before any deeper parse.
    """
    if depth not in DEPTHS:
        raise ValueError(f"unknown depth {depth!r}; choose one of {', '.join(DEPTHS)}")
    if filters is not None and filters.active:
        return _parse_filtered(data, depth, source, filters)
    return _parse(data, depth, source)


def _parse(data: bytes, depth: str, source: str | None) -> Result:
    """Parse replay bytes to a valid `depth` (parse_replay without filters)."""
    wall_start, cpu_start, peak_reset = time.perf_counter(), time.process_time(), reset_peak()
    sha256 = hashlib.sha256(data).hexdigest()
    attempts = _parse_deepest(data, sha256, depth)
    elapsed = time.perf_counter() - wall_start
    if attempts.rows is None:
        error = attempts.error
        assert error is not None
        result = failed_result(
            source, error["kind"], error["type"], error["message"], error["stage"], depth=depth, sha256=sha256,
            size=len(data), seconds=elapsed, release=None if error["kind"] == "memory" else _header_release(data),
        )
        result["cpu_seconds"] = round(time.process_time() - cpu_start, 4)
        result["peak_rss_bytes"], result["peak_rss_scope"] = peak_since(peak_reset)
        result["parser"] = _parser_versions()
        return result
    rows, error = attempts.rows, attempts.error
    quality = quality_block(attempts.assessment, fit_result_rows(rows))
    release = rows["replay"]["release"]
    peak_rss_bytes, peak_rss_scope = peak_since(peak_reset)
    if error is not None:
        error["release"] = release
    elif is_incomplete(quality):
        error = _incomplete_error(quality, attempts.reached or depth, release)
    return {
        "schema_version": SCHEMA_VERSION,
        "status": STATUS_OK if error is None else STATUS_PARTIAL,
        "sha256": sha256,
        "source": source,
        "size": len(data),
        "depth_requested": depth,
        "depth_reached": attempts.reached,
        "parse_seconds": round(elapsed, 4),
        "cpu_seconds": round(time.process_time() - cpu_start, 4),
        "peak_rss_bytes": peak_rss_bytes,
        "peak_rss_scope": peak_rss_scope,
        "parser": {**_parser_versions(), "tracker_events": attempts.stats_path} if attempts.reached != "summary"
        else _parser_versions(),
        "error": error,
        "quality": quality,
        **rows,  # type: ignore[typeddict-item]
    }


def parse_file(path: str, depth: Depth | str = DEFAULT_DEPTH, max_bytes: int = DEFAULT_MAX_BYTES, *,
               filters: IngestFilters | None = None) -> Result:
    """Read and parse one replay file; the function worker processes run. Never raises."""
    started = time.perf_counter()
    data = read_replay_file(path, max_bytes)
    if isinstance(data, dict):
        data["depth_requested"] = depth
        data["parse_seconds"] = round(time.perf_counter() - started, 4)
        return data
    return parse_replay(data, depth, source=path, filters=filters)


def _parse_filtered(data: bytes, depth: str, source: str | None, filters: IngestFilters) -> Result:
    """Parse what the filters keep; decide them on the header, then the summary, before any deeper parse.

    At summary depth the parse itself is the summary, so it is checked afterwards at no extra cost.
    A replay whose header or summary cannot be read is parsed as usual, and fails as usual.
    """
    wall_start, cpu_start, peak_reset = time.perf_counter(), time.process_time(), reset_peak()
    rejection, stage = filters.check_header(*_header_build_and_loops(data)), "header"
    if rejection is None and filters.needs_summary and depth != "summary":
        rejection, stage = _summary_rejection(data, filters), "summary"
    if rejection is None:
        result = _parse(data, depth, source)
        if depth != "summary" or result["replay"] is None:
            return result
        rejection, stage = filters.check_rows(result["replay"], result["players"]), "summary"
        if rejection is None:
            return result
    result = failed_result(source, "filtered", rejection.rule, rejection.detail, stage, depth=depth,
                           sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                           seconds=time.perf_counter() - wall_start)
    result["status"] = STATUS_FILTERED
    result["cpu_seconds"] = round(time.process_time() - cpu_start, 4)
    result["peak_rss_bytes"], result["peak_rss_scope"] = peak_since(peak_reset)
    result["parser"] = _parser_versions()
    return result


def _header_build_and_loops(data: bytes) -> tuple[int | None, int | None]:
    """Read the build and game loops from the replay header alone (sc2reader load level 0's data).

    Read straight from the MPQ user-data header: constructing sc2reader's Replay even at level 0
    builds every event reader, which costs more than the decoding itself.
    """
    try:
        import mpyq
        from sc2reader.decoders import BitPackedDecoder

        archive = mpyq.MPQArchive(io.BytesIO(data), listfile=False)
        header = BitPackedDecoder(archive.header["user_data_header"]["content"]).read_struct()
        return int(list(header[1].values())[4]), int(header[3])
    except Exception:  # worker boundary: an unreadable header leaves the decision to the summary
        return None, None


def _summary_rejection(data: bytes, filters: IngestFilters) -> Rejection | None:
    """Decide the filters on the summary depth's rows; None (keep) when the summary cannot be read."""
    try:
        replay, _reasons, _notes = _load(data, "summary")
        meta, _state = read_gamemetadata(replay)
        players = player_rows(replay, meta)
        row = replay_row(replay, "", meta, "summary")
    except Exception:  # worker boundary: the full parse records why this replay cannot be read
        return None
    return filters.check_rows(row, players)
