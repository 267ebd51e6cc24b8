"""A deterministic, structure-aware replay mutator for fuzzing the ingest pipeline.

``SeedReplay.load`` opens an ``.SC2Replay`` with ``reader.read_archive`` (any
SC2 build), ``mutant_at`` applies one mutation family
to one part of it and re-packs the result with the project's own MPQ writer,
so most mutants are valid archives whose *content* is hostile: integers
SQLite cannot hold, strings where numbers belong, cut or shuffled members.
A few families break the container itself (tables, whole-file cuts).

Every mutant is a pure function of (seed archives, run seed, index), so one
failing input out of thousands is rebuilt from three numbers.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from replay_cli.synth.bitpacked import v_blob, vint
from replay_cli.synth.mpq import (
    ARCHIVE_HEADER_FORMAT,
    ARCHIVE_HEADER_SIZE,
    BLOCK_ENTRY_FORMAT,
    COMPRESSION_ZLIB,
    HASH_ENTRY_FORMAT,
    MPQ_BLOCK_TABLE_KEY,
    MPQ_HASH_TABLE_KEY,
    USER_DATA_HEADER_FORMAT,
    build_archive,
    encrypt_table,
)
from replay_cli.synth.reader import (
    ATTRIBUTES,
    DETAILS,
    GAME_EVENTS,
    HASH_SLOT_DELETED,
    HASH_SLOT_EMPTY,
    INIT_DATA,
    MAX_USER_DATA,
    MESSAGE_EVENTS,
    METADATA,
    TRACKER_EVENTS,
    Archive,
    ArchiveError,
    Span,
    decrypt_table,
    read_archive,
    versioned_spans,
    vint_at,
)

HEADER = "(header)"  # the replay header struct in the MPQ user-data block, mutated like a member
TARGETS = (DETAILS, INIT_DATA, TRACKER_EVENTS, GAME_EVENTS, MESSAGE_EVENTS, METADATA, ATTRIBUTES, HEADER)
# Which serialisation each member uses, so an integer rewrite lands on a real field.
VERSIONED = (HEADER, DETAILS, TRACKER_EVENTS)
BIT_PACKED = (INIT_DATA, GAME_EVENTS, MESSAGE_EVENTS)
# Integers around every width a reader or SQLite might assume (SQLite: signed 64 bit).
HOSTILE_INTS = (0, -1, 1, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 1, 2**100,
                -(2**31), -(2**63), -(2**63) - 1, -(2**64), 10**18, 10**40)
HOSTILE_FLOATS = (1e308, -1e308, 1e20, -1e20, 1.5, -0.0, 5e-324, float("inf"), float("-inf"), float("nan"))
HUGE_TEXT_SIZE = 64 * 1024  # far above any real name or title, still a small file once compressed
HOSTILE_TEXTS = ("", "abc", "12345", "1e308", "\x00", "\u202eevil", "名前" * 20, "x" * HUGE_TEXT_SIZE)
HOSTILE_BLOBS = (b"", b"\xff\xfe\xfd", b"\x00" * 8, "\u202e".encode(), b"x" * HUGE_TEXT_SIZE)
# gamemetadata fields the client writes as numbers; rewriting them is what found values SQLite cannot hold.
METADATA_NUMBERS = ("Duration", "MMR", "APM", "PlayerID")
DEEP_NESTING = 100_000  # deeper than any JSON parser's recursion limit


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutated replay and what was done to it (``kind`` is the family counted per run)."""

    data: bytes
    kind: str
    member: str
    detail: str
    origin: str


@dataclass(slots=True)
class SeedReplay:
    """A replay mutants are derived from, with its members compressed once for fast re-packing."""

    name: str
    archive: Archive
    packed: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    spans: dict[str, tuple[Span, ...] | None] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, data: bytes) -> SeedReplay:
        """Read ``data``; raise ArchiveError when it is not a readable archive."""
        archive = read_archive(data)
        packed = {}
        for member, content in archive.members:
            stored = bytes((COMPRESSION_ZLIB,)) + zlib.compress(content)
            # Readers decompress a single-unit block only when it is smaller than the file.
            if len(stored) < len(content):
                packed[member] = (stored, len(content))
        return cls(name, archive, packed)


# --------------------------------------------------------------------------------------------------
# Byte-level families (any member)


