"""Write results to SQLite in batches: the buffer, the flush policy and the archive copy.

The main process is the only SQLite writer. Results are buffered and each flush is one
BEGIN IMMEDIATE transaction (Store.save_batch), so a kill -9 loses at most the unflushed results,
which a re-run parses again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from replay_cli.archive import archive_bytes, archive_file
from replay_cli.result import STATUS_FAILED, STATUS_FILTERED, Result
from replay_cli.rowpack import packed_rows
from replay_cli.store import BatchCounts, FileStat, Store

log = logging.getLogger("replay_cli.ingest")

FLUSH_EVERY_RESULTS = 100
FLUSH_EVERY_S = 1.0
# Arcade games can carry 17,000 build-order rows each: a row budget keeps the buffer, and so
# the main process's peak memory, flat whatever the replays hold.
FLUSH_EVERY_ROWS = 10_000


def child_rows(result: Result) -> int:
    """Count the rows a result adds besides its replay row, packed ones (rowpack.py) included."""
    plain = len(result["players"]) + len(result["chat"]) + len(result["build_order"]) + len(result["player_stats"])
    return plain + packed_rows(result)


class BatchWriter:
    """Buffer (file, result) pairs and commit them in batches of results, rows or seconds."""

    def __init__(self, store: Store, run_id: int, *, replace: bool = False, archive_dir: str | None = None,
                 on_stored: Callable[[BatchCounts], None] = lambda counts: None, filter_key: str | None = None) -> None:
        self.store, self.run_id, self.replace, self.archive_dir = store, run_id, replace, archive_dir
        self.on_stored, self.filter_key = on_stored, filter_key
        self.batch: list[tuple[FileStat, Result]] = []
        self.member_bytes: dict[str, bytes] = {}  # pack members' bytes, for the archive: no path leads to them
        self.rows = 0
        self.last_flush = time.monotonic()

    def add(self, file_stat: FileStat, result: Result, data: bytes | None = None) -> None:
        """Buffer one result (and a pack member's bytes, to archive); it is committed by a later flush."""
        self.batch.append((file_stat, result))
        if data is not None and self.archive_dir:
            self.member_bytes[file_stat.path] = data
        self.rows += child_rows(result)

    def due(self) -> bool:
        """Return whether the buffer is big or old enough to commit."""
        return (len(self.batch) >= FLUSH_EVERY_RESULTS or self.rows >= FLUSH_EVERY_ROWS
                or time.monotonic() - self.last_flush >= FLUSH_EVERY_S)

    def flush_if_due(self) -> None:
        if self.due():
            self.flush()

    def flush(self) -> None:
        """Commit the buffer in one transaction (archiving first). Raises StoreError."""
        self.rows = 0
        if self.batch:
            if self.archive_dir:
                _archive(self.batch, self.archive_dir, self.member_bytes)
            stored = self.store.save_batch(self.batch, self.run_id, replace=self.replace, filter_key=self.filter_key)
            self.batch.clear()
            self.member_bytes.clear()
            self.on_stored(stored)
        self.last_flush = time.monotonic()


def _archive(batch: list[tuple[FileStat, Result]], archive_dir: str, member_bytes: dict[str, bytes]) -> None:
    """Copy each parsed replay into the archive before its rows commit.

    Archiving first means a crash can leave an archived replay whose rows were never committed
    (the re-run parses it again and finds it archived), never a stored replay missing from the
    archive that an unchanged re-run would skip forever.
    """
    for file_stat, result in batch:
        if result["status"] in (STATUS_FAILED, STATUS_FILTERED) or not result["sha256"]:
            continue
        try:
            data = member_bytes.get(file_stat.path)
            if data is not None:
                archive_bytes(archive_dir, result["sha256"], data)
            else:
                archive_file(archive_dir, result["sha256"], file_stat.path)
        except (OSError, ValueError) as exc:
            log.warning("not archived: %s: %s", file_stat.path, exc)
