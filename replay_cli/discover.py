"""Turn command-line inputs (files, directories, "-" for a list on stdin) into a stream of replay paths."""

from __future__ import annotations

import functools
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from replay_cli.packs import is_pack_name
from replay_cli.paths import input_path, open_path, path_key

# Compared case-insensitively: the game writes .SC2Replay, but users and tools rename freely.
REPLAY_SUFFIX = ".sc2replay"
STDIN_MARKER = "-"
STDIN_CHUNK_BYTES = 64 * 1024  # NUL-separated lists are read in chunks, so a huge `find -print0` streams
NEWLINE_CHARS = b"\r\n"
NUL = b"\0"
LISTINGS_KEPT = 64  # folder listings one run keeps to spell named inputs as the disk does


@dataclass(frozen=True, slots=True)
class DiscoveryProblem:
    """An input that could not be used: a directory that could not be listed, a missing named path, ..."""

    path: str
    message: str  # one line, e.g. "permission denied" / "no such file or directory"


@dataclass(slots=True)
class _State:
    """Remember what one run has already produced, holding only what de-duplication needs."""

    visited_dirs: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino): stops symlink loops
    # Both hold paths.path_key()s, so two spellings of one path on Windows are one.
    walked_dirs: set[str] = field(default_factory=set)  # listed in full, so their replay names were yielded
    explicit_paths: set[str] = field(default_factory=set)  # named files only; walked files are never stored
    # Named inputs on a case-insensitive platform are spelled as their folders list them: a
    # `dir /s /b` list names thousands of files in a few folders, so each folder is listed once.
    listdir: Callable[[str], tuple[str, ...]] = field(
        default_factory=lambda: functools.lru_cache(maxsize=LISTINGS_KEPT)(lambda p: tuple(os.listdir(p))))


def iter_replay_paths(
    inputs: Sequence[str],
    *,
    stdin: BinaryIO | None = None,
    null_separated: bool = False,
    on_problem: Callable[[DiscoveryProblem], None] = lambda p: None,
) -> Iterator[str]:
    """Yield absolute paths of replay candidates, streaming, each at most once.

    Directories are walked (sorted, following symlinks, never looping) for *.SC2Replay and packs (.zip,
    .tar, .tar.gz, ...) in any case; a file named in `inputs` or on stdin is yielded whatever its name.
    `stdin=None` means `sys.stdin.buffer`. Problems go to
    `on_problem` and the walk continues; nothing is opened or raised for a bad file (the parser records those).
    """

    def read_stdin() -> Iterator[str]:
        stream = sys.stdin.buffer if stdin is None else stdin
        return _read_path_list(stream, null_separated=null_separated)

    return _iter_paths(inputs, read_stdin, on_problem)


def count_replay_paths(inputs: Sequence[str], *, stdin_paths: Iterable[str] | None = None) -> int | None:
    """Count the paths `iter_replay_paths` would yield now, or return None when the total is unknown.

    It walks the same way (one directory listing at a time, no path list), so a caller can run it in a thread
    beside the real run and use the result as a progress total; files changed in between make it approximate.
    Stdin can be read only once, so with "-" in `inputs` pass the already-read `stdin_paths`, or get None
    (an unknown total, e.g. an indeterminate progress bar); a pack among the paths gives None too.
    Problems are not reported here.
    """
    if STDIN_MARKER in inputs and stdin_paths is None:
        return None
    stdin_list = stdin_paths if stdin_paths is not None else ()
    total = 0
    for path in _iter_paths(inputs, lambda: iter(stdin_list), lambda p: None):
        if is_pack_name(path):
            return None  # a pack holds an unknown number of replays until it is opened
        total += 1
    return total


def _iter_paths(
    inputs: Sequence[str],
    read_stdin: Callable[[], Iterable[str]],
    on_problem: Callable[[DiscoveryProblem], None],
) -> Iterator[str]:
    """Expand each input in order, sharing one de-duplication state."""
    state = _State()
    for raw in inputs:
        for path in read_stdin() if raw == STDIN_MARKER else (raw,):
            yield from _expand_input(path, state, on_problem)


