"""`replaycli report` as one self-contained HTML page, from the numbers report_data.py computes.

The page loads nothing: its CSS is inline, the charts are inline SVG (report_charts.py), and a
Content-Security-Policy forbids every fetch and every script, so it reads the same from a mail
attachment, an issue or a USB stick, and prints (one column, charts kept whole). The same report
data always gives the same bytes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from replay_cli.errors import ReplayCliError
from replay_cli.report_charts import (
    bar_chart,
    empty_figure,
    esc,
    number,
    require_charts,
    table,
    time_chart,
    top_with_other,
)

# Worker counts and build orders come from tracker events: StarCraft II records them from patch 2.0.8
# on, and replaycli stores them at --depth stats.
NO_TRACKER = "No {} in these games: they need replays from patch 2.0.8 on, ingested with --depth stats."
SHOWN_TOONS = 10  # the toons a player section lists; --json lists them all
PAGE_MODE = 0o644  # a page to share: temporary files are created private, the report is not
# Nothing may be fetched and no script may run, whatever a chart or a name smuggles in.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color: #222;
  margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1400px; line-height: 1.4; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; } h2 { font-size: 1.3rem; margin: 2rem 0 .75rem;
  border-bottom: 2px solid #3366cc; padding-bottom: .2rem; }
.meta { color: #555; margin: 0 0 1rem; }
.tiles { display: flex; flex-wrap: wrap; gap: .75rem; margin: 1rem 0; padding: 0; list-style: none; }
.tiles li { background: #f3f5fa; border-radius: 6px; padding: .5rem .9rem; min-width: 8rem; }
.tiles b { display: block; font-size: 1.35rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(440px, 1fr)); gap: 1.25rem; }
figure { margin: 0; padding: .5rem; border: 1px solid #e3e6ee; border-radius: 6px; break-inside: avoid; }
figcaption { font-weight: 600; margin-bottom: .25rem; } figcaption small { font-weight: 400; color: #666; }
figure svg { width: 100%; height: auto; display: block; }
.none { color: #666; font-style: italic; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .92rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e3e6ee; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.Win { color: #0a7a2f; font-weight: 600; } .Loss { color: #b3261e; font-weight: 600; }
@media print { body { padding: 0; max-width: none; } .grid { display: block; }
  figure { margin-bottom: 1rem; page-break-inside: avoid; } h2 { page-break-after: avoid; } }
"""


def _rate(value: Any) -> str:
    return number(value, "%")


def _minutes(seconds: Any) -> str:
    return "–" if seconds is None else f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def _when(played_at: str | None) -> str:
    """2025-01-31T18:04:05Z as 2025-01-31 18:04 (UTC), short enough for one table line."""
    return "–" if not played_at else played_at.replace("T", " ")[:16]


def _tiles(items: list[tuple[str, str]]) -> str:
    return '<ul class="tiles">' + "".join(f"<li>{esc(label)}<b>{value}</b></li>" for label, value in items) + "</ul>"


def _rated(rows: list[dict[str, Any]], label: str) -> tuple[list[str], list[float | None]]:
    """Labels and win rates of the rows that have one (rows with no decided game draw no bar)."""
    rated = [row for row in rows if row["win_rate"] is not None]
    return [f"{row[label]} ({row['games']})" for row in rated], [row["win_rate"] for row in rated]


def _win_rate_chart(chart_id: str, title: str, rows: list[dict[str, Any]], label: str, horizontal: bool) -> str:
    labels, rates = _rated(rows, label)
    if not labels:
        return empty_figure(chart_id, title, "No decided games.")
    return bar_chart(chart_id, title, labels, {"win rate": rates}, horizontal=horizontal, percent=True,
                     note="games in brackets; ties and undecided games left out")


