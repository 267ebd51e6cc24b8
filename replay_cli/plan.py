"""Plan an ingest: decide, for each candidate path, whether to skip it, fail it or parse it.

Planning stats files and reads the stored `files` rows, and changes nothing: every decision comes
back as a value (a PlanChunk), which the ingest loop counts, shows and writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from replay_cli.failures import failed_result, not_regular_result, unreadable_result
from replay_cli.packs import FLUSH, Member, PackWalk, ReadMember, is_pack_name
from replay_cli.paths import open_path
from replay_cli.result import DEPTHS, STATUS_FILTERED, Result
from replay_cli.store import LOOKUP_CHUNK, FileRecord, FileStat, PackRecord

STATUSES_RETRIED = ("failed", "partial")  # re-parsed only with --retry-failed

Lookup = Callable[[Sequence[str]], Mapping[str, FileRecord]]  # Store.lookup_files
PackLookup = Callable[[Sequence[str]], Mapping[str, PackRecord]]  # Store.lookup_packs


@dataclass(frozen=True, slots=True)
class PlanRules:
    """What decides whether a stored file is parsed again."""

    depth: str
    max_bytes: int
    force: bool = False
    retry_failed: bool = False
    # --reparse-degraded: the running parser versions; a degraded file parsed by others is parsed again.
    reparse_degraded_for: str | None = None
    filter_key: str | None = None  # IngestFilters.key(): a file filtered under other filters is decided again
    pack_password: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class PlanChunk:
    """The decisions for one chunk of candidate paths (or of one pack's members)."""

    discovered: int
    skipped: int  # unchanged and complete at the requested depth: not read at all
    decided: tuple[tuple[FileStat, Result], ...]  # failures known from stat() alone, without a worker
    to_parse: tuple[FileStat, ...]
    # Pack members to parse, by path: read each (in to_parse order) before asking for the next chunk,
    # because the pack closes then.
    readers: Mapping[str, ReadMember] = field(default_factory=dict)
    pack_done: PackRecord | None = None  # a pack walked to its end: record it once the run has finished


def plan_paths(paths: Iterable[str], lookup: Lookup, rules: PlanRules,
               pack_lookup: PackLookup | None = None) -> Iterator[PlanChunk]:
    """Yield one PlanChunk per LOOKUP_CHUNK paths, in input order; packs are planned member by member.

    Without pack_lookup every pack is opened; with it an unchanged pack is skipped whole. Raises
    StoreError from the lookups.
    """
    loose: list[str] = []
    for path in paths:
        if is_pack_name(path):
            if loose:
                yield plan_chunk(loose, lookup(loose), rules)
                loose = []
            yield from plan_pack(path, lookup, rules, pack_lookup)
            continue
        loose.append(path)
        if len(loose) == LOOKUP_CHUNK:
            yield plan_chunk(loose, lookup(loose), rules)
            loose = []
    if loose:
        yield plan_chunk(loose, lookup(loose), rules)


def plan_chunk(paths: Sequence[str], records: Mapping[str, FileRecord], rules: PlanRules) -> PlanChunk:
    """Decide each path of a chunk against its stored record."""
    skipped = 0
    decided: list[tuple[FileStat, Result]] = []
    to_parse: list[FileStat] = []
    for path in paths:
        file_stat, failure = _stat(path)
        verdict = _decide(file_stat, failure, records.get(path), rules)
        if verdict is None:
            skipped += 1
        elif isinstance(verdict, FileStat):
            to_parse.append(verdict)
        else:
            decided.append((file_stat, verdict))
    return PlanChunk(len(paths), skipped, tuple(decided), tuple(to_parse))


def _decide(file_stat: FileStat, failure: Result | None, record: FileRecord | None,
            rules: PlanRules) -> FileStat | Result | None:
    """Skip (None), parse (the FileStat itself) or fail (a Result) one candidate."""
    if failure is None and _unchanged_and_done(record, file_stat, rules):
        return None
    if failure is None and file_stat.size > rules.max_bytes:
        failure = _too_large(file_stat.path, file_stat.size, rules)
    if failure is not None:
        failure["depth_requested"] = rules.depth
    return file_stat if failure is None else failure


def plan_pack(path: str, lookup: Lookup, rules: PlanRules, pack_lookup: PackLookup | None) -> Iterator[PlanChunk]:
    """Plan one pack: skip it whole when unchanged, else plan its members a chunk at a time.

    Chunks end where a pack inside it closes, so every member is read while its pack is open.
    """
    pack_stat, failure = _stat(path)
    if failure is not None:
        yield PlanChunk(1, 0, ((pack_stat, failure),), ())
        return
    record = pack_lookup([path]).get(path) if pack_lookup is not None else None
    if record is not None and _pack_unchanged(record, pack_stat, rules):
        yield PlanChunk(record.members, record.members, (), ())
        return
    walk = PackWalk(path, rules.pack_password, rules.max_bytes)
    batch: list[Member | tuple[FileStat, Result]] = []
    for item in walk.walk():
        if item is not FLUSH:
            batch.append(item)  # type: ignore[arg-type]
        if batch and (item is FLUSH or len(batch) == LOOKUP_CHUNK):
            yield _member_chunk(batch, lookup, rules)
            batch = []
    if batch:  # a damaged pack's failure, which comes after its pack closed
        yield _member_chunk(batch, lookup, rules)
    yield PlanChunk(0, 0, (), (), pack_done=PackRecord(path, pack_stat.size, pack_stat.mtime_ns, walk.members,
                                                       rules.depth, rules.filter_key, path not in walk.damaged))


def _member_chunk(batch: list[Member | tuple[FileStat, Result]], lookup: Lookup, rules: PlanRules) -> PlanChunk:
    """Decide a chunk of one pack's members against their stored records, as plan_chunk does for files."""
    members = [item for item in batch if isinstance(item, Member)]
    records = lookup([member.stat.path for member in members])
    skipped = 0
    decided = [item for item in batch if not isinstance(item, Member)]
    to_parse: list[FileStat] = []
    for member in members:
        # Unlike a file's stat() failure, a member's problem (encrypted...) stays as it was while the
        # member is unchanged: its stored failure stands, as a failed file's does, until --retry-failed.
        verdict = _decide(member.stat, None, records.get(member.stat.path), rules)
        if verdict is not None and member.problem is not None:
            verdict = _decide(member.stat, member.problem, None, rules)
        if verdict is None:
            skipped += 1
        elif isinstance(verdict, FileStat):
            to_parse.append(verdict)
        else:
            decided.append((member.stat, verdict))
    readers = {member.stat.path: member.read for member in members}
    return PlanChunk(len(batch), skipped, tuple(decided), tuple(to_parse), readers)


def _pack_unchanged(record: PackRecord, pack_stat: FileStat, rules: PlanRules) -> bool:
    """Whether a pack can be skipped without being opened: the same bytes, read as this run would."""
    if rules.force or rules.retry_failed or rules.reparse_degraded_for or record.filter_key != rules.filter_key:
        return False
    if (record.size, record.mtime_ns) != (pack_stat.size, pack_stat.mtime_ns):
        return False
    stored_depth = DEPTHS.index(record.depth) if record.depth in DEPTHS else -1
    return stored_depth >= DEPTHS.index(rules.depth)


def _stat(path: str) -> tuple[FileStat, Result | None]:
    """Stat a candidate; non-regular and vanished files fail here, without a worker."""
    try:
        info = os.stat(open_path(path))
    except OSError as exc:
        return FileStat(path, 0, 0), unreadable_result(path, exc)
    return FileStat(path, info.st_size, info.st_mtime_ns), not_regular_result(path, info)


def _too_large(path: str, size: int, rules: PlanRules) -> Result:
    """The failure for a file over the size cap: it is never read (the worker checks again on read)."""
    return failed_result(path, "too_large", "FileTooLarge", f"{size} bytes is over the {rules.max_bytes}-byte cap",
                         "read", size=size)


def _unchanged_and_done(record: FileRecord | None, file_stat: FileStat, rules: PlanRules) -> bool:
    """Decide whether a path can be skipped without reading it."""
    if record is None or rules.force:
        return False
    if (record.size, record.mtime_ns, record.crc32) != (file_stat.size, file_stat.mtime_ns, file_stat.crc32):
        return False
    if rules.reparse_degraded_for and record.degraded and record.parser_version != rules.reparse_degraded_for:
        return False
    if record.status in STATUSES_RETRIED:
        return not rules.retry_failed
    if record.status == STATUS_FILTERED:
        return record.filter_key == rules.filter_key
    stored_depth = DEPTHS.index(record.depth) if record.depth in DEPTHS else -1
    return stored_depth >= DEPTHS.index(rules.depth)

