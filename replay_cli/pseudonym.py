"""Keyed pseudonyms: replace player identities with HMAC-SHA256 values under a secret key.

A pseudonym depends only on the key and the original value, never on the order rows are read,
so it reveals nothing about when a player was first seen, is stable across databases and machines
that share the key, and is unrelated under another key. Without the key nobody can test a guessed
name or handle against it, which a plain (unkeyed) hash would allow.

Which columns carry identity is data (`IDENTITY_COLUMNS`); the export applies the rules as SQL
functions registered on its read connection, so sorting and filtering see the pseudonymised values.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_KEY_BYTES = 16  # 128 bits: below this a key could be guessed, and every pseudonym with it
KEYGEN_HINT = "head -c 32 /dev/urandom > replaycli.key"
DOMAIN = b"replaycli-pseudonym-v1"  # bump to change every pseudonym on purpose
HEX_CHARS = 16  # 64 bits of the HMAC: collisions stay unlikely below billions of distinct values
TOON_ID_BITS = 52  # keyed toon ids stay integers that JSON readers (doubles) hold exactly
REPLAY_SUFFIX = ".SC2Replay"
REDACTED = "[redacted]"  # chat text under --chat redact: distinguishable from an empty message
TOON_HANDLE = re.compile(r"^(\d+)-S2-(\d+)-(\d+)$")  # region-S2-realm-id, as the game writes it

# Rule names -> what a value becomes. "null" drops the value (free text that may quote paths or names).
NAME, CLAN, HANDLE, TOON_ID, PATH, MATCH, CHAT, NULL = "name", "clan", "handle", "toon_id", "path", "match", "chat", "null"

# table -> column -> rule. A column named match_key is keyed everywhere (see MATCH_KEY_COLUMN).
# Tables not listed here cannot be exported with --anonymize: their contents were never reviewed.
_PLAYER_IDENTITY = {"name": NAME, "clan_tag": CLAN, "toon_handle": HANDLE, "toon_id": TOON_ID}
IDENTITY_COLUMNS: dict[str, dict[str, str]] = {
    "replays": {"first_path": PATH},
    "players": _PLAYER_IDENTITY,
    "chat": {"sender_name": NAME, "text": CHAT},
    "build_order": {},
    "player_stats": {},
    "files": {"path": PATH, "error_message": NULL},
    "v_1v1": {"p1_name": NAME, "p1_toon_handle": HANDLE, "p2_name": NAME, "p2_toon_handle": HANDLE},
    "v_player_games": _PLAYER_IDENTITY,
    "matches": {},
    "v_failures": {"path": PATH, "error_message": NULL},
}
# match_key hashes the players' toon handles with the game's seed and map, both exported: unkeyed, a
# guessed set of handles could be confirmed against it. Keyed, copies of one game still share it.
MATCH_KEY_COLUMN = "match_key"
CHAT_POLICIES = ("keep", "redact", "drop")


class KeyFileError(ValueError):
    """The key file is missing, unreadable or too short; the message is one user-facing line."""


def load_key(path: str | Path) -> bytes:
    """Read a key file: its bytes, without trailing whitespace, at least MIN_KEY_BYTES long.

    Raises KeyFileError when the file cannot be read or is too short.
    """
    try:
        key = Path(path).read_bytes().rstrip()  # `openssl rand -hex 32 > key` adds a newline
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    if len(key) < MIN_KEY_BYTES:
        raise KeyFileError(
            f"key file {path} holds {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes ({KEYGEN_HINT})"
        )
    return key


@dataclass(frozen=True)
class Pseudonymizer:
    """Turns identities into keyed pseudonyms; every method maps None to None."""

    key: bytes

    def digest(self, kind: str, value: str) -> bytes:
        """Return HMAC-SHA256 of value, separated by kind so a name and a clan tag never collide."""
        message = DOMAIN + b"\x00" + kind.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self.key, message, hashlib.sha256).digest()

    def text(self, kind: str, value: Any) -> str | None:
        """Return `<kind>-<16 hex>`; the empty string stays empty (it identifies nobody)."""
        if value is None or value == "":
            return None if value is None else ""
        return f"{kind}-{self.digest(kind, str(value)).hex()[:HEX_CHARS]}"

    def match_key(self, value: Any) -> str | None:
        """Return a keyed key of the same shape (hex of the same length) as the stored match_key."""
        if value is None:
            return None
        text = str(value)
        return self.digest(MATCH, text).hex()[: max(len(text), HEX_CHARS)]

    def toon_id(self, region: Any, realm: Any, toon_id: Any) -> int | None:
        """Return a keyed integer standing for the account (region, realm, id)."""
        if toon_id is None:
            return None
        number = int.from_bytes(self.digest(TOON_ID, f"{region}-{realm}-{toon_id}")[:8], "big")
        return number >> (64 - TOON_ID_BITS)

    def handle(self, value: Any) -> str | None:
        """Return `region-S2-realm-<keyed id>`, consistent with toon_id(); other shapes get a keyed text."""
        if value is None or value == "":
            return None if value is None else ""
        match = TOON_HANDLE.match(str(value))
        if match is None:
            return self.text(HANDLE, value)
        region, realm, toon = match.groups()
        return f"{region}-S2-{realm}-{self.toon_id(int(region), int(realm), int(toon))}"

    def path(self, path: Any, sha256: Any) -> str | None:
        """Return `<sha256>.SC2Replay`, or a keyed name when the file was never hashed (unreadable)."""
        if path is None:
            return None
        if sha256:
            return f"{sha256}{REPLAY_SUFFIX}"
        return f"{self.digest(PATH, str(path)).hex()[:2 * HEX_CHARS]}{REPLAY_SUFFIX}"


def register(conn: sqlite3.Connection, pseudonymizer: Pseudonymizer) -> None:
    """Make the pseudonyms callable from SQL on this connection (see column_sql)."""
    conn.create_function("rc_text", 2, pseudonymizer.text, deterministic=True)
    conn.create_function("rc_match", 1, pseudonymizer.match_key, deterministic=True)
    conn.create_function("rc_toon_id", 3, pseudonymizer.toon_id, deterministic=True)
    conn.create_function("rc_handle", 1, pseudonymizer.handle, deterministic=True)
    conn.create_function("rc_path", 2, pseudonymizer.path, deterministic=True)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_sql(table: str, column: str, columns: list[str], alias: str, chat: str, pseudonymise: bool = True) -> str:
    """Return the SQL expression that yields `column` of `table` pseudonymised (itself when not identifying).

    `columns` are the table's columns (a rule may read a neighbour: the row's sha256 or region);
    `chat` is the chat policy for chat text (keep or redact), applied even when `pseudonymise` is off.
    """
    ref = f"{alias}.{_quoted(column)}"
    rule = MATCH if column == MATCH_KEY_COLUMN else IDENTITY_COLUMNS.get(table, {}).get(column)
    if rule is None or (rule == CHAT and chat == "keep") or (rule != CHAT and not pseudonymise):
        return ref
    if rule == CHAT:
        return f"CASE WHEN {ref} IS NULL THEN NULL ELSE '{REDACTED}' END"
    if rule == NULL:
        return "NULL"
    if rule == MATCH:
        return f"rc_match({ref})"
    if rule == HANDLE:
        return f"rc_handle({ref})"
    if rule == TOON_ID:
        region, realm = (f"{alias}.{_quoted(c)}" if c in columns else "NULL" for c in ("region_id", "subregion"))
        return f"rc_toon_id({region}, {realm}, {ref})"
    if rule == PATH:
        sha = next((f"{alias}.{_quoted(c)}" for c in ("sha256", "replay_sha256") if c in columns), "NULL")
        return f"rc_path({ref}, {sha})"
    return f"rc_text('{rule}', {ref})"


def pseudonymise_result(result: Mapping[str, Any], pseudonymizer: Pseudonymizer, chat: str = "redact") -> dict[str, Any]:
    """Return a copy of a parse result with the same pseudonyms `export --anonymize` writes.

    For `parse --json` and stored results: names, clan tags, handles, toon ids, chat senders,
    match_key and the source path are replaced; chat text follows `chat` (keep, redact or drop);
    the error message, which can quote a path, is redacted. The input is not modified.
    """
    out = dict(result)
    out["source"] = pseudonymizer.path(result.get("source"), result.get("sha256"))
    if result.get("replay") is not None:
        out["replay"] = {**result["replay"], "match_key": pseudonymizer.match_key(result["replay"].get("match_key"))}
    out["players"] = [{
        **player,
        "name": pseudonymizer.text(NAME, player.get("name")),
        "clan_tag": pseudonymizer.text(CLAN, player.get("clan_tag")),
        "toon_handle": pseudonymizer.handle(player.get("toon_handle")),
        "toon_id": pseudonymizer.toon_id(player.get("region_id"), player.get("subregion"), player.get("toon_id")),
    } for player in result.get("players", [])]
    out["chat"] = chat_under(result.get("chat", []), chat, lambda name: pseudonymizer.text(NAME, name))
    if result.get("error"):
        out["error"] = {**result["error"], "message": REDACTED}
    if result.get("quality"):
        out["quality"] = {**result["quality"], "raw_values": _redacted_identities(result["quality"]["raw_values"])}
    return out


def chat_under(messages: Sequence[Mapping[str, Any]], chat: str,
               sender: Callable[[Any], Any] = lambda name: name) -> list[dict[str, Any]]:
    """Chat rows under a --chat policy (keep, redact or drop), each sender name passed through `sender`."""
    if chat == "drop":
        return []
    return [{**message, "sender_name": sender(message.get("sender_name")),
             "text": message.get("text") if chat == "keep" else REDACTED} for message in messages]


# Fields whose source value, kept as evidence in quality.raw_values, would be an identity or a chat line.
IDENTITY_FIELDS = (".name", ".clan_tag", ".toon_handle", ".sender_name", ".text")


def _redacted_identities(raw_values: Mapping[str, str]) -> dict[str, str]:
    return {where: REDACTED if where.endswith(IDENTITY_FIELDS) else value for where, value in raw_values.items()}