def _count_chart(chart_id: str, title: str, rows: list[dict[str, Any]], label: str, value: str) -> str:
    if not rows:
        return empty_figure(chart_id, title, "None.")
    labels, values = top_with_other(rows, label, value)
    return bar_chart(chart_id, title, labels, {value: values}, horizontal=True)


def database_section(view: dict[str, Any]) -> str:
    """The whole-database part of the page."""
    totals = view["totals"]
    lengths = view["game_length"]
    length_labels = [f"{b['from_min']}–{b['to_min']}" if b["to_min"] is not None else f"{b['from_min']}+"
                     for b in lengths]
    charts = [
        bar_chart("db-months", "Games per month", [m["month"] for m in view["games_per_month"]],
                  {"games": [m["games"] for m in view["games_per_month"]]}) if view["games_per_month"] else
        empty_figure("db-months", "Games per month", "No games in this period."),
        _count_chart("db-releases", "Games per release", view["games_per_release"], "release", "games"),
        bar_chart("db-lengths", "Game length (minutes)", length_labels, {"games": [b["games"] for b in lengths]})
        if lengths else empty_figure("db-lengths", "Game length (minutes)", "No games in this period."),
        _win_rate_chart("db-matchups", "1v1 win rate of the first race", view["matchups"], "matchup", False),
        _count_chart("db-maps", "Maps", view["maps"], "map_name", "games"),
        _count_chart("db-failures", "Failed files by error kind", view["failures"], "error_kind", "files"),
        _count_chart("db-degraded", "Degraded games by reason", view["degraded"], "reason", "games"),
    ]
    tiles = _tiles([("games", number(totals["games"])), ("replays", number(totals["replays"])),
                    ("player rows", number(totals["players"])), ("toons", number(totals["toons"])),
                    ("degraded games", number(totals["degraded_games"])),
                    ("first game", esc(_when(totals["first_played_at"]))),
                    ("last game", esc(_when(totals["last_played_at"])))])
    matchups = table(["matchup", "games", "wins", "losses", "win rate"], (
        [esc(m["matchup"]), number(m["games"]), number(m["wins"]), number(m["losses"]), _rate(m["win_rate"])]
        for m in view["matchups"]), "matchups")
    files = table(["file status", "files"], ([esc(f["status"]), number(f["files"])] for f in view["files_by_status"]))
    return (f'<section id="database"><h2>The database</h2>{tiles}<div class="grid">{"".join(charts)}</div>'
            f"<h3>1v1 matchups</h3>{matchups}<h3>Files</h3>{files}</section>")


def _player_charts(player: dict[str, Any]) -> list[str]:
    mmr: dict[str, list[tuple[str, float]]] = {}
    for point in player["mmr"]:
        mmr.setdefault(f"{point['race']} {point['queue']}", []).append((point["played_at"], point["mmr"]))
    apm = {"APM": [(point["played_at"], point["apm"]) for point in player["apm"]]}
    workers = player["workers"]
    return [
        time_chart("pl-mmr", "MMR over time, per race and queue", mmr, "MMR") if mmr else
        empty_figure("pl-mmr", "MMR over time", "No game with an MMR in this period."),
        _win_rate_chart("pl-matchups", "Win rate by 1v1 matchup", player["matchups"], "matchup", False),
        _win_rate_chart("pl-maps", "Win rate by map", player["maps"][:20], "map_name", True),
        _win_rate_chart("pl-lengths", "Win rate by game length (minutes)", player["lengths"], "length", False),
        time_chart("pl-apm", "APM (Blizzard's) over time", apm, "APM") if player["apm"] else
        empty_figure("pl-apm", "APM (Blizzard's) over time", "No game with Blizzard's APM in this period."),
        bar_chart("pl-workers", "Average workers at 6, 8 and 10 minutes", [f"{w['minute']} min" for w in workers],
                  {"you": [w["player"] for w in workers], "opponents": [w["opponents"] for w in workers]})
        if any(w["player"] is not None or w["opponents"] is not None for w in workers) else
        empty_figure("pl-workers", "Average workers at 6, 8 and 10 minutes",
                     NO_TRACKER.format("worker counts")),
        _win_rate_chart("pl-openings", "Win rate of the most played openings", player["openings"], "opening", True)
        if player["openings"] else
        empty_figure("pl-openings", "Openings", NO_TRACKER.format("build orders")),
    ]


