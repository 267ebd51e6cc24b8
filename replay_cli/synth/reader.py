"""Read replays back: the MPQ container (any SC2 build) and the spans of versioned-format members.

The inverse of ``mpq.build_archive`` and the versioned encoders in ``bitpacked``, for tools that
take a replay apart and put it back together (the fuzzing mutator). It reads single-unit and
sectored members, zlib or bzip2, and the hash and block tables through the MPQ cipher; it does
not decode what the members mean, only where their values are.
"""

from __future__ import annotations

import bz2
import itertools
import struct
import zlib
from dataclasses import dataclass

from replay_cli.synth.bitpacked import TAG_ARRAY, TAG_BLOB, TAG_CHOICE, TAG_OPTIONAL, TAG_STRUCT, TAG_VINT
from replay_cli.synth.mpq import (
    ARCHIVE_HEADER_FORMAT,
    ARCHIVE_MAGIC,
    BLOCK_ENTRY_FORMAT,
    COMPRESSION_BZIP2,
    COMPRESSION_ZLIB,
    CRYPT_SEED2_INITIAL,
    CRYPT_TABLE,
    HASH_ENTRY_FORMAT,
    HASH_NAME_A,
    HASH_NAME_B,
    HASH_TABLE_OFFSET,
    LISTFILE_NAME,
    MPQ_BLOCK_TABLE_KEY,
    MPQ_FILE_COMPRESS,
    MPQ_FILE_SINGLE_UNIT,
    MPQ_HASH_TABLE_KEY,
    UINT32_MASK,
    USER_DATA_HEADER_FORMAT,
    USER_DATA_MAGIC,
    USER_DATA_SIZE,
    mpq_hash,
)

MPQ_FILE_ENCRYPTED = 0x00010000
MPQ_FILE_SECTOR_CRC = 0x04000000
COMPRESSION_NONE = 0x00
HASH_SLOT_EMPTY = 0xFFFFFFFF
HASH_SLOT_DELETED = 0xFFFFFFFE
SECTOR_BASE_SIZE = 512
HASH_ENTRY_SIZE = struct.calcsize(HASH_ENTRY_FORMAT)
BLOCK_ENTRY_SIZE = struct.calcsize(BLOCK_ENTRY_FORMAT)
USER_DATA_HEADER_SIZE = struct.calcsize(USER_DATA_HEADER_FORMAT)
# The writer keeps the replay header inside SC2's fixed user-data block.
MAX_USER_DATA = USER_DATA_SIZE - USER_DATA_HEADER_SIZE

DETAILS = "replay.details"
INIT_DATA = "replay.initData"
TRACKER_EVENTS = "replay.tracker.events"
GAME_EVENTS = "replay.game.events"
MESSAGE_EVENTS = "replay.message.events"
METADATA = "replay.gamemetadata.json"
ATTRIBUTES = "replay.attributes.events"
# Member names SC2 writes, for archives whose (listfile) is missing.
KNOWN_MEMBERS = (DETAILS, INIT_DATA, TRACKER_EVENTS, GAME_EVENTS, MESSAGE_EVENTS, METADATA, ATTRIBUTES,
                 "replay.details.backup", "replay.initData.backup", "replay.sync.events", "replay.smartcam.events",
                 "replay.load.info", "replay.resumable.events", "replay.server.battlelobby")


class ArchiveError(ValueError):
    """The bytes are not an MPQ archive this reader can open."""


@dataclass(frozen=True, slots=True)
class Archive:
    """The parts of a replay a mutation works on: the header struct and the decompressed members."""

    user_data: bytes
    members: tuple[tuple[str, bytes], ...]


# --------------------------------------------------------------------------------------------------
# Reading


