"""The pieces of the `replaycli report` page: static SVG charts drawn by pygal, tables, escaping.

Charts are inline SVG with pygal's scripts and dated comments taken out, so the page runs no script
and two renderings of the same numbers are byte-identical. Every value from the database (player
names, map names) is untrusted: it is HTML-escaped (SVG text is escaped by pygal's XML writer), and
control characters are shown as visible symbols. pygal is an optional extra (`replaycli[report]`);
`report --json` works without it.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from replay_cli.errors import ReplayCliError

MISSING_PYGAL = "replaycli report needs pygal for its charts: pip install 'replaycli[report]'"
CHART_WIDTH, CHART_HEIGHT = 720, 340  # the SVG viewBox; CSS scales it to the column
TOP_BARS = 15  # long lists (maps, releases) chart their first bars and lump the rest into "other"
MAX_TICKS = 6  # value-axis ticks of a count chart: counts are whole, so are its ticks
MANY_LABELS = 16  # past this many x labels only every few are written, so they stay legible
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif'
COLORS = ("#3366cc", "#dc3912", "#ff9900", "#109618", "#990099", "#0099c6", "#dd4477", "#66aa00")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# pygal writes a dated comment and a configuration script into every chart: both go (determinism, no JS).
_SVG_NOISE = re.compile(r"<!--.*?-->|<script\b[^>]*>.*?</script>|<script\b[^>]*/>", re.S)


class ChartsUnavailable(ReplayCliError):
    """pygal, which draws the charts, is not installed."""


def visible(value: Any) -> str:
    """The text of a value with control characters as their visible Unicode symbols (ESC as U+241B)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: "\u2421" if m.group() == "\x7f" else chr(0x2400 + ord(m.group())), text)


def esc(value: Any) -> str:
    """An untrusted value as HTML text: escaped, control characters made visible."""
    return html.escape(visible(value), quote=True)


def number(value: Any, suffix: str = "") -> str:
    """A count or average for people: thousands separators, one decimal, a dash for none."""
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}{suffix}"
    return f"{int(value):,}{suffix}"


def _pygal() -> Any:
    try:
        import pygal  # the optional `report` extra
    except ImportError as exc:
        raise ChartsUnavailable(MISSING_PYGAL) from exc
    return pygal


def require_charts() -> None:
    """Check that the charts can be drawn. Raises ChartsUnavailable naming the extra to install."""
    _pygal()


def _style(pygal: Any) -> Any:
    return pygal.style.Style(
        background="transparent", plot_background="transparent", foreground="#222", foreground_strong="#111",
        foreground_subtle="#999", font_family=FONT, label_font_size=12, major_label_font_size=12,
        value_font_size=11, legend_font_size=13, tooltip_font_size=12, colors=COLORS, opacity="0.85",
    )


def _svg(chart: Any, chart_id: str) -> str:
    """Render a pygal chart as inline SVG: a stable id instead of a random one, no comment, no script."""
    chart.uuid = chart_id  # pygal's default is a random uuid4, which would make every report differ
    return _SVG_NOISE.sub("", chart.render(is_unicode=True))


def _config(pygal: Any, **extra: Any) -> dict[str, Any]:
    return {"style": _style(pygal), "js": [], "disable_xml_declaration": True, "width": CHART_WIDTH,
            "height": CHART_HEIGHT, "truncate_label": -1, "margin": 12, **extra}


def _figure(chart_id: str, title: str, svg: str, points: int, note: str = "") -> str:
    caption = f"<figcaption>{esc(title)}{f' <small>{esc(note)}</small>' if note else ''}</figcaption>"
    return f'<figure class="chart" data-chart="{chart_id}" data-points="{points}">{caption}{svg}</figure>'


def empty_figure(chart_id: str, title: str, why: str) -> str:
    """A chart's place when there is nothing to draw: its title and why."""
    return f'<figure class="chart empty" data-chart="{chart_id}" data-points="0"><figcaption>{esc(title)}' \
           f'</figcaption><p class="none">{esc(why)}</p></figure>'


def count_ticks(largest: float) -> list[int]:
    """Whole-number axis ticks from 0 past `largest`: at most about six, on steps of 1, 2, 5, 10, 20, 50..."""
    step = 1
    for factor in itertools.cycle((2, 2.5, 2)):
        if largest / step <= MAX_TICKS:
            break
        step = int(step * factor)
    return list(range(0, int(largest) + step, step))


def bar_chart(chart_id: str, title: str, labels: list[str], series: dict[str, list[float | None]], *,
              horizontal: bool = False, percent: bool = False, note: str = "") -> str:
    """A bar chart (one bar per label and series) as a <figure>; data-points counts the bars drawn."""
    pygal = _pygal()
    kind = pygal.HorizontalBar if horizontal else pygal.Bar
    formatter: Callable[[float], str] = (lambda v: f"{v:.1f}%") if percent else (lambda v: f"{v:,.0f}")
    many = not horizontal and len(labels) > MANY_LABELS
    chart = kind(**_config(pygal, print_values=not many, value_formatter=formatter, show_legend=len(series) > 1,
                           legend_at_bottom=True, x_label_rotation=0 if horizontal or not many else 45,
                           show_minor_x_labels=not many, x_labels_major_every=max(1, len(labels) // 12),
                           range=(0, 100) if percent else None, y_labels=None if percent else count_ticks(
                               max((v for values in series.values() for v in values if v is not None), default=1)),
                           height=max(CHART_HEIGHT, 28 * len(labels) + 80) if horizontal else CHART_HEIGHT))
    # pygal stacks horizontal bars from the bottom up; reversed, the list reads top-down as it is ranked.
    order: Callable[[list[Any]], list[Any]] = (lambda items: items[::-1]) if horizontal else list
    chart.x_labels = order([visible(label) for label in labels])
    for name, values in series.items():
        chart.add(visible(name), order(values))
    points = sum(value is not None for values in series.values() for value in values)
    return _figure(chart_id, title, _svg(chart, chart_id), points, note)


def time_chart(chart_id: str, title: str, series: dict[str, list[tuple[str, float]]], unit: str) -> str:
    """A line over time per series, one dot per game; data-points counts the dots."""
    pygal = _pygal()
    chart = pygal.DateTimeLine(**_config(pygal, show_legend=len(series) > 1, legend_at_bottom=True,
                                         x_label_rotation=30, x_value_formatter=lambda d: d.strftime("%Y-%m-%d"),
                                         value_formatter=lambda v: f"{v:,.0f} {unit}", dots_size=2.5))
    for name, points in series.items():
        chart.add(visible(name), [(datetime.fromisoformat(when), value) for when, value in points])
    count = sum(len(points) for points in series.values())
    return _figure(chart_id, title, _svg(chart, chart_id), count)


def top_with_other(rows: list[dict[str, Any]], label: str, value: str) -> tuple[list[str], list[float | None]]:
    """The first TOP_BARS rows' labels and values, and one "other (n)" bar summing the rest."""
    labels = [str(row[label]) for row in rows[:TOP_BARS]]
    values: list[float | None] = [row[value] for row in rows[:TOP_BARS]]
    rest = rows[TOP_BARS:]
    if rest:
        labels.append(f"other ({len(rest)})")
        values.append(sum(row[value] for row in rest))
    return labels, values


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], css: str = "") -> str:
    """An HTML table; cells must already be escaped (esc) or formatted numbers."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