def _recent_table(games: list[dict[str, Any]]) -> str:
    rows = ([esc(_when(g["played_at"])), esc(g["map_name"]), esc(g["game_type"]), esc(g["name"]), esc(g["race"]),
             f'<span class="{esc(g["result"])}">{esc(g["result"] or "–")}</span>',
             esc(", ".join(g["opponents"])), _minutes(g["duration_s"]), number(g["mmr"]), number(g["apm"])]
            for g in games)
    return table(["played", "map", "type", "as", "race", "result", "opponents", "length", "MMR", "APM"], rows,
                 "recent")


def player_section(player: dict[str, Any]) -> str:
    """The part of the page about one person (the --player values merged)."""
    totals = player["totals"]
    toons = ", ".join(f"{esc(' / '.join(t['names']))} ({esc(t['toon_handle'] or 'no toon')}, "
                      f"{number(t['games'])} games)" for t in player["toons"][:SHOWN_TOONS])
    hidden = len(player["toons"]) - SHOWN_TOONS
    if hidden > 0:  # a common name is many people: say so rather than list them all
        toons += (f" and {number(hidden)} more. A name shared by this many accounts is likely several people: "
                  "give toon handles with --player to pick one.")
    tiles = _tiles([("games", number(totals["games"])), ("wins", number(totals["wins"])),
                    ("losses", number(totals["losses"])), ("win rate", _rate(totals["win_rate"]))])
    openings = table(["race", "opening", "games", "wins", "losses", "win rate"], (
        [esc(o["race"]), esc(o["opening"]), number(o["games"]), number(o["wins"]), number(o["losses"]),
         _rate(o["win_rate"])] for o in player["openings"]), "openings")
    title = " + ".join(player["asked"])
    return (f'<section id="player"><h2>Player: <span class="who">{esc(title)}</span></h2>'
            f'<p class="meta">Toons: {toons or "none in this period"}</p>{tiles}'
            f'<div class="grid">{"".join(_player_charts(player))}</div>'
            f"{f'<h3>Openings</h3>{openings}' if player['openings'] else ''}<h3>Recent games</h3>{_recent_table(player['recent'])}</section>")


def render_report(data: dict[str, Any]) -> str:
    """The whole page for report data from report_data.build_report. Raises ChartsUnavailable."""
    require_charts()
    period = data["period"]
    scope = f"games from {esc(period['since'] or 'the first')} to {esc(period['until'] or 'the last')}"
    who = f" — {esc(' + '.join(data['player']['asked']))}" if data["player"] else ""
    player = player_section(data["player"]) if data["player"] else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>replaycli report{who}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>StarCraft II replays{who}</h1><p class=\"meta\">{esc(data['db'])}: {scope}. "
        "Copies of one game count once. Generated by replaycli "
        f"{esc(data['replaycli'])} at {esc(data['generated_at'])}.</p></header>"
        f"<main>{player}{database_section(data['database'])}</main></body></html>\n"
    )


def write_page(path: str | Path, page: str) -> None:
    """Write the page atomically: a reader never sees half a report. Raises ReplayCliError."""
    target = Path(path)
    try:
        handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.",
                                             suffix=".tmp", delete=False)
    except OSError as exc:
        raise ReplayCliError(f"cannot write {target}: {exc.strerror or exc}") from exc
    try:
        with handle:
            handle.write(page)
        os.chmod(handle.name, PAGE_MODE)
        os.replace(handle.name, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(handle.name)
        raise ReplayCliError(f"cannot write {target}: {exc.strerror or exc}") from exc
