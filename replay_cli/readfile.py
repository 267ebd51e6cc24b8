"""Read one replay file safely: regular files only, never past a size cap, never blocking.

Used by the worker (parse_file) and by anything else that must turn a path into bytes without
trusting what the path points at.
"""

from __future__ import annotations

import os
import stat

from replay_cli.defaults import DEFAULT_MAX_BYTES
from replay_cli.failures import failed_result, not_regular_result, unreadable_result
from replay_cli.paths import open_path
from replay_cli.platforms import READ_FLAGS
from replay_cli.result import Result


def read_replay_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | Result:
    """Read a file safely: regular files only, never more than max_bytes, never blocking on a FIFO."""
    try:
        info = os.stat(open_path(path))
    except OSError as exc:
        return unreadable_result(path, exc)
    if (not_regular := not_regular_result(path, info)) is not None:
        return not_regular
    if info.st_size > max_bytes:
        return failed_result(path, "too_large", "FileTooLarge",
                             f"{info.st_size} bytes is over the {max_bytes}-byte cap", "read", size=info.st_size)
    try:
        fd = os.open(open_path(path), READ_FLAGS)  # a FIFO swapped in after stat() must not hang it
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return failed_result(path, "not_regular_file", "NotRegularFile",
                                     "not a regular file when opened", "read")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(max_bytes + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        return unreadable_result(path, exc)
    if len(data) > max_bytes:
        return failed_result(path, "too_large", "FileTooLarge", f"grew past the {max_bytes}-byte cap while read",
                             "read", size=len(data))
    return data
