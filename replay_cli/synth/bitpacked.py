"""Encoders for the two serialisations SC2 replay members use.

* The *bit-packed* stream (``replay.initData``, ``replay.game.events``,
  ``replay.message.events``): a value of ``n`` bits is written most significant
  bit first, and the bits of the stream fill each byte from its least
  significant bit upwards.  Strings and blobs are byte aligned.
* The *versioned* struct format (the MPQ user-data header, ``replay.details``,
  ``replay.tracker.events``): every value is byte aligned and prefixed with a
  one-byte type tag; integers are zig-zag style variable length ("vint").

Both are the inverse of what ``sc2reader.decoders.BitPackedDecoder`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Versioned-format type tags (the first byte of every versioned value).
TAG_ARRAY = 0x00
TAG_BLOB = 0x02
TAG_CHOICE = 0x03
TAG_OPTIONAL = 0x04
TAG_STRUCT = 0x05
TAG_BOOL = 0x06
TAG_FOURCC = 0x07
TAG_VINT = 0x09

# A vint carries 6 payload bits in its first byte (bit 0 is the sign) and 7 in
# every following byte; bit 7 of each byte says "another byte follows".
VINT_FIRST_PAYLOAD_BITS = 6
VINT_NEXT_PAYLOAD_BITS = 7
VINT_CONTINUE = 0x80


class BitPackedWriter:
    """Write values the way SC2's bit-packed decoder reads them.

    A value is split into chunks that fill the free *low* bits of the current
    byte first; the most significant chunk of the value goes first.
    """

    __slots__ = ("_current", "_out", "_used_bits")

    def __init__(self) -> None:
        self._out = bytearray()
        self._current = 0  # the partially filled byte
        self._used_bits = 0  # how many low bits of _current are filled

    def write_bits(self, value: int, count: int) -> None:
        """Append ``value`` as ``count`` bits."""
        if value < 0 or value >> count:
            raise ValueError(f"{value} does not fit in {count} bits")
        if self._used_bits == 0 and count % 8 == 0:
            # Byte-aligned whole bytes are plain big-endian.
            self._out += value.to_bytes(count // 8, "big")
            return
        current = self._current
        used = self._used_bits
        while count:
            take = min(8 - used, count)
            count -= take
            current |= ((value >> count) & ((1 << take) - 1)) << used
            used += take
            if used == 8:
                self._out.append(current)
                current = 0
                used = 0
        self._current = current
        self._used_bits = used

    def write_bool(self, flag: bool) -> None:
        """Append one bit."""
        self.write_bits(1 if flag else 0, 1)

    def write_optional_flag(self, present: bool) -> bool:
        """Append the presence bit of an optional field and return it."""
        self.write_bool(present)
        return present

    def byte_align(self) -> None:
        """Pad the current byte with zero bits."""
        if self._used_bits:
            self._out.append(self._current)
            self._current = 0
            self._used_bits = 0

    def write_aligned_bytes(self, data: bytes) -> None:
        """Byte-align, then append ``data`` verbatim."""
        self.byte_align()
        self._out += data

    def write_sized_bytes(self, data: bytes, length_bits: int) -> None:
        """Append a length of ``length_bits`` bits, then the aligned bytes."""
        self.write_bits(len(data), length_bits)
        self.write_aligned_bytes(data)

    def write_sized_text(self, text: str, length_bits: int) -> None:
        """Append a UTF-8 string preceded by its byte length."""
        self.write_sized_bytes(text.encode("utf-8"), length_bits)

    def getvalue(self) -> bytes:
        """Return the stream, padding the last partial byte with zeros."""
        self.byte_align()
        return bytes(self._out)


# ---------------------------------------------------------------------------
# Versioned format: every function returns the encoded bytes of one value.


def _encode_vint(value: int) -> bytes:
    """Encode a vint: 6 payload bits and the sign, then 7 bits per byte."""
    magnitude = -value if value < 0 else value
    first = ((magnitude & 0x3F) << 1) | (1 if value < 0 else 0)
    magnitude >>= VINT_FIRST_PAYLOAD_BITS
    out = bytearray()
    out.append(first | (VINT_CONTINUE if magnitude else 0))
    while magnitude:
        chunk = magnitude & 0x7F
        magnitude >>= VINT_NEXT_PAYLOAD_BITS
        out.append(chunk | (VINT_CONTINUE if magnitude else 0))
    return bytes(out)


# Small values dominate (tags, counts, stats); encode them once.
_SMALL_VINT_LIMIT = 1 << 14
_SMALL_VINTS = tuple(_encode_vint(value) for value in range(_SMALL_VINT_LIMIT))
_SMALL_V_INTS = tuple(bytes((TAG_VINT,)) + encoded for encoded in _SMALL_VINTS)


def vint(value: int) -> bytes:
    """Encode a signed variable-length integer (sign in bit 0)."""
    if 0 <= value < _SMALL_VINT_LIMIT:
        return _SMALL_VINTS[value]
    return _encode_vint(value)


def v_int(value: int) -> bytes:
    """A versioned integer."""
    if 0 <= value < _SMALL_VINT_LIMIT:
        return _SMALL_V_INTS[value]
    return bytes((TAG_VINT,)) + _encode_vint(value)


def v_bool(flag: bool) -> bytes:
    """A versioned boolean (stored as one byte)."""
    return bytes((TAG_BOOL, 1 if flag else 0))


def v_blob(data: bytes) -> bytes:
    """A versioned length-prefixed byte string."""
    return bytes((TAG_BLOB,)) + vint(len(data)) + data


def v_text(text: str) -> bytes:
    """A versioned UTF-8 string (a blob)."""
    return v_blob(text.encode("utf-8"))


def v_fourcc(code: bytes) -> bytes:
    """A versioned four-character code."""
    if len(code) != 4:
        raise ValueError("a fourcc is exactly four bytes")
    return bytes((TAG_FOURCC,)) + code


def v_optional(encoded: bytes | None) -> bytes:
    """A versioned optional wrapping an already encoded value (or absent)."""
    if encoded is None:
        return bytes((TAG_OPTIONAL, 0))
    return bytes((TAG_OPTIONAL, 1)) + encoded


def v_array(items: Iterable[bytes]) -> bytes:
    """A versioned array of already encoded values."""
    encoded = list(items)
    return bytes((TAG_ARRAY,)) + vint(len(encoded)) + b"".join(encoded)


def v_choice(tag: int, encoded: bytes) -> bytes:
    """A versioned choice: the chosen field's tag, then its value."""
    return bytes((TAG_CHOICE,)) + vint(tag) + encoded


