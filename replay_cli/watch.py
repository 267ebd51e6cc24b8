"""`replaycli ingest --watch` as a library: keep a database current while replays keep arriving.

New and changed files are noticed two ways, because either alone misses some: filesystem events
(watchdog, imported only here and only when events are wanted) and a periodic rescan that plans
the folders against the database, as a normal ingest does. Each noticed file waits in the
settle.Settler until it is whole; the files that settled are then ingested together by
ingest.ingest_paths, the same plan -> backend -> writer run as `replaycli ingest`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from replay_cli.backend import ParseBackend
from replay_cli.discover import REPLAY_SUFFIX, iter_replay_paths
from replay_cli.errors import ReplayCliError
from replay_cli.ingest import IngestOptions, StopRequest, ingest_paths, plan_rules
from replay_cli.paths import MEMBER_SEPARATOR
from replay_cli.plan import plan_paths
from replay_cli.report import COUNT_KEYS, ProgressSink
from replay_cli.result import Result
from replay_cli.settle import Settler
from replay_cli.store import BatchCounts, FileRecord, Store

log = logging.getLogger("replay_cli.watch")

DEFAULT_SETTLE_S = 2.0
DEFAULT_RESCAN_S = 30.0
TICK_S = 0.2  # how often events are taken in and pending files looked at; a stop is seen within one tick
FILE_CHANGES = frozenset({"created", "modified", "moved", "closed"})  # watchdog event types
FOLDER_ARRIVALS = frozenset({"created", "moved"})
MISSING_WATCHDOG = "--watch needs watchdog for filesystem events: pip install 'replaycli[watch]' (or add --no-events)"


class WatchUnavailable(ReplayCliError):
    """Filesystem events were asked for, but watchdog is not installed."""


@dataclass(frozen=True, slots=True)
class WatchSettings:
    settle_s: float = DEFAULT_SETTLE_S  # a file must stand still this long (and be a whole archive)
    rescan_s: float = DEFAULT_RESCAN_S  # the folders are planned against the database this often
    events: bool = True  # False: rescans only (network or Wine folders that deliver no events)


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One file as it was committed: what `--json` prints and the live line shows."""

    path: str
    status: str  # the files row's status: ok, partial, duplicate or failed
    sha256: str | None
    map_name: str | None
    played_at: str | None
    duration_s: float | None
    game_type: str | None
    players: tuple[dict[str, Any], ...]  # name, team, race, result; observers left out
    error: dict[str, Any] | None  # kind, type, message

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "players": list(self.players)}


@dataclass
class WatchReport:
    """What a watch did until it stopped: counts summed over its runs, and the signal that stopped it."""

    counts: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(COUNT_KEYS, 0))
    runs: int = 0
    stopped_by: int | None = None


def stored_file(result: Result, record: FileRecord | None) -> StoredFile:
    """Describe one committed result, with the status its files row got (duplicate is known only there)."""
    replay, error = result["replay"], result["error"]
    players = tuple({"name": p["name"], "team": p["team"], "race": p["play_race"], "result": p["result"]}
                    for p in result["players"] if not p["is_observer"])
    return StoredFile(
        path=result["source"] or "", status=record.status if record else result["status"],
        sha256=result["sha256"], map_name=replay["map_name"] if replay else None,
        played_at=replay["played_at"] if replay else None, duration_s=replay["duration_s"] if replay else None,
        game_type=replay["game_type"] if replay else None, players=players,
        error={key: error[key] for key in ("kind", "type", "message")} if error else None)


class CommitSink:
    """A ProgressSink that also reports each file once its batch has committed.

    The ingest loop shows every result (finished) before the writer buffers it, and the writer
    reports each commit (stored) for exactly the results buffered since the last one; so the
    results held here when stored() comes are the ones that batch committed.
    """

    def __init__(self, inner: ProgressSink, lookup: Callable[[Sequence[str]], dict[str, FileRecord]],
                 on_commit: Callable[[StoredFile], None]) -> None:
        self.inner, self.lookup, self.on_commit = inner, lookup, on_commit
        self._buffer: list[Result] = []

    def discovered(self, total: int | None) -> None:
        self.inner.discovered(total)

    def skipped(self, count: int) -> None:
        self.inner.skipped(count)

    def finished(self, result: Result) -> None:
        self._buffer.append(result)
        self.inner.finished(result)

    def stored(self, counts: BatchCounts) -> None:
        batch, self._buffer = self._buffer, []
        records = self.lookup([result["source"] or "" for result in batch])
        for result in batch:
            self.on_commit(stored_file(result, records.get(result["source"] or "")))
        self.inner.stored(counts)

    def refresh(self) -> None:
        self.inner.refresh()


