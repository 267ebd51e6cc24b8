"""A minimal, deterministic MPQ archive writer (the container of .SC2Replay).

Layout written (all integers little endian)::

    0x000  'MPQ\\x1b' user-data header + the replay header struct
    0x400  'MPQ\\x1a' archive header (format version 0, 32 bytes)
           file data, one single-unit block per member
           hash table   (encrypted with the key of "(hash table)")
           block table  (encrypted with the key of "(block table)")

Offsets inside the archive header and tables are relative to the archive
header, as ``mpyq.MPQArchive`` (and the MPQ format) read them.
"""

from __future__ import annotations

import bz2
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

USER_DATA_MAGIC = b"MPQ\x1b"
ARCHIVE_MAGIC = b"MPQ\x1a"
# SC2 reserves 512 bytes for user data and starts the archive at 0x400.
USER_DATA_SIZE = 0x200
ARCHIVE_OFFSET = 0x400
USER_DATA_HEADER_FORMAT = "<4s3I"
ARCHIVE_HEADER_FORMAT = "<4s2I2H4I"
ARCHIVE_HEADER_SIZE = struct.calcsize(ARCHIVE_HEADER_FORMAT)
ARCHIVE_FORMAT_VERSION = 0  # the original (v1) MPQ layout, 32-byte header
SECTOR_SIZE_SHIFT = 5  # 512 << 5 = 16 KiB sectors, as SC2 uses

HASH_ENTRY_FORMAT = "<2I2HI"
BLOCK_ENTRY_FORMAT = "<4I"
EMPTY_HASH = 0xFFFFFFFF
NEUTRAL_LOCALE = 0
DEFAULT_PLATFORM = 0

MPQ_FILE_COMPRESS = 0x00000200
MPQ_FILE_SINGLE_UNIT = 0x01000000
MPQ_FILE_EXISTS = 0x80000000

# First byte of a compressed single-unit block.  SC2 itself uses bzip2, and
# bzip2's output has been stable for decades, so such archives are
# reproducible byte for byte on any machine.  zlib is ~4x faster (used for
# large corpora) but zlib-ng based systems produce different bytes.
COMPRESSION_BZIP2 = 0x10
COMPRESSION_ZLIB = 0x02
BZIP2_LEVEL = 9
ZLIB_LEVEL = 6
COMPRESSORS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "bzip2": (COMPRESSION_BZIP2, lambda data: bz2.compress(data, BZIP2_LEVEL)),
    "zlib": (COMPRESSION_ZLIB, lambda data: zlib.compress(data, ZLIB_LEVEL)),
}
# bzip2 never shrinks tiny members; skipping them saves its setup cost.
MIN_COMPRESSIBLE_SIZE = 128

# Hash types of the MPQ string hash.
HASH_TABLE_OFFSET = 0
HASH_NAME_A = 1
HASH_NAME_B = 2
HASH_FILE_KEY = 3

CRYPT_SEED1_INITIAL = 0x7FED7FED
CRYPT_SEED2_INITIAL = 0xEEEEEEEE
CRYPT_TABLE_SEED = 0x00100001
UINT32_MASK = 0xFFFFFFFF
LISTFILE_NAME = "(listfile)"
MIN_HASH_TABLE_SIZE = 16


def _build_crypt_table() -> tuple[int, ...]:
    """Generate the 0x500-entry MPQ cryptography table."""
    table = [0] * 0x500
    seed = CRYPT_TABLE_SEED
    for index in range(0x100):
        for group in range(5):
            seed = (seed * 125 + 3) % 0x2AAAAB
            high = (seed & 0xFFFF) << 16
            seed = (seed * 125 + 3) % 0x2AAAAB
            low = seed & 0xFFFF
            table[index + group * 0x100] = high | low
    return tuple(table)


CRYPT_TABLE = _build_crypt_table()


@lru_cache(maxsize=256)
def mpq_hash(name: str, hash_type: int) -> int:
    """The MPQ string hash of ``name`` (case-insensitive) for ``hash_type``."""
    seed1 = CRYPT_SEED1_INITIAL
    seed2 = CRYPT_SEED2_INITIAL
    for char in name.upper().encode("ascii"):
        value = CRYPT_TABLE[(hash_type << 8) + char]
        seed1 = (value ^ (seed1 + seed2)) & UINT32_MASK
        seed2 = (char + seed1 + seed2 + (seed2 << 5) + 3) & UINT32_MASK
    return seed1


MPQ_HASH_TABLE_KEY = mpq_hash("(hash table)", HASH_FILE_KEY)
MPQ_BLOCK_TABLE_KEY = mpq_hash("(block table)", HASH_FILE_KEY)


def encrypt_table(plain: bytes, key: int) -> bytes:
    """Encrypt a table (a multiple of 4 bytes) with the MPQ stream cipher."""
    words = struct.unpack(f"<{len(plain) // 4}I", plain)
    seed1 = key
    seed2 = CRYPT_SEED2_INITIAL
    encrypted = []
    for word in words:
        seed2 = (seed2 + CRYPT_TABLE[0x400 + (seed1 & 0xFF)]) & UINT32_MASK
        encrypted.append(word ^ ((seed1 + seed2) & UINT32_MASK))
        seed1 = ((((~seed1) << 21) + 0x11111111) | (seed1 >> 11)) & UINT32_MASK
        seed2 = (word + seed2 + (seed2 << 5) + 3) & UINT32_MASK
    return struct.pack(f"<{len(encrypted)}I", *encrypted)


