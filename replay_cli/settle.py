"""Decide when a replay that is being written has finished: it stopped growing and its archive is whole.

The game, a copy or a download writes a replay over time; parsing it early would record a healthy
game as a failure. A file is ready once its size and mtime stay the same for a settle delay AND
the MPQ archive inside is as long as its own header says. A file whose header never completes is
still released after ABANDONED_AFTER_SETTLES settle delays of standing still: nobody is writing it,
so it is what it is, and the parser records it.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from replay_cli.paths import open_path

USER_DATA_MAGIC = b"MPQ\x1b"  # SC2 replays open with an MPQ user-data block that points at the archive
ARCHIVE_MAGIC = b"MPQ\x1a"
USER_DATA_FIELDS = struct.Struct("<4sIII")  # magic, user data size, archive header offset, user data header size
ARCHIVE_FIELDS = struct.Struct("<4sII")  # magic, header size, archive size (from the archive header on)
ABANDONED_AFTER_SETTLES = 10


@dataclass(slots=True)
class _Pending:
    size: int
    mtime_ns: int
    since: float  # monotonic time the size and mtime were last seen to change


def archive_complete(path: str) -> bool | None:
    """Return whether the file holds its whole MPQ archive; None when it is no MPQ archive to judge."""
    try:
        with open(open_path(path), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(USER_DATA_FIELDS.size)
            offset = 0
            if head[:4] == USER_DATA_MAGIC:
                if len(head) < USER_DATA_FIELDS.size:
                    return False
                offset = USER_DATA_FIELDS.unpack(head)[2]
                handle.seek(offset)
                head = handle.read(ARCHIVE_FIELDS.size)
                if len(head) < ARCHIVE_FIELDS.size:
                    return False  # the archive header is not written yet
    except OSError:
        return None
    if len(head) < ARCHIVE_FIELDS.size or head[:4] != ARCHIVE_MAGIC:
        return None
    archive_size: int = ARCHIVE_FIELDS.unpack_from(head)[2]
    return size >= offset + archive_size


class Settler:
    """Track files that may still be growing; release each once it has settled.

    `saw(path)` is called for every event or rescan hit; `ready()` stats what is pending and returns
    the paths that settled, forgetting them. Memory is one small entry per file pending, never per event.
    """

    def __init__(self, settle_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settle_s, self.clock = settle_s, clock
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def saw(self, paths: Iterable[str]) -> None:
        """Start tracking paths (a path already pending keeps its clock, so repeated events are free)."""
        for path in paths:
            if path not in self._pending:
                self._pending[path] = _Pending(-1, -1, self.clock())

    def ready(self) -> list[str]:
        """Return the pending paths that settled, sorted; drop those that vanished or are not files."""
        now, done = self.clock(), []
        for path, entry in list(self._pending.items()):
            try:
                info = os.stat(open_path(path))
            except OSError:
                del self._pending[path]  # renamed away or deleted: its new name brings its own event
                continue
            if not stat.S_ISREG(info.st_mode):
                del self._pending[path]
                continue
            if (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns):
                entry.size, entry.mtime_ns, entry.since = info.st_size, info.st_mtime_ns, now
            if self._settled(path, entry, info.st_mtime_ns, now):
                del self._pending[path]
                done.append(path)
        return sorted(done)

    def _settled(self, path: str, entry: _Pending, mtime_ns: int, now: float) -> bool:
        """Still for the settle delay (or last written that long ago) and whole, or abandoned."""
        quiet_for = now - entry.since
        if quiet_for >= ABANDONED_AFTER_SETTLES * self.settle_s:
            return True
        # A file renamed or copied in with its timestamps kept was finished before it arrived.
        written_long_ago = time.time_ns() - mtime_ns >= self.settle_s * 1e9
        if quiet_for < self.settle_s and not written_long_ago:
            return False
        return archive_complete(path) is not False
