"""Everything humans see: rich tables, progress and summaries on stderr; JSON emitters for stdout.

The only module that imports rich. Replay content is untrusted: names, chat and map names can
hold rich markup, ANSI escape sequences or other control characters, so every piece of it goes
through `safe()` and into `Text` objects, never into a markup string.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from replay_cli.poolwatch import REASONS as POOL_REASONS

# Control (Cc) and format (Cf: bidi overrides, zero-width) characters can move the cursor,
# recolour the terminal or reorder what is shown; they are made visible instead.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf"})
MAX_SHOWN_CHARS = 120
# The ingest summary line opens with the run's outcome in words that no file status uses:
# "partial: 12 ok, 1 failed" would read as if the run had stored partial files.
RUN_OUTCOMES = {
    "success": "Ingest complete",
    "partial": "Ingest complete with failures",
    "error": "Ingest stopped",
    "interrupted": "Ingest interrupted",
}


def safe(value: object, limit: int = MAX_SHOWN_CHARS) -> str:
    """Return untrusted text fit for a terminal: control characters escaped, length capped."""
    text = "".join(_visible(char) for char in ("" if value is None else str(value)))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(char: str) -> str:
    """Return char, or its escape (\\x1b, \\u202e) when it is a control or format character."""
    category = unicodedata.category(char)
    if category not in _UNSAFE_CATEGORIES:
        return char
    return f"\\x{ord(char):02x}" if category == "Cc" and ord(char) < 0x100 else f"\\u{ord(char):04x}"


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


def print_degraded(report: Mapping[str, Any], console: Console) -> None:
    """Print `replaycli failures --degraded`: counts by reason and release, then the replays."""
    groups = report.get("groups") or []
    if not groups:
        console.print(Text("No degraded replays.", style="green"))
        return
    table = Table(title="degraded replays by reason and release", title_justify="left")
    for column in ("reason", "release", "replays", "example"):
        table.add_column(column)
    for group in groups:
        table.add_row(*(_cell(group[c]) for c in ("reason", "release", "replays", "example")))
    console.print(table)
    replays = Table(title="degraded replays", title_justify="left")
    for column in ("path", "release", "reasons", "parser"):
        replays.add_column(column)
    for row in report.get("replays") or []:
        replays.add_row(_cell(row["path"]), _cell(row["release"]), _cell(", ".join(row["reasons"])),
                        _cell(row["parser_version"]))
    console.print(replays)


def print_failures(rows: Iterable[Mapping[str, Any]], console: Console) -> None:
    """Print recorded failures as a table."""
    table = Table(title="Failures")
    for column in ("path", "kind", "type", "message", "release"):
        table.add_column(column)
    for row in rows:
        table.add_row(*map(_cell, (row.get("path"), row.get("error_kind"), row.get("error_type"),
                                   row.get("error_message"), row.get("release"))))
    console.print(table)


class IngestProgress:
    """Live progress for `ingest` on stderr: files done/total, rate, ETA, counts by outcome.

    Shows nothing unless stderr is a terminal (CI logs stay clean) and the run is not quiet.
    """

    def __init__(self, console: Console, *, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.enabled = enabled and console.is_terminal
        self._counts: dict[str, int] = {"ok": 0, "skipped": 0, "duplicate": 0, "partial": 0, "failed": 0,
                                        "filtered": 0}
        self._progress = Progress(
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counts]}"),
            console=console,
            transient=True,
            disable=not self.enabled,
        )
        self._task = self._progress.add_task("ingest", total=None, rate="", counts="")
        self._started = 0.0

    def __enter__(self) -> IngestProgress:
        self._started = time.monotonic()
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def discovered(self, total: int | None) -> None:
        self._progress.update(self._task, total=total)

    def skipped(self, count: int) -> None:
        self._counts["skipped"] += count
        self._progress.advance(self._task, count)

    def finished(self, result: Mapping[str, Any]) -> None:
        self._progress.advance(self._task, 1)

    def stored(self, counts: Any) -> None:
        for key in ("ok", "duplicate", "partial", "failed", "filtered"):
            self._counts[key] += getattr(counts, key)

    def refresh(self) -> None:
        if not self.enabled:
            return
        done = self._progress.tasks[0].completed
        elapsed = max(time.monotonic() - self._started, 1e-6)
        shown = " ".join(f"{key} {value}" for key, value in self._counts.items() if value)
        self._progress.update(self._task, rate=f"{done / elapsed:.1f}/s", counts=shown)


def print_ingest_summary(summary: Mapping[str, Any], groups: Mapping[tuple[str, str, str], int],
                         console: Console) -> None:
    """Print the end-of-run summary: counts, speed, failures grouped by kind."""
    counts = summary["counts"]
    line = Text(f"{RUN_OUTCOMES.get(summary['status'], 'Ingest ' + summary['status'])}: ", style="bold")
    line.append(", ".join(f"{counts[k]} {k}" for k in counts if counts[k] or k in ("ok", "failed")))
    line.append(f" in {summary['wall_seconds']:.1f} s ({summary['files_per_second']} files/s)")
    console.print(line)
    if groups:
        table = Table(title="Failures by kind and build", title_justify="left")
        for column in ("kind", "type", "build", "files", "examples"):
            table.add_column(column)
        for (kind, error_type, release), count in sorted(groups.items(), key=lambda item: -item[1]):
            examples = [f["path"] for f in summary["failures"]
                        if (f["kind"], f["type"], f.get("release") or "unknown") == (kind, error_type, release)][:3]
            table.add_row(*map(_cell, (kind, error_type, release, count)),
                          Text("\n".join(safe(e) for e in examples)))
        console.print(table)
        console.print(Text("See them all with: replaycli failures", style="dim"))
    if summary["status"] == "interrupted":
        console.print(Text("Interrupted: finished files are committed; re-run to continue.", style="yellow"))
    console.print(Text(f"database: {safe(summary['db'])} (run {summary['run_id']})", style="dim"))


def print_stats(summary: Mapping[str, Any], console: Console) -> None:
    """Print `replaycli stats`: replays by release, type and map; players; recent runs."""
    console.print(Text(f"{summary.get('replays', 0)} replays, {summary.get('players', 0)} player rows, "
                       f"{summary.get('distinct_toons', 0)} distinct accounts", style="bold"))
    sections = [("by_release", "release"), ("by_game_type", "game type"), ("top_maps", "map"),
                ("files_by_status", "file status"), ("degraded_by_reason", "degraded replays by reason"),
                ("cost_by_depth", "parse time and peak memory by depth"),
                ("cost_by_release", "parse time and peak memory by release"),
                ("heaviest_files", "heaviest files (peak memory)")]
    for key, label in sections:
        rows = summary.get(key) or []
        if isinstance(rows, Mapping):
            rows = [{label: name, "files": count} for name, count in rows.items()]
        if not rows:
            continue
        table = Table(title=label, title_justify="left")
        columns = list(rows[0].keys())
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row[c]) for c in columns))
        console.print(table)
    runs = [_run_row(run) for run in summary.get("last_runs") or []]
    if runs:
        table = Table(title="recent ingest runs", title_justify="left")
        columns = [c for c in RUN_COLUMNS if c in runs[0]]
        for column in columns:
            table.add_column(column)
        for run in runs:
            table.add_row(*(_cell(run[c]) for c in columns))
        console.print(table)


RUN_COLUMNS = ("id", "started_at", "wall_seconds", "parsed", "skipped", "failed", "exit_code", "workers_started",
               "workers_replaced", "max_worker_mib")


def _run_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """A runs row for the table: the pool's replacements in one cell, its largest worker in MiB."""
    row = dict(run)
    replaced = [f"{reason} {run[f'replaced_{reason}']}" for reason in POOL_REASONS if run.get(f"replaced_{reason}")]
    row["workers_replaced"] = ", ".join(replaced) or ("0" if run.get("workers_started") else None)
    peak = run.get("max_worker_rss_bytes")
    row["max_worker_mib"] = round(peak / 2**20, 1) if isinstance(peak, int) else None
    return row