def _expand_input(raw: str, state: _State, on_problem: Callable[[DiscoveryProblem], None]) -> Iterator[str]:
    """Walk a named directory, or yield a named file unless this run already yielded that path."""
    if not raw:
        # abspath("") would silently mean the current directory.
        on_problem(DiscoveryProblem(raw, "empty path"))
        return
    path = input_path(os.path.abspath(raw), state.listdir)
    try:
        is_dir = stat.S_ISDIR(os.stat(open_path(path)).st_mode)
    except OSError as exc:
        if not os.path.lexists(open_path(path)):
            on_problem(DiscoveryProblem(path, _describe(exc)))
            return
        is_dir = False  # a dangling or looping symlink: yield it so the parser records it as unreadable
    if is_dir:
        yield from _walk(path, state, on_problem)
        return
    name_was_walked = path_key(os.path.dirname(path)) in state.walked_dirs and _is_replay_name(os.path.basename(path))
    if path_key(path) in state.explicit_paths or name_was_walked:
        return
    state.explicit_paths.add(path_key(path))
    yield path


def _walk(root: str, state: _State, on_problem: Callable[[DiscoveryProblem], None]) -> Iterator[str]:
    """Yield replay-named entries under `root` depth-first, each directory's files before its subdirectories."""
    pending = [root]  # a stack of directories still to list; only siblings along one branch wait here
    while pending:
        listing = _list_dir(pending.pop(), state, on_problem)
        if listing is None:
            continue
        files, subdirs = listing
        for path in files:
            if path_key(path) not in state.explicit_paths:
                yield path
        pending.extend(reversed(subdirs))  # reversed so the stack pops them in sorted order


def _list_dir(
    path: str, state: _State, on_problem: Callable[[DiscoveryProblem], None]
) -> tuple[list[str], list[str]] | None:
    """Return a directory's sorted replay-named entries and subdirectories, or None if seen or unreadable."""
    files: list[str] = []
    subdirs: list[str] = []
    try:
        info = os.stat(open_path(path))  # follows symlinks, so a link back to an ancestor has the ancestor's identity
        key = (info.st_dev, info.st_ino)
        if key in state.visited_dirs:
            return None
        state.visited_dirs.add(key)
        # Listed in full before yielding, so the order is sorted and no directory handle stays open while
        # the consumer works; only matching names and subdirectories are kept.
        # Listed by its long-path form where that differs, named by its stored form: entry.path would
        # carry the \\?\ prefix into files.path.
        with os.scandir(open_path(path)) as entries:
            for entry in entries:
                is_dir = _is_dir(entry)
                if is_dir:
                    subdirs.append(os.path.join(path, entry.name))
                # Non-directories (FIFOs, sockets, dangling links) and directories named *.SC2Replay are
                # yielded too, so the parser records them as not_regular_file / unreadable instead of losing them.
                if _is_replay_name(entry.name):
                    files.append(os.path.join(path, entry.name))
    except OSError as exc:
        on_problem(DiscoveryProblem(path, _describe(exc)))
        return None
    state.walked_dirs.add(path_key(path))
    files.sort()
    subdirs.sort()
    return files, subdirs


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Tell whether an entry is a directory to walk, following symlinks."""
    try:
        return entry.is_dir()  # uses d_type from the listing; stats only symlinks
    except OSError:
        return False  # e.g. a symlink loop (ELOOP): not walkable, yielded if named like a replay


def _is_replay_name(name: str) -> bool:
    """Tell whether a file name is a replay's or a pack's, by its extension in any letter case."""
    return name.lower().endswith(REPLAY_SUFFIX) or is_pack_name(name)


def _read_path_list(stream: BinaryIO, *, null_separated: bool) -> Iterator[str]:
    """Yield the non-empty paths listed in a binary stream, decoded so non-UTF-8 names survive."""
    if null_separated:
        tail = b""
        while chunk := stream.read(STDIN_CHUNK_BYTES):
            *complete, tail = (tail + chunk).split(NUL)
            yield from (os.fsdecode(item) for item in complete if item)
        if tail:
            yield os.fsdecode(tail)
        return
    for line in stream:
        item = line.rstrip(NEWLINE_CHARS)
        if item:
            yield os.fsdecode(item)


def _describe(exc: OSError) -> str:
    """Turn an OSError into a one-line lower-case message such as "permission denied"."""
    message = exc.strerror or str(exc) or type(exc).__name__
    return " ".join(message.split()).lower()