def watch_folders(
    store: Store,
    find_folders: Callable[[], Sequence[str]],
    options: IngestOptions,
    settings: WatchSettings,
    *,
    progress: ProgressSink,
    on_commit: Callable[[StoredFile], None],
    on_run: Callable[[dict[str, int]], None] = lambda counts: None,
    stop_requested: StopRequest,
    run_options: dict[str, Any] | None = None,
    backend: ParseBackend | None = None,
) -> WatchReport:
    """Ingest the folders, then every file that arrives or changes in them, until a stop is requested.

    find_folders() is asked again at each rescan, so a folder that appears later (a new account)
    is watched from then on. The first pass honours options.force and options.retry_failed; later
    ones never do, or every rescan would parse those files again. Raises WatchUnavailable (events
    wanted, no watchdog), StoreError and PoolUnrecoverable; all that was committed stays committed.
    """
    report = WatchReport()
    sink = CommitSink(progress, store.lookup_files, on_commit)
    settler = Settler(settings.settle_s)
    inbox = _Inbox(settings.events)
    next_rescan = 0.0
    try:
        while stop_requested() is None:
            if time.monotonic() >= next_rescan:
                folders = list(find_folders())
                inbox.watch(folders)
                settler.saw(_changed(store, folders, options))
                next_rescan = time.monotonic() + settings.rescan_s
            settler.saw(inbox.drain())
            ready = settler.ready()
            if not ready:
                time.sleep(TICK_S)
                continue
            progress.discovered(len(ready))
            tally = ingest_paths(store, ready, options, progress=sink, stop_requested=stop_requested,
                                 run_options={**(run_options or {}), "watch": True}, backend=backend)
            report.runs += 1
            for key in COUNT_KEYS:
                report.counts[key] += tally.counts[key]
            on_run(tally.count_dict())
            options = dataclasses.replace(options, force=False, retry_failed=False)
    finally:
        inbox.close()
    report.stopped_by = stop_requested()
    return report


def _changed(store: Store, folders: Sequence[str], options: IngestOptions) -> Iterator[str]:
    """Yield the paths under folders that a normal ingest would parse or fail now: new or changed files.

    A pack's members are planned under the pack's own path (PACK!/member), which no ingest can
    open by itself: a pack with anything new is yielded once, as the pack.
    """
    packs: set[str] = set()
    for chunk in plan_paths(iter_replay_paths(folders), store.lookup_files, plan_rules(options), store.lookup_packs):
        paths = [file_stat.path for file_stat in chunk.to_parse]
        paths += [file_stat.path for file_stat, _result in chunk.decided]
        for path in paths:
            pack, separator, _member = path.partition(MEMBER_SEPARATOR)
            if not separator:
                yield path
            elif pack not in packs:
                packs.add(pack)
                yield pack


class _Inbox:
    """Paths that filesystem events named since the last drain, collected on watchdog's thread.

    A set, so a file written in a thousand chunks costs one entry. Without events (or when the
    system refuses a watch) it stays empty and the rescans find everything.
    """

    def __init__(self, enabled: bool) -> None:
        self._lock = threading.Lock()
        self._paths: set[str] = set()
        self._watched: set[str] = set()
        self._observer: Any = None
        self._handler: Any = None
        if enabled:
            self._observer, self._handler = _start_observer(self)

    def add(self, path: str, is_directory: bool) -> None:
        # A folder moved in brings its files without an event of their own.
        found = list(iter_replay_paths([path])) if is_directory else [path]
        with self._lock:
            self._paths.update(found)

    def drain(self) -> list[str]:
        with self._lock:
            paths, self._paths = self._paths, set()
        return sorted(paths)

    def watch(self, folders: Sequence[str]) -> None:
        """Schedule the folders not watched yet; a refused watch leaves that folder to the rescans."""
        if self._observer is None:
            return
        for folder in folders:
            if folder in self._watched:
                continue
            self._watched.add(folder)
            try:
                self._observer.schedule(self._handler, folder, recursive=True)
            except OSError as exc:
                log.warning("no filesystem events for %s (%s); relying on rescans", folder, exc)

    def close(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=1.0)


def _start_observer(inbox: _Inbox) -> tuple[Any, Any]:
    """Start a watchdog observer and make the handler that feeds inbox; raise WatchUnavailable without watchdog."""
    try:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError as exc:
        raise WatchUnavailable(MISSING_WATCHDOG) from exc

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: FileSystemEvent) -> None:
            # A rename into the folder names the file in dest_path; src_path is the old name.
            path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
            if event.is_directory:
                # Only a folder that arrives is walked: "modified" on a folder comes with every file written in it.
                if event.event_type in FOLDER_ARRIVALS:
                    inbox.add(path, True)
            elif event.event_type in FILE_CHANGES and path.lower().endswith(REPLAY_SUFFIX):
                inbox.add(path, False)

    observer = Observer()
    observer.daemon = True  # never keeps the process alive after a stop
    observer.start()
    return observer, Handler()