def error_text(message: str) -> Text:
    """Return a one-line 'Error: ...' for stderr."""
    return Text(f"Error: {safe(message, limit=500)}", style="red")


def make_log_handler(level: int) -> logging.Handler:
    """Return a logging handler that writes safe lines to stderr, above any progress bar."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)

    class _SafeFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return safe(super().format(record), limit=1000)

    handler.setFormatter(_SafeFormatter("%(levelname)s %(message)s"))
    return handler


class WatchDisplay:
    """What `ingest --watch` shows on stderr: a live line on a terminal, one line per run elsewhere.

    The line says how many games played today were stored and which was last (map, players, result);
    while files are ingested it adds how far that got. A ProgressSink for each run, plus committed()
    for each committed file (StoredFile.as_json()) and run_done() at the end of each run.
    """

    def __init__(self, console: Console, *, folders: int, quiet: bool) -> None:
        from rich.live import Live

        self.console, self.quiet, self.folders = console, quiet, folders
        self.live_enabled = not quiet and console.is_terminal
        self._live = Live(Text(""), console=console, transient=True, auto_refresh=False)
        self._today: set[str] = set()  # sha256 of games played today, so copies count once
        self._day = time.strftime("%Y-%m-%d")  # the local day _today is about: it starts empty at midnight
        self._last = ""
        self._total: int | None = 0
        self._done = 0

    def __enter__(self) -> WatchDisplay:
        if self.live_enabled:
            self._live.start()
            self.refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live_enabled:
            self._live.stop()

    def discovered(self, total: int | None) -> None:
        self._total, self._done = total, 0

    def skipped(self, count: int) -> None:
        self._done += count

    def finished(self, result: Mapping[str, Any]) -> None:
        self._done += 1

    def stored(self, counts: Any) -> None:
        pass

    def committed(self, stored: Mapping[str, Any]) -> None:
        if stored["status"] not in ("ok", "partial"):
            return
        self._last = describe_game(stored)
        played, today = stored.get("played_at"), time.strftime("%Y-%m-%d")
        if today != self._day:
            self._today, self._day = set(), today
        if played and _local_date(played) == today:
            self._today.add(stored.get("sha256") or stored["path"])

    def run_done(self, counts: Mapping[str, int]) -> None:
        self._total = self._done = 0
        if not self.live_enabled and not self.quiet:
            done = ", ".join(f"{counts[k]} {k}" for k in ("ok", "partial", "duplicate", "failed", "skipped")
                             if counts.get(k))
            self.console.print(Text(f"{self._status()} · this run: {done or 'nothing new'}"), soft_wrap=True)
        self.refresh()

    def refresh(self) -> None:
        if not self.live_enabled:
            return
        line = self._status()
        if self._total:
            line += f" · ingesting {self._done}/{self._total}"
        self._live.update(Text(line, no_wrap=True, overflow="ellipsis"), refresh=True)  # one line, never wrapped

    def _status(self) -> str:
        plural = "" if self.folders == 1 else "s"
        line = f"watching {self.folders} folder{plural} · {len(self._today)} games today"
        return line + (f" · last: {self._last}" if self._last else "")


def describe_game(stored: Mapping[str, Any]) -> str:
    """One game in a line: map, then each player with race and result (safe for a terminal)."""
    players = ", ".join(
        f"{safe(p.get('name'), 40)} ({safe(p.get('race') or '?')}{', ' + safe(p['result']) if p.get('result') else ''})"
        for p in stored.get("players") or ())
    return f"{safe(stored.get('map_name') or 'unknown map', 60)}: {players or 'no players'}"


def _local_date(played_at: str) -> str:
    """The local calendar date of a stored UTC ISO-8601 time."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(played_at)
    except ValueError:
        return ""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone().strftime("%Y-%m-%d")