def _pack_block(data: bytes, compression: str) -> tuple[bytes, int]:
    """Compress one member if that saves space; return (stored bytes, flags)."""
    flags = MPQ_FILE_EXISTS | MPQ_FILE_SINGLE_UNIT
    if len(data) < MIN_COMPRESSIBLE_SIZE:
        return data, flags
    flag_byte, compress = COMPRESSORS[compression]
    compressed = bytes((flag_byte,)) + compress(data)
    # Readers only decompress when the stored block is smaller than the file,
    # so a block that does not shrink must be stored raw.
    if len(compressed) < len(data):
        return compressed, flags | MPQ_FILE_COMPRESS
    return data, flags


def _hash_table_size(file_count: int) -> int:
    """A power of two with spare slots, as MPQ lookups require."""
    size = MIN_HASH_TABLE_SIZE
    while size < file_count * 2:
        size *= 2
    return size


BlockEntry = tuple[int, int, int, int]  # (offset, stored size, uncompressed size, flags)


def _member_blocks(
    members: Sequence[tuple[str, bytes]], compression: str, precompressed: Mapping[str, tuple[bytes, int]] | None
) -> tuple[bytes, list[BlockEntry]]:
    """Pack every member after the archive header; return the blocks' bytes and their block-table entries."""
    body = bytearray()
    block_entries: list[BlockEntry] = []
    offset = ARCHIVE_HEADER_SIZE
    packed: dict[bytes, tuple[bytes, int]] = {}  # .backup members repeat data
    for name, data in members:
        if precompressed and name in precompressed:
            stored, size = precompressed[name]
            flags = MPQ_FILE_EXISTS | MPQ_FILE_SINGLE_UNIT | MPQ_FILE_COMPRESS
        else:
            if data not in packed:
                packed[data] = _pack_block(data, compression)
            (stored, flags), size = packed[data], len(data)
        block_entries.append((offset, len(stored), size, flags))
        body += stored
        offset += len(stored)
    return bytes(body), block_entries


def _hash_table(names: Sequence[str]) -> bytes:
    """The unencrypted hash table: each name in the first free slot from its hash, with open addressing."""
    table_size = _hash_table_size(len(names))
    slots: list[tuple[int, int, int, int, int] | None] = [None] * table_size
    for block_index, name in enumerate(names):
        slot = mpq_hash(name, HASH_TABLE_OFFSET) % table_size
        while slots[slot] is not None:
            slot = (slot + 1) % table_size
        slots[slot] = (
            mpq_hash(name, HASH_NAME_A),
            mpq_hash(name, HASH_NAME_B),
            NEUTRAL_LOCALE,
            DEFAULT_PLATFORM,
            block_index,
        )
    empty_slot = (EMPTY_HASH, EMPTY_HASH, 0xFFFF, 0xFFFF, EMPTY_HASH)
    return b"".join(struct.pack(HASH_ENTRY_FORMAT, *(entry or empty_slot)) for entry in slots)


def _headers(user_data: bytes, body_end: int, hash_table: bytes, block_table: bytes, blocks: int) -> bytes:
    """The user-data block (padded to ARCHIVE_OFFSET) and the archive header that follows it."""
    hash_table_offset = body_end
    block_table_offset = hash_table_offset + len(hash_table)
    archive_header = struct.pack(
        ARCHIVE_HEADER_FORMAT,
        ARCHIVE_MAGIC,
        ARCHIVE_HEADER_SIZE,
        block_table_offset + len(block_table),
        ARCHIVE_FORMAT_VERSION,
        SECTOR_SIZE_SHIFT,
        hash_table_offset,
        block_table_offset,
        len(hash_table) // struct.calcsize(HASH_ENTRY_FORMAT),
        blocks,
    )
    user_header = struct.pack(USER_DATA_HEADER_FORMAT, USER_DATA_MAGIC, USER_DATA_SIZE, ARCHIVE_OFFSET, len(user_data))
    return (user_header + user_data).ljust(ARCHIVE_OFFSET, b"\x00") + archive_header


def build_archive(
    members: Sequence[tuple[str, bytes]],
    user_data: bytes,
    compression: str = "bzip2",
    *,
    precompressed: Mapping[str, tuple[bytes, int]] | None = None,
) -> bytes:
    """Build an MPQ archive holding ``members`` plus a ``(listfile)``.

    ``user_data`` is stored in the 'MPQ\\x1b' user-data block (SC2 keeps the
    replay header struct there); ``compression`` is "bzip2" or "zlib".
    ``precompressed`` replaces members by (stored block with its compression
    byte, claimed uncompressed size): how tests build decompression bombs
    without ever holding the gigabyte they expand to.
    """
    if compression not in COMPRESSORS:
        raise ValueError(f"unknown compression {compression!r}")
    if len(user_data) + struct.calcsize(USER_DATA_HEADER_FORMAT) > USER_DATA_SIZE:
        raise ValueError("user data does not fit in the user-data block")
    listfile = "".join(f"{name}\r\n" for name, _ in members).encode("ascii")
    all_members = [*members, (LISTFILE_NAME, listfile)]
    body, block_entries = _member_blocks(all_members, compression, precompressed)
    hash_table = _hash_table([name for name, _ in all_members])
    block_table = b"".join(struct.pack(BLOCK_ENTRY_FORMAT, *entry) for entry in block_entries)
    return b"".join((
        _headers(user_data, ARCHIVE_HEADER_SIZE + len(body), hash_table, block_table, len(block_entries)),
        body,
        encrypt_table(hash_table, MPQ_HASH_TABLE_KEY),
        encrypt_table(block_table, MPQ_BLOCK_TABLE_KEY),
    ))
