"""Read replay packs (zip and tar archives) in place: list their members and read each one, safely.

Nothing is ever extracted to disk, so a member named `../../x` cannot write anywhere: a member is
only ever read into memory, never past the size cap, and named `PACK!/inner/path` after the pack
that holds it. Packs inside packs are read from the outer member's stream, never copied whole.
This module reads archives and never parses a replay or touches the database.
"""

from __future__ import annotations

import contextlib
import functools
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from replay_cli.failures import exception_line, failed_result
from replay_cli.paths import member_name, open_path
from replay_cli.result import Result
from replay_cli.store import FileStat

PACK_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
ZIP_SUFFIX = ".zip"
REPLAY_SUFFIX = ".sc2replay"
# A pack inside a pack inside a pack is read; anything nested deeper is recorded, not opened, so
# a hostile archive cannot make the reader recurse without end.
MAX_NESTING = 3
ZIP_ENCRYPTED_FLAG = 0x1  # general-purpose bit 0: the member is encrypted
ZIP_AES_METHOD = 99  # the compression method WinZip's AES encryption writes
READ_CHUNK = 1 << 20
# What a damaged archive raises while it is listed or read.
ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)

ReadMember = Callable[[], "bytes | Result"]


class Flush:
    """Yielded by walk() before a pack is closed: read what was listed from it before going on."""


FLUSH = Flush()


@dataclass(frozen=True, slots=True)
class Member:
    """A replay member, listed but not read: what the archive declares, and how to read it."""

    stat: FileStat  # path is PACK!/inner; size as declared; mtime_ns; a zip member's crc32
    read: ReadMember  # valid until walk() yields the FLUSH that follows this member
    problem: Result | None = None  # decided from the listing alone (encrypted, not a regular file)


@dataclass
class PackWalk:
    """One walk over a pack and the packs inside it: what it found, counted as it goes."""

    path: str
    password: bytes | None
    max_bytes: int
    members: int = 0  # replay members and damage rows yielded: the files rows this pack accounts for
    damaged: list[str] = field(default_factory=list)

    def walk(self) -> Iterator[Member | tuple[FileStat, Result] | Flush]:
        """Yield the pack's replay members in archive order, a FLUSH before each pack closes, and a
        (FileStat, failure) for the part of a pack that could not be read."""
        yield from self._walk_pack(self.path, lambda: open(open_path(self.path), "rb"), 0)

    def _walk_pack(self, name: str, opener: Callable[[], IO[bytes]], level: int
                   ) -> Iterator[Member | tuple[FileStat, Result] | Flush]:
        error: BaseException | None = None
        try:
            with opener() as stream, _open_archive(name, stream) as archive:
                try:
                    yield from self._walk_entries(name, archive, level)
                except ARCHIVE_ERRORS as exc:  # damaged part-way: what was listed before still counts
                    error = exc
                yield FLUSH  # the members listed are read now, while their pack is still open
        except ARCHIVE_ERRORS as exc:
            error = exc
        if error is not None:
            self.members += 1
            self.damaged.append(name)
            yield FileStat(name, 0, 0), failed_result(name, "bad_pack", type(error).__name__,
                                                      exception_line(error), "read")

    def _walk_entries(self, name: str, archive: _Archive, level: int
                      ) -> Iterator[Member | tuple[FileStat, Result] | Flush]:
        for entry in archive.entries():
            inner = member_name(name, entry.name)
            if is_pack_name(entry.name) and entry.regular:
                if level + 1 >= MAX_NESTING:
                    self.members += 1
                    yield FileStat(inner, entry.size, entry.mtime_ns), failed_result(
                        inner, "bad_pack", "TooDeep", f"a pack nested more than {MAX_NESTING} deep", "read")
                    continue
                yield from self._walk_pack(inner, functools.partial(archive.open, entry, self.password), level + 1)
            elif entry.name.lower().endswith(REPLAY_SUFFIX):
                self.members += 1
                stat = FileStat(inner, entry.size, entry.mtime_ns, entry.crc32)
                yield Member(stat, functools.partial(self._read, archive, entry, inner), self._problem(entry, inner))

    def _problem(self, entry: _Entry, inner: str) -> Result | None:
        if not entry.regular:
            return failed_result(inner, "not_regular_file", "NotRegularFile", "not a regular file in the pack",
                                 "read")
        if entry.encrypted and self.password is None:
            return failed_result(inner, "encrypted", "EncryptedMember", "encrypted; give --pack-password", "read")
        if entry.aes:
            return failed_result(inner, "encrypted", "AESEncryptedMember",
                                 "AES-encrypted: only classic ZipCrypto members can be unlocked", "read")
        return None

    def _read(self, archive: _Archive, entry: _Entry, inner: str) -> bytes | Result:
        """Read one member, never more than max_bytes + 1 bytes whatever the archive declares."""
        try:
            with archive.open(entry, self.password) as stream:
                data = _read_capped(stream, self.max_bytes)
        except RuntimeError as exc:  # zipfile: encrypted and no password, or a wrong one
            return failed_result(inner, "encrypted", type(exc).__name__, exception_line(exc), "read")
        except ARCHIVE_ERRORS as exc:
            kind = "encrypted" if entry.encrypted else "bad_pack"  # a wrong password can pass the check byte
            return failed_result(inner, kind, type(exc).__name__, exception_line(exc), "read")
        if len(data) > self.max_bytes:
            return failed_result(inner, "too_large", "FileTooLarge",
                                 f"decompressed past the {self.max_bytes}-byte cap", "read", size=len(data))
        return data


