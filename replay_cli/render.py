"""Everything humans see: rich tables, progress and summaries on stderr; JSON emitters for stdout.

The only module that imports rich. Replay content is untrusted: names, chat and map names can
hold rich markup, ANSI escape sequences or other control characters, so every piece of it goes
through `safe()` and into `Text` objects, never into a markup string.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Control (Cc) and format (Cf: bidi overrides, zero-width) characters can move the cursor,
# recolour the terminal or reorder what is shown; they are made visible instead.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf"})
_UNSAFE_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
MAX_SHOWN_CHARS = 120


def safe(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """Return untrusted text fit for a terminal: control characters escaped, length capped."""
    text = "" if value is None else str(value)

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"

    text = _UNSAFE_CHAR.sub(escape, text)
    if any(unicodedata.category(c) in _UNSAFE_CATEGORIES for c in text):
        text = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _UNSAFE_CATEGORIES else c for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def make_console(*, stderr: bool = True, file: IO[str] | None = None) -> Console:
    """Return a console that honours NO_COLOR and never colours a pipe."""
    return Console(
        file=file,
        stderr=stderr if file is None else False,
        no_color="NO_COLOR" in os.environ,
        highlight=False,
        soft_wrap=False,
    )


def write_json(document: Any, stream: IO[str] | None = None) -> None:
    """Write one JSON document to stdout (or `stream`)."""
    out = stream or sys.stdout
    json.dump(document, out, ensure_ascii=False, indent=2)
    out.write("\n")
    out.flush()


def write_json_line(document: Any, stream: IO[str] | None = None) -> None:
    """Write one JSON object on one line (newline-delimited JSON)."""
    out = stream or sys.stdout
    out.write(json.dumps(document, ensure_ascii=False) + "\n")
    out.flush()


def _cell(value: object) -> Text:
    return Text(safe(value))


def print_parse_summary(results: Sequence[Mapping[str, Any]], console: Console) -> None:
    """Print a short table per parsed replay (the human form of `replaycli parse`)."""
    for result in results:
        title = Text(safe(result.get("source") or "<stdin>"), style="bold")
        console.print(title)
        if result["status"] == "failed":
            error = result["error"] or {}
            console.print(Text(f"  failed: {error.get('kind')} ({safe(error.get('type'))}): {safe(error.get('message'))}",
                               style="red"))
            continue
        replay = result["replay"]
        facts = [
            ("map", replay["map_name"]),
            ("played at (UTC)", replay["played_at"]),
            ("duration", f"{replay['duration_s']:.0f} s" if replay["duration_s"] is not None else None),
            ("type", f"{replay['game_type']} {replay['category'] or ''}".strip()),
            ("release", replay["release"]),
            ("depth", result["depth_reached"]),
        ]
        for label, value in facts:
            line = Text(f"  {label}: ", style="dim")
            line.append(safe(value))
            console.print(line)
        if result["status"] == "partial":
            error = result["error"] or {}
            console.print(Text(f"  partial: {error.get('stage')} failed: {safe(error.get('message'))}", style="yellow"))
        table = Table(show_edge=False, pad_edge=False, box=None)
        for column in ("team", "name", "race", "result", "mmr", "apm"):
            table.add_column(column)
        for player in result["players"]:
            if player["is_observer"]:
                continue
            name = f"[{player['clan_tag']}] {player['name']}" if player["clan_tag"] else player["name"]
            table.add_row(*map(_cell, (player["team"], name, player["play_race"], player["result"],
                                       player["mmr_meta"] or player["mmr_lobby"], player["apm_blizzard"])))
        console.print(table)
        observers = [p["name"] for p in result["players"] if p["is_observer"]]
        if observers:
            console.print(Text("  observers: " + ", ".join(safe(o) for o in observers), style="dim"))
        for message in result["chat"][:10]:
            console.print(Text(f"  [{message['real_s']:.0f}s] {safe(message['sender_name'])}: {safe(message['text'])}"))


def print_failures(rows: Iterable[Mapping[str, Any]], console: Console) -> None:
    """Print recorded failures as a table."""
    table = Table(title="Failures")
    for column in ("path", "kind", "type", "message", "release"):
        table.add_column(column)
    for row in rows:
        table.add_row(*map(_cell, (row.get("path"), row.get("error_kind"), row.get("error_type"),
                                   row.get("error_message"), row.get("release"))))
    console.print(table)
