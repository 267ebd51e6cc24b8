"""A content-addressed replay archive shared by `ingest --archive` and the async service.

Layout: DIR/<first two hex digits>/<sha256>.SC2Replay. A file is written to a temporary name in
its final folder and hard-linked into place, so a reader never sees half a replay and an existing
copy is never written again (os.link refuses to replace).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

ARCHIVE_SUFFIX = ".SC2Replay"
FAN_OUT_CHARS = 2  # 256 folders: 10^7 replays stay at about 40k files per folder


def archive_path(root: str | Path, sha256: str) -> Path:
    """Return where the replay with this content hash lives in the archive."""
    return Path(root) / sha256[:FAN_OUT_CHARS] / f"{sha256}{ARCHIVE_SUFFIX}"


def archive_bytes(root: str | Path, sha256: str, data: bytes) -> Path:
    """Store replay bytes under their hash unless already there; return the archive path.

    Raises ValueError when the bytes do not hash to sha256 (the file changed after it was
    parsed), and OSError when the archive cannot be written.
    """
    target = archive_path(root, sha256)
    if target.exists():
        return target
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"content does not match {sha256}: the file changed after it was parsed")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())  # the link must never point at bytes still in flight
        try:
            os.link(temporary, target)
        except FileExistsError:
            pass  # another writer archived the same content first: identical bytes
    finally:
        os.unlink(temporary)
    return target


def archive_file(root: str | Path, sha256: str, source: str | Path) -> Path:
    """Store a replay file under its hash unless already there; return the archive path.

    Raises ValueError when the file no longer hashes to sha256, OSError when unreadable.
    """
    target = archive_path(root, sha256)
    if target.exists():
        return target
    return archive_bytes(root, sha256, Path(source).read_bytes())
