"""Path rules for Windows, macOS and Linux, as pure functions of the path flavour.

Every rule takes the flavour (pathlib.PureWindowsPath or PurePosixPath) and defaults to this
machine's, so tests run the Windows rules on any machine. The rules:

- A stored path (files.path, the pack part of `PACK!/member`) is absolute and spelled the way the
  platform spells it: on Windows with backslashes, an upper-case drive letter and no `\\\\?\\`
  prefix, so a path stored on Windows reads back as Explorer shows it.
- Where file names are case-insensitive (Windows, and macOS by default), a named input takes the
  spelling its folder listing gives, so `c:\\replays` and `C:\\Replays` store one row per file and
  the next run's skip finds it.
- A Windows path too long for MAX_PATH is opened through its `\\\\?\\` form, which has no limit.
- A pack member's own path always uses `/`, whatever separator the archive was written with.
"""

from __future__ import annotations

import os
import sys
import unicodedata
from collections.abc import Callable, Iterable
from pathlib import PurePath, PurePosixPath, PureWindowsPath

Flavour = type[PurePath]
NATIVE: Flavour = PureWindowsPath if os.name == "nt" else PurePosixPath
# Windows and macOS (APFS, HFS+) treat names that differ only in case as one by default.
CASE_INSENSITIVE_NAMES = os.name == "nt" or sys.platform == "darwin"
LONG_PREFIX = "\\\\?\\"
LONG_UNC_PREFIX = LONG_PREFIX + "UNC\\"
UNC_START = "\\\\"
# MAX_PATH is 260 characters with the terminating NUL, and a folder must leave room for an 8.3
# name (248): past that, plain Win32 names fail unless the machine opted in to long paths.
WINDOWS_PATH_LIMIT = 248
MEMBER_SEPARATOR = "!/"

ListDir = Callable[[str], Iterable[str]]


def _windows(flavour: Flavour) -> bool:
    return issubclass(flavour, PureWindowsPath)


def stored_path(path: str, flavour: Flavour = NATIVE) -> str:
    """Spell an absolute path as files.path stores it (Windows: backslashes, C:, no \\\\?\\ prefix)."""
    if not _windows(flavour):
        return path
    if path.startswith(LONG_UNC_PREFIX):
        path = UNC_START + path[len(LONG_UNC_PREFIX):]
    elif path.startswith(LONG_PREFIX):
        path = path[len(LONG_PREFIX):]
    path = path.replace("/", "\\")
    if len(path) >= 2 and path[1] == ":" and path[0].isascii() and path[0].isalpha():
        path = path[0].upper() + path[1:]
    return path


def open_path(path: str, flavour: Flavour = NATIVE) -> str:
    """The name to stat, list or open a stored path by: a long Windows path gets its \\\\?\\ form."""
    if not _windows(flavour) or len(path) < WINDOWS_PATH_LIMIT or path.startswith(LONG_PREFIX):
        return path
    path = stored_path(path, flavour)  # \\?\ names are used verbatim: no `/` may be left in them
    if path.startswith(UNC_START):
        return LONG_UNC_PREFIX + path[len(UNC_START):]
    if PureWindowsPath(path).is_absolute():
        return LONG_PREFIX + path
    return path  # a relative name cannot take the prefix


def path_key(path: str, flavour: Flavour = NATIVE) -> str:
    """What two spellings of one stored path share: Windows compares names without case."""
    if not _windows(flavour):
        return path
    return _fold(stored_path(path, flavour))


def _fold(name: str) -> str:
    # NFC first: macOS hands out decomposed names, and people type composed ones.
    return unicodedata.normalize("NFC", name).casefold()


def on_disk_spelling(path: str, listdir: ListDir, flavour: Flavour = NATIVE) -> str:
    """Spell an existing absolute path the way its folders list it, for case-insensitive names.

    A component listed exactly as given stays; one that is not takes the spelling of the single
    listed name it matches without case (and Unicode form). Folders that cannot be listed keep
    the given spelling from there on.
    """
    pure = flavour(path)
    if not pure.anchor:
        return path
    current = str(pure.anchor)
    for index, part in enumerate(pure.parts[1:], start=1):
        try:
            names = list(listdir(open_path(current, flavour)))
        except OSError:
            return stored_path(str(flavour(current, *pure.parts[index:])), flavour)
        if part not in names:
            matches = [name for name in names if _fold(name) == _fold(part)]
            part = matches[0] if len(matches) == 1 else part
        current = str(flavour(current, part))
    return stored_path(current, flavour)


def input_path(raw: str, listdir: ListDir = os.listdir, flavour: Flavour = NATIVE,
               case_insensitive: bool | None = None) -> str:
    """Turn an absolute input path into the path stored for it (None: CASE_INSENSITIVE_NAMES decides)."""
    path = stored_path(raw, flavour)
    if case_insensitive is None:
        case_insensitive = CASE_INSENSITIVE_NAMES
    return on_disk_spelling(path, listdir, flavour) if case_insensitive else path


def member_name(pack: str, inner: str) -> str:
    """Name a pack member `PACK!/inner`, the member with `/` separators whatever the archive wrote.

    zipfile turns a member's backslashes into `/` on Windows only; doing it everywhere gives one
    pack the same member names on every platform.
    """
    return f"{pack}{MEMBER_SEPARATOR}{inner.replace(chr(92), '/')}"