def _flip_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Flip, insert or delete a few bytes at random places."""
    out = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 8)):
        where = rng.randrange(len(out) + 1)
        operation = rng.choice(("flip", "insert", "delete"))
        if operation == "flip" and where < len(out):
            out[where] ^= rng.randrange(1, 256)
        elif operation == "insert":
            out[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            del out[where:where + rng.randint(1, 16)]
        done.append(f"{operation}@{where}")
    return bytes(out), " ".join(done)


def _truncate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Cut the bytes at a random point (an empty result included)."""
    cut = rng.randrange(len(data) + 1) if rng.random() < 0.9 else 0
    return data[:cut], f"cut at {cut} of {len(data)}"


def _splice_file(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Zero a range or repeat a chunk of the packed file (CRC-free damage to the container)."""
    start = rng.randrange(len(data))
    length = rng.randint(1, 4096)
    out = bytearray(data)
    if rng.random() < 0.5:
        out[start:start + length] = bytes(len(out[start:start + length]))
        return bytes(out), f"zero {length} at {start}"
    out[start:start] = out[start:start + length]
    return bytes(out), f"repeat {length} at {start}"


def _bitfield(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Overwrite a run of bits, as a bit-packed integer field would be, with all ones or noise."""
    if not data:
        return data, "empty"
    width = rng.choice((8, 16, 24, 32, 64))
    start = rng.randrange(len(data) * 8)
    first, last = start // 8, min(len(data), (start + width + 7) // 8)
    window = int.from_bytes(data[first:last], "little")
    shift, bits = start - first * 8, min(width, (last - first) * 8 - (start - first * 8))
    mask = ((1 << bits) - 1) << shift
    noise = mask if rng.random() < 0.5 else rng.getrandbits(bits) << shift
    patched = ((window & ~mask) | noise).to_bytes(last - first, "little")
    return data[:first] + patched + data[last:], f"{bits} bits at bit {start}"


def _versioned_int(rng: random.Random, data: bytes, spans: Sequence[Span]) -> tuple[bytes, str] | None:
    """Rewrite one integer (or array/struct count) to a value around a width boundary."""
    numbers = [span for span in spans if span.what != "blob"]
    if not numbers:
        return None
    span = rng.choice(numbers)
    old = vint_at(data, span.start)[0]
    new = rng.choice((*HOSTILE_INTS, old + 1, old - 1, old * 1000))
    return data[:span.start] + vint(new) + data[span.end:], f"{span.what}@{span.start}: {old} -> {new}"


def _versioned_blob(rng: random.Random, data: bytes, spans: Sequence[Span],
                    limit: int) -> tuple[bytes, str] | None:
    """Replace one string or blob by an empty, invalid UTF-8, control-character or huge one."""
    blobs = [span for span in spans if span.what == "blob"]
    if not blobs:
        return None
    span = rng.choice(blobs)
    new = rng.choice([blob for blob in HOSTILE_BLOBS if len(blob) <= limit])
    return data[:span.start] + v_blob(new) + data[span.end:], f"blob@{span.start}: {len(new)} bytes {new[:8]!r}"


# --------------------------------------------------------------------------------------------------
# replay.gamemetadata.json


JsonPath = tuple[str | int, ...]


def _json_paths(node: object, path: JsonPath = ()) -> Iterator[JsonPath]:
    """Every path to a value in a JSON document, containers included (the root excepted)."""
    children: list[tuple[str | int, object]] = []
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    for key, child in children:
        yield (*path, key)
        yield from _json_paths(child, (*path, key))


def _json_set(document: object, path: JsonPath, value: object, *, delete: bool = False) -> None:
    """Set (or delete) the value at ``path``, which exists."""
    parent: object = document
    for key in path[:-1]:
        parent = parent[key]  # type: ignore[index]
    if delete:
        del parent[path[-1]]  # type: ignore[attr-defined]
    else:
        parent[path[-1]] = value  # type: ignore[index]


def _hostile_json(rng: random.Random) -> object:
    """A JSON value a reader expecting small numbers or short strings must survive."""
    group = rng.randrange(4)
    if group == 0:
        return rng.choice(HOSTILE_INTS)
    if group == 1:
        return rng.choice(HOSTILE_FLOATS)
    if group == 2:
        return rng.choice(HOSTILE_TEXTS)
    return rng.choice((None, True, False, [], {}, [1, 2], {"nested": 1}))


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


def _json_value(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    """Rewrite one value, most often a number field the client writes, to a hostile value."""
    document = _load_json(data)
    paths = list(_json_paths(document))
    if not paths:
        return None
    numbers = [path for path in paths if path[-1] in METADATA_NUMBERS]
    path = rng.choice(numbers if numbers and rng.random() < 0.6 else paths)
    value = _hostile_json(rng)
    _json_set(document, path, value)
    return _dump_json(document), f"{'/'.join(map(str, path))} = {_describe(value)}"


def _json_shape(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    """Change the document's shape: a key removed, Players emptied or repeated, another root, deep nesting."""
    document = _load_json(data)
    paths = list(_json_paths(document))
    if document is None or not paths:
        return None
    change = rng.choice(("delete", "players", "root", "nesting"))
    if change == "delete":
        path = rng.choice(paths)
        _json_set(document, path, None, delete=True)
        return _dump_json(document), f"deleted {'/'.join(map(str, path))}"
    if change == "players" and isinstance(document, dict) and isinstance(document.get("Players"), list):
        players = document["Players"]
        document["Players"] = rng.choice(([], players * 40, "Players", {"0": players}, [None, 7]))
        return _dump_json(document), f"Players = {_describe(document['Players'])}"
    if change == "nesting":
        key = rng.choice(paths)
        nested = "[" * DEEP_NESTING + "]" * DEEP_NESTING
        _json_set(document, key, "\0NESTED\0")
        where = "/".join(map(str, key))
        return _dump_json(document).replace(b'"\\u0000NESTED\\u0000"', nested.encode()), f"{where} nested deep"
    root = rng.choice(([], "text", 42, None, [document]))
    return _dump_json(root), f"root = {_describe(root)}"


def _load_json(data: bytes) -> object:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _dump_json(document: object) -> bytes:
    # The client writes indented UTF-8; NaN and Infinity go out as the bare words some writers emit.
    return json.dumps(document, indent=4, ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# replay.attributes.events: source u8, namespace u32, count u32, then 13-byte entries


ATTRIBUTES_COUNT_OFFSET = 5
ATTRIBUTES_HEADER_SIZE = 9
ATTRIBUTE_ENTRY_SIZE = 13
# (offset inside an entry, width): namespace, attribute id, scope, value
ATTRIBUTE_FIELDS = {"namespace": (0, 4), "id": (4, 4), "scope": (8, 1), "value": (9, 4)}


def _attribute_int(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    """Rewrite the entry count or one field of one entry to a boundary or random value."""
    if len(data) < ATTRIBUTES_HEADER_SIZE:
        return None
    entries = (len(data) - ATTRIBUTES_HEADER_SIZE) // ATTRIBUTE_ENTRY_SIZE
    if entries == 0 or rng.random() < 0.25:
        name, offset, width = "count", ATTRIBUTES_COUNT_OFFSET, 4
    else:
        name = rng.choice(tuple(ATTRIBUTE_FIELDS))
        entry = rng.randrange(entries)
        offset = ATTRIBUTES_HEADER_SIZE + entry * ATTRIBUTE_ENTRY_SIZE + ATTRIBUTE_FIELDS[name][0]
        width = ATTRIBUTE_FIELDS[name][1]
        name = f"entry {entry} {name}"
    top = (1 << (8 * width)) - 1
    old = int.from_bytes(data[offset:offset + width], "little")
    new = rng.choice((0, top, top >> 1, (top >> 1) + 1, (old + 1) & top, rng.randrange(top + 1)))
    return data[:offset] + new.to_bytes(width, "little") + data[offset + width:], f"{name}: {old} -> {new}"


# --------------------------------------------------------------------------------------------------
# The container: archive header, hash and block tables of a packed file


ARCHIVE_HEADER_FIELDS = ("header_size", "archive_size", "format_version", "sector_size_shift",
                         "hash_table_offset", "block_table_offset", "hash_table_entries", "block_table_entries")
HASH_FIELDS = ("name_a", "name_b", "locale", "platform", "block_index")
BLOCK_FIELDS = ("offset", "archived_size", "size", "flags")
U16_FIELDS = ("format_version", "sector_size_shift", "locale", "platform")


def _hostile_u32(rng: random.Random, old: int, width: int = 32) -> int:
    top = (1 << width) - 1
    return rng.choice((0, 1, top, top - 1, top >> 1, (old + 1) & top, (old * 16) & top, rng.randrange(top + 1)))


def _archive_header(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Rewrite one field of the archive header (sizes, offsets, entry counts, sector size)."""
    base = struct.unpack_from(USER_DATA_HEADER_FORMAT, data)[2]
    values = list(struct.unpack_from(ARCHIVE_HEADER_FORMAT, data, base))
    index = rng.randrange(len(ARCHIVE_HEADER_FIELDS))
    name = ARCHIVE_HEADER_FIELDS[index]
    old = values[index + 1]
    values[index + 1] = _hostile_u32(rng, old, 16 if name in U16_FIELDS else 32)
    header = struct.pack(ARCHIVE_HEADER_FORMAT, *values)
    return data[:base] + header + data[base + ARCHIVE_HEADER_SIZE:], f"{name}: {old} -> {values[index + 1]}"


def _table_entry(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Decrypt the hash or block table, rewrite one field of one entry, encrypt it again."""
    base = struct.unpack_from(USER_DATA_HEADER_FORMAT, data)[2]
    header = struct.unpack_from(ARCHIVE_HEADER_FORMAT, data, base)
    use_hash = rng.random() < 0.5
    offset, entries = (header[5], header[7]) if use_hash else (header[6], header[8])
    entry_format, key, names = ((HASH_ENTRY_FORMAT, MPQ_HASH_TABLE_KEY, HASH_FIELDS) if use_hash
                                else (BLOCK_ENTRY_FORMAT, MPQ_BLOCK_TABLE_KEY, BLOCK_FIELDS))
    entry_size = struct.calcsize(entry_format)
    start = base + offset
    table = bytearray(decrypt_table(data[start:start + entries * entry_size], key))
    entry = rng.randrange(entries)
    values = list(struct.unpack_from(entry_format, table, entry * entry_size))
    index = rng.randrange(len(names))
    old = values[index]
    if use_hash and names[index] == "block_index" and rng.random() < 0.5:
        values[index] = rng.choice((HASH_SLOT_EMPTY, HASH_SLOT_DELETED, rng.randrange(entries + 2)))
    else:
        values[index] = _hostile_u32(rng, old, 16 if names[index] in U16_FIELDS else 32)
    struct.pack_into(entry_format, table, entry * entry_size, *values)
    encrypted = encrypt_table(bytes(table), key)
    table_name = "hash" if use_hash else "block"
    detail = f"{table_name} entry {entry} {names[index]}: {old} -> {values[index]}"
    return data[:start] + encrypted + data[start + len(encrypted):], detail


def _file_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Byte flips, inserts and deletes, or a zeroed or repeated range, anywhere in the packed file."""
    return _flip_bytes(rng, data) if rng.random() < 0.5 else _splice_file(rng, data)


# --------------------------------------------------------------------------------------------------
# Choosing and applying one mutation


MemberMutation = Callable[[random.Random, SeedReplay, str, bytes], tuple[bytes, str] | None]
FileMutation = Callable[[random.Random, bytes], tuple[bytes, str]]


def _spans(seed: SeedReplay, member: str, content: bytes) -> tuple[Span, ...] | None:
    """The versioned spans of an unmodified seed member, computed once per seed."""
    if member not in seed.spans:
        try:
            seed.spans[member] = versioned_spans(content)
        except ArchiveError:
            seed.spans[member] = None
    return seed.spans[member]


def _on_versioned_int(rng: random.Random, seed: SeedReplay, member: str, content: bytes) -> tuple[bytes, str] | None:
    spans = _spans(seed, member, content)
    return _versioned_int(rng, content, spans) if spans else None


def _on_versioned_blob(rng: random.Random, seed: SeedReplay, member: str, content: bytes) -> tuple[bytes, str] | None:
    spans = _spans(seed, member, content)
    # The header must still fit SC2's user-data block once the blob grows.
    limit = MAX_USER_DATA - len(content) if member == HEADER else HUGE_TEXT_SIZE
    return _versioned_blob(rng, content, spans, limit) if spans else None


def _on_swap(rng: random.Random, seed: SeedReplay, member: str, content: bytes) -> tuple[bytes, str] | None:
    others = [(name, data) for name, data in seed.archive.members if data != content]
    if not others:
        return None
    name, data = rng.choice(others)
    return data, f"content of {name}"


MEMBER_FAMILIES: dict[str, tuple[MemberMutation, tuple[str, ...]]] = {
    "member-bytes": (lambda rng, _s, _m, content: _flip_bytes(rng, content), TARGETS),
    "member-truncate": (lambda rng, _s, _m, content: _truncate(rng, content), TARGETS),
    "member-drop": (lambda _rng, _s, _m, _c: (b"", "dropped"), TARGETS[:-1]),
    "member-swap": (_on_swap, TARGETS[:-1]),
    "versioned-int": (_on_versioned_int, VERSIONED),
    "versioned-blob": (_on_versioned_blob, VERSIONED),
    "bitfield": (lambda rng, _s, _m, content: _bitfield(rng, content), BIT_PACKED),
    "attributes-int": (lambda rng, _s, _m, content: _attribute_int(rng, content), (ATTRIBUTES,)),
    "json-value": (lambda rng, _s, _m, content: _json_value(rng, content), (METADATA,)),
    "json-shape": (lambda rng, _s, _m, content: _json_shape(rng, content), (METADATA,)),
}
FILE_FAMILIES: dict[str, FileMutation] = {
    "file-truncate": _truncate,
    "file-bytes": _file_bytes,
    "table-entry": _table_entry,
    "archive-header": _archive_header,
}
# Relative frequency of each family: the structure-aware ones, which reach past the container's
# checks into the parser and the writer, get most of the budget.
FAMILY_WEIGHTS = {
    "json-value": 16, "json-shape": 5, "versioned-int": 16, "versioned-blob": 6, "bitfield": 8,
    "attributes-int": 5, "member-bytes": 10, "member-truncate": 7, "member-drop": 4, "member-swap": 3,
    "file-truncate": 5, "file-bytes": 6, "table-entry": 7, "archive-header": 2,
}
MUTATION_KINDS = tuple(FAMILY_WEIGHTS)
MAX_ATTEMPTS = 20  # a family can be a no-op on a given seed (no JSON member, a value already hostile)
SEEDS_PER_FAMILY = 8


def pack(seed: SeedReplay, members: Sequence[tuple[str, bytes]], user_data: bytes) -> bytes:
    """Re-pack members with the project's writer, reusing the seed's compressed blocks for unchanged ones."""
    original = dict(seed.archive.members)
    unchanged = {name: seed.packed[name] for name, content in members
                 if name in seed.packed and original.get(name) is content}
    return build_archive(members, user_data[:MAX_USER_DATA], "zlib", precompressed=unchanged)


def _member_mutant(rng: random.Random, seed: SeedReplay, kind: str) -> Mutant | None:
    """Apply member family ``kind`` to a random target the seed has; None when it does not apply."""
    mutation, targets = MEMBER_FAMILIES[kind]
    present = dict(seed.archive.members)
    choices = [name for name in targets if name in present or (name == HEADER and seed.archive.user_data)]
    if not choices:
        return None
    member = rng.choice(choices)
    content = seed.archive.user_data if member == HEADER else present[member]
    outcome = mutation(rng, seed, member, content)
    if outcome is None or (outcome[0] == content and kind != "member-drop"):
        return None
    new_content, detail = outcome
    if member == HEADER:
        if len(new_content) > MAX_USER_DATA:
            detail += f" (cut to the {MAX_USER_DATA}-byte user-data block)"
        return Mutant(pack(seed, seed.archive.members, new_content), kind, member, detail, seed.name)
    members = [(name, new_content if name == member else data) for name, data in seed.archive.members
               if not (kind == "member-drop" and name == member)]
    return Mutant(pack(seed, members, seed.archive.user_data), kind, member, detail, seed.name)


def _file_mutant(rng: random.Random, seed: SeedReplay, kind: str) -> Mutant | None:
    """Apply file family ``kind`` to the re-packed, otherwise untouched seed."""
    original = pack(seed, seed.archive.members, seed.archive.user_data)
    data, detail = FILE_FAMILIES[kind](rng, original)
    return None if data == original else Mutant(data, kind, "(file)", detail, seed.name)


def mutant_at(seeds: Sequence[SeedReplay], run_seed: int, index: int) -> Mutant:
    """Mutant number ``index`` of run ``run_seed``: the same three inputs always give the same bytes.

    Raises ValueError when no family applies to any of the seeds tried.
    """
    rng = random.Random(f"replaycli-fuzz:{run_seed}:{index}")
    weights = [FAMILY_WEIGHTS[kind] for kind in MUTATION_KINDS]
    for _ in range(MAX_ATTEMPTS):
        # The family is drawn first and kept while seeds are tried, so families that only some seeds
        # support (gamemetadata exists from 3.0 on) still get their share of the run.
        kind = rng.choices(MUTATION_KINDS, weights=weights)[0]
        maker = _member_mutant if kind in MEMBER_FAMILIES else _file_mutant
        for _ in range(SEEDS_PER_FAMILY):
            mutant = maker(rng, rng.choice(seeds), kind)
            if mutant is not None:
                return mutant
    raise ValueError(f"no mutation applies to these seeds (run seed {run_seed}, index {index})")