def v_struct(fields: Mapping[int, bytes]) -> bytes:
    """A versioned struct from ``{field tag: encoded value}``, in tag order."""
    body = b"".join(vint(tag) + fields[tag] for tag in sorted(fields))
    return bytes((TAG_STRUCT,)) + vint(len(fields)) + body


# The variable-width unsigned integer SC2 puts before each event: a 2-bit
# choice selecting a 6, 14, 22 or 32 bit payload.
GAMELOOP_DELTA_WIDTHS = (6, 14, 22, 32)


def gameloop_delta_choice(delta: int) -> int:
    """Return the choice tag (0-3) of the smallest width that holds ``delta``."""
    for choice, width in enumerate(GAMELOOP_DELTA_WIDTHS):
        if delta < (1 << width):
            return choice
    raise ValueError(f"game loop delta {delta} exceeds 32 bits")


def write_gameloop_delta(writer: BitPackedWriter, delta: int) -> None:
    """Write a bit-packed game loop delta (choice tag, then payload)."""
    choice = gameloop_delta_choice(delta)
    writer.write_bits(choice, 2)
    writer.write_bits(delta, GAMELOOP_DELTA_WIDTHS[choice])


def v_gameloop_delta(delta: int) -> bytes:
    """A versioned game loop delta (a choice of integer widths)."""
    return v_choice(gameloop_delta_choice(delta), v_int(delta))