def is_pack_name(name: str) -> bool:
    """Tell whether a file name is a pack's (zip or tar, compressed or not), in any letter case."""
    return name.lower().endswith(PACK_SUFFIXES)


def _read_capped(stream: IO[bytes], max_bytes: int) -> bytes:
    """Read at most max_bytes + 1 bytes: one more than allowed says the member is too large."""
    parts, left = [], max_bytes + 1
    while left > 0:
        part = stream.read(min(left, READ_CHUNK))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    size: int
    mtime_ns: int
    crc32: int | None
    regular: bool
    encrypted: bool
    aes: bool
    handle: Any  # the ZipInfo or TarInfo


class _Archive:
    """The few operations a walk needs, over zipfile or tarfile."""

    def entries(self) -> Iterator[_Entry]:
        raise NotImplementedError

    def open(self, entry: _Entry, password: bytes | None) -> IO[bytes]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _Zip(_Archive):
    def __init__(self, stream: IO[bytes]) -> None:
        self.zip = zipfile.ZipFile(stream)

    def entries(self) -> Iterator[_Entry]:
        # In the order the data lies, so a pack read from a stream (nested, compressed) only seeks forward.
        for info in sorted(self.zip.infolist(), key=lambda i: i.header_offset):
            if info.is_dir():
                continue
            encrypted = bool(info.flag_bits & ZIP_ENCRYPTED_FLAG)
            yield _Entry(info.filename, info.file_size, _zip_time_ns(info.date_time), info.CRC, True, encrypted,
                         info.compress_type == ZIP_AES_METHOD, info)

    def open(self, entry: _Entry, password: bytes | None) -> IO[bytes]:
        return self.zip.open(entry.handle, pwd=password)

    def close(self) -> None:
        self.zip.close()


class _Tar(_Archive):
    def __init__(self, stream: IO[bytes]) -> None:
        self.tar = tarfile.open(fileobj=stream, mode="r:*")

    def entries(self) -> Iterator[_Entry]:
        # The whole header list first: reading a member seeks to it, and a compressed stream that
        # seeks back to list the next header would decompress from the start every time.
        error: BaseException | None = None
        try:
            self.tar.getmembers()
        except ARCHIVE_ERRORS as exc:  # truncated: the members listed before the damage are still read
            error = exc
        for info in list(self.tar.members):  # type: ignore[attr-defined]  # what getmembers() fills, untyped
            if info.isdir():
                continue
            yield _Entry(info.name, info.size, int(info.mtime * 1_000_000_000), None, info.isreg(), False, False,
                         info)
        if error is not None:
            raise error

    def open(self, entry: _Entry, password: bytes | None) -> IO[bytes]:
        stream = self.tar.extractfile(entry.handle)
        if stream is None:
            raise tarfile.TarError(f"{entry.name} has no data")
        return stream

    def close(self) -> None:
        self.tar.close()


@contextlib.contextmanager
def _open_archive(name: str, stream: IO[bytes]) -> Iterator[_Archive]:
    archive: _Archive = _Zip(stream) if name.lower().endswith(ZIP_SUFFIX) else _Tar(stream)
    try:
        yield archive
    finally:
        archive.close()


def _zip_time_ns(date_time: tuple[int, int, int, int, int, int]) -> int:
    """A zip member's recorded time (no zone: read as UTC) in nanoseconds, or 0 when it is invalid."""
    try:
        return int(datetime(*date_time, tzinfo=UTC).timestamp()) * 1_000_000_000
    except ValueError:
        return 0