def decrypt_table(data: bytes, key: int) -> bytes:
    """Decrypt an MPQ hash or block table (the inverse of ``encrypt_table``)."""
    words = struct.unpack(f"<{len(data) // 4}I", data[: len(data) // 4 * 4])
    seed1, seed2 = key, CRYPT_SEED2_INITIAL
    plain = []
    for word in words:
        seed2 = (seed2 + CRYPT_TABLE[0x400 + (seed1 & 0xFF)]) & UINT32_MASK
        value = word ^ ((seed1 + seed2) & UINT32_MASK)
        plain.append(value)
        seed1 = ((((~seed1) << 21) + 0x11111111) | (seed1 >> 11)) & UINT32_MASK
        seed2 = (value + seed2 + (seed2 << 5) + 3) & UINT32_MASK
    return struct.pack(f"<{len(plain)}I", *plain)


def _decompress(data: bytes) -> bytes:
    """Decompress one stored sector or block by its leading compression byte."""
    method, body = data[0], data[1:]
    if method == COMPRESSION_ZLIB:
        return zlib.decompress(body)
    if method == COMPRESSION_BZIP2:
        return bz2.decompress(body)
    if method == COMPRESSION_NONE:
        return body
    raise ArchiveError(f"unsupported compression byte {method:#04x}")


@dataclass(frozen=True, slots=True)
class _Layout:
    data: bytes
    base: int  # where the archive header starts; table and block offsets count from here
    sector_size: int
    hashes: tuple[tuple[int, int, int, int, int], ...]
    blocks: tuple[tuple[int, int, int, int], ...]


def _layout(data: bytes) -> tuple[_Layout, bytes]:
    """Locate the archive header and decrypt both tables; return them with the user data."""
    user_data, base = b"", 0
    if data[:4] == USER_DATA_MAGIC:
        _, _, base, user_size = struct.unpack_from(USER_DATA_HEADER_FORMAT, data)
        user_data = data[USER_DATA_HEADER_SIZE:USER_DATA_HEADER_SIZE + user_size]
    if data[base:base + 4] != ARCHIVE_MAGIC:
        raise ArchiveError("no MPQ archive header")
    fields = struct.unpack_from(ARCHIVE_HEADER_FORMAT, data, base)
    shift, hash_offset, block_offset, hash_count, block_count = fields[4:]
    hash_table = decrypt_table(data[base + hash_offset:base + hash_offset + hash_count * HASH_ENTRY_SIZE],
                               MPQ_HASH_TABLE_KEY)
    block_table = decrypt_table(data[base + block_offset:base + block_offset + block_count * BLOCK_ENTRY_SIZE],
                                MPQ_BLOCK_TABLE_KEY)
    if len(hash_table) != hash_count * HASH_ENTRY_SIZE or len(block_table) != block_count * BLOCK_ENTRY_SIZE:
        raise ArchiveError("hash or block table cut short")
    hashes = tuple(struct.iter_unpack(HASH_ENTRY_FORMAT, hash_table))
    blocks = tuple(struct.iter_unpack(BLOCK_ENTRY_FORMAT, block_table))
    return _Layout(data, base, SECTOR_BASE_SIZE << shift, hashes, blocks), user_data


def _find_block(layout: _Layout, name: str) -> tuple[int, int, int, int] | None:
    """The block entry of ``name`` by the MPQ hash lookup (open addressing, linear probing)."""
    if not layout.hashes:
        return None
    name_a, name_b = mpq_hash(name, HASH_NAME_A), mpq_hash(name, HASH_NAME_B)
    slot = mpq_hash(name, HASH_TABLE_OFFSET) % len(layout.hashes)
    for _ in range(len(layout.hashes)):
        hash_a, hash_b, _locale, _platform, block_index = layout.hashes[slot]
        if block_index == HASH_SLOT_EMPTY:
            return None
        if (hash_a, hash_b) == (name_a, name_b) and block_index < len(layout.blocks):
            return layout.blocks[block_index]
        slot = (slot + 1) % len(layout.hashes)
    return None


def _read_member(layout: _Layout, block: tuple[int, int, int, int]) -> bytes:
    """Return one member's decompressed bytes."""
    offset, archived_size, size, flags = block
    if flags & MPQ_FILE_ENCRYPTED:
        raise ArchiveError("encrypted members are not supported")
    raw = layout.data[layout.base + offset:layout.base + offset + archived_size]
    if size == 0:
        return b""
    if flags & MPQ_FILE_SINGLE_UNIT or not flags & MPQ_FILE_COMPRESS:
        if flags & MPQ_FILE_COMPRESS and size > archived_size:
            return _decompress(raw)
        return raw
    sectors = -(-size // layout.sector_size) + 1 + (1 if flags & MPQ_FILE_SECTOR_CRC else 0)
    positions = struct.unpack_from(f"<{sectors}I", raw)
    data_positions = positions[: sectors - 1] if flags & MPQ_FILE_SECTOR_CRC else positions
    out = bytearray()
    for start, end in itertools.pairwise(data_positions):
        chunk = raw[start:end]
        expected = min(layout.sector_size, size - len(out))
        out += _decompress(chunk) if len(chunk) < expected else chunk
    return bytes(out)


def read_archive(data: bytes) -> Archive:
    """Open an ``.SC2Replay``; raise ArchiveError when it cannot be read."""
    try:
        layout, user_data = _layout(data)
        listing = _find_block(layout, LISTFILE_NAME)
        names = _read_member(layout, listing).decode("utf-8").split() if listing else list(KNOWN_MEMBERS)
        members = []
        for name in names:
            block = _find_block(layout, name)
            if block is not None:
                members.append((name, _read_member(layout, block)))
    except (struct.error, IndexError, UnicodeDecodeError, OSError, zlib.error) as exc:
        raise ArchiveError(f"unreadable archive: {exc}") from exc
    if not members:
        raise ArchiveError("no members found")
    return Archive(user_data, tuple(members))


# --------------------------------------------------------------------------------------------------
# Versioned members: integers, counts and blobs found by walking the format


TAG_BIT_ARRAY = 0x01
TAG_U8 = 0x06
TAG_U32 = 0x07
TAG_U64 = 0x08
FIXED_WIDTHS = {TAG_U8: 1, TAG_U32: 4, TAG_U64: 8}
MAX_VERSIONED_DEPTH = 64  # real members nest a handful of levels; deeper means the bytes are not versioned


@dataclass(frozen=True, slots=True)
class Span:
    start: int
    end: int
    what: str  # "int" (a vint value), "count" (array or struct length) or "blob" (tag to last byte)


def vint_at(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the vint at ``pos``; return (value, position after it)."""
    first = data[pos]
    value, shift, end = (first & 0x7F) >> 1, 6, pos
    while data[end] & 0x80:
        end += 1
        value |= (data[end] & 0x7F) << shift
        shift += 7
    return (-value if first & 1 else value), end + 1


def _walk(data: bytes, pos: int, spans: list[Span], depth: int) -> int:
    """Record the spans of one versioned value starting at ``pos``; return the position after it."""
    if depth > MAX_VERSIONED_DEPTH or pos >= len(data):
        raise ArchiveError("not a versioned value")
    tag, pos = data[pos], pos + 1
    if tag in (TAG_ARRAY, TAG_STRUCT):
        count, end = vint_at(data, pos)
        spans.append(Span(pos, end, "count"))
        pos = end
        for _ in range(count):
            pos = vint_at(data, pos)[1] if tag == TAG_STRUCT else pos
            pos = _walk(data, pos, spans, depth + 1)
        return pos
    if tag in (TAG_BLOB, TAG_BIT_ARRAY):
        length, end = vint_at(data, pos)
        stop = end + (length if tag == TAG_BLOB else (length + 7) // 8)
        if length < 0 or stop > len(data):
            raise ArchiveError("blob runs past the member")
        if tag == TAG_BLOB:
            spans.append(Span(pos - 1, stop, "blob"))
        return stop
    if tag == TAG_CHOICE:
        return _walk(data, vint_at(data, pos)[1], spans, depth + 1)
    if tag == TAG_OPTIONAL:
        return _walk(data, pos + 1, spans, depth + 1) if data[pos] else pos + 1
    if tag in FIXED_WIDTHS:
        return pos + FIXED_WIDTHS[tag]
    if tag == TAG_VINT:
        end = vint_at(data, pos)[1]
        spans.append(Span(pos, end, "int"))
        return end
    raise ArchiveError(f"unknown versioned tag {tag:#04x}")


def versioned_spans(data: bytes) -> tuple[Span, ...]:
    """Every integer, count and blob of a member made of consecutive versioned values."""
    spans: list[Span] = []
    pos = 0
    try:
        while pos < len(data):
            pos = _walk(data, pos, spans, 0)
    except IndexError as exc:
        raise ArchiveError("versioned value runs past the member") from exc
    return tuple(spans)
