"""Plan an ingest: decide, for each candidate path, whether to skip it, fail it or parse it.

Planning stats files and reads the stored `files` rows, and changes nothing: every decision comes
back as a value (a PlanChunk), which the ingest loop counts, shows and writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from replay_cli.failures import failed_result, not_regular_result, unreadable_result
from replay_cli.result import DEPTHS, Result
from replay_cli.store import LOOKUP_CHUNK, FileRecord, FileStat

STATUSES_RETRIED = ("failed", "partial")  # re-parsed only with --retry-failed

Lookup = Callable[[Sequence[str]], Mapping[str, FileRecord]]  # Store.lookup_files


@dataclass(frozen=True, slots=True)
class PlanRules:
    """What decides whether a stored file is parsed again."""

    depth: str
    max_bytes: int
    force: bool = False
    retry_failed: bool = False


@dataclass(frozen=True, slots=True)
class PlanChunk:
    """The decisions for one chunk of candidate paths."""

    discovered: int
    skipped: int  # unchanged and complete at the requested depth: not read at all
    decided: tuple[tuple[FileStat, Result], ...]  # failures known from stat() alone, without a worker
    to_parse: tuple[FileStat, ...]


def plan_paths(paths: Iterable[str], lookup: Lookup, rules: PlanRules) -> Iterator[PlanChunk]:
    """Yield one PlanChunk per LOOKUP_CHUNK paths, in input order. Raises StoreError from lookup."""
    for chunk in _chunks(paths, LOOKUP_CHUNK):
        yield plan_chunk(chunk, lookup(chunk), rules)


def plan_chunk(paths: Sequence[str], records: Mapping[str, FileRecord], rules: PlanRules) -> PlanChunk:
    """Decide each path of a chunk against its stored record."""
    skipped = 0
    decided: list[tuple[FileStat, Result]] = []
    to_parse: list[FileStat] = []
    for path in paths:
        file_stat, failure = _stat(path)
        if failure is None and _unchanged_and_done(records.get(path), file_stat, rules):
            skipped += 1
            continue
        if failure is None and file_stat.size > rules.max_bytes:
            failure = _too_large(path, file_stat.size, rules)
        if failure is None:
            to_parse.append(file_stat)
        else:
            decided.append((file_stat, failure))
    return PlanChunk(len(paths), skipped, tuple(decided), tuple(to_parse))


def _stat(path: str) -> tuple[FileStat, Result | None]:
    """Stat a candidate; non-regular and vanished files fail here, without a worker."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return FileStat(path, 0, 0), unreadable_result(path, exc)
    return FileStat(path, info.st_size, info.st_mtime_ns), not_regular_result(path, info)


def _too_large(path: str, size: int, rules: PlanRules) -> Result:
    """The failure for a file over the size cap: it is never read (the worker checks again on read)."""
    result = failed_result(path, "too_large", "FileTooLarge", f"{size} bytes is over the {rules.max_bytes}-byte cap",
                           "read", size=size)
    result["depth_requested"] = rules.depth
    return result


def _unchanged_and_done(record: FileRecord | None, file_stat: FileStat, rules: PlanRules) -> bool:
    """Decide whether a path can be skipped without reading it."""
    if record is None or rules.force:
        return False
    if (record.size, record.mtime_ns) != (file_stat.size, file_stat.mtime_ns):
        return False
    if record.status in STATUSES_RETRIED:
        return not rules.retry_failed
    stored_depth = DEPTHS.index(record.depth) if record.depth in DEPTHS else -1
    return stored_depth >= DEPTHS.index(rules.depth)


def _chunks(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(path)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
