"""Make every value of a parse result fit the SQLite column it goes to, by construction.

A replay is untrusted input: a crafted `replay.gamemetadata.json` can say `"Duration": 1e308` or
carry an integer above 2**63, and bit-packed members decode to integers of any size. SQLite holds
64-bit integers, finite floats and valid UTF-8 text; a value outside that would make the writer
raise and roll back every replay of its batch. Here each value is checked against the type its
field declares in result.py: a value that does not fit becomes None (or is shortened, for text)
and is reported, with the source value kept as text, so the result can say what it lost.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from replay_cli.result import BuildOrderRow, ChatRow, PlayerRow, PlayerStatsRow, ReplayRow

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Longer than any player name, map title or chat line the game lets anyone type.
MAX_TEXT_CHARS = 4096
FLOAT_EXACT_INT = 2**53  # an integer a float column holds exactly
MAX_RAW_CHARS = 100  # a source value kept as evidence is cut to this length
MAX_RAW_VALUES = 50  # evidence kept per result; the count of problems is always complete
# Fields without which a child row cannot be stored at all (primary-key parts).
ROW_KEYS: dict[str, tuple[str, ...]] = {"player_stats": ("pid", "game_loop")}

REASON_OUT_OF_RANGE = "value_out_of_range"
REASON_TEXT_CUT = "text_truncated"
REASON_ROW_DROPPED = "row_dropped"


@dataclass
class Problems:
    """What bounding changed in one result: stable reasons and the source values it replaced."""

    reasons: set[str] = field(default_factory=set)
    raw_values: dict[str, str] = field(default_factory=dict)
    count: int = 0

    def note(self, reason: str, where: str, value: Any) -> None:
        self.reasons.add(reason)
        self.count += 1
        if len(self.raw_values) < MAX_RAW_VALUES:
            self.raw_values[where] = _raw_text(value)


def _raw_text(value: Any) -> str:
    """The source value as text, short enough to keep: huge integers in scientific notation."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        try:
            return f"{float(value):.6e}"
        except OverflowError:  # beyond the float range: the order of magnitude is what is left to say
            # bit_length, not str(): Python refuses to print integers of more than 4,300 digits.
            return f"{'-' if value < 0 else ''}~2^{value.bit_length()}"
    return repr(value)[:MAX_RAW_CHARS] if not isinstance(value, str) else value[:MAX_RAW_CHARS]


def _kind_of(annotation: Any) -> str:
    """Reduce `int | None`-style annotations to the one storage kind: int, float, str or bool."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for kind in (bool, int, float, str):
        if kind in args:
            return kind.__name__
    raise TypeError(f"no storage kind for {annotation!r}")


def _field_kinds(row_type: Any) -> dict[str, str]:
    return {name: _kind_of(hint) for name, hint in typing.get_type_hints(row_type).items()}


FIELD_KINDS: dict[str, dict[str, str]] = {
    "replay": _field_kinds(ReplayRow),
    "players": _field_kinds(PlayerRow),
    "chat": _field_kinds(ChatRow),
    "build_order": _field_kinds(BuildOrderRow),
    "player_stats": _field_kinds(PlayerStatsRow),
}


def _fit_int(value: Any) -> tuple[Any, bool]:
    if isinstance(value, int):  # bool included: stored as 0/1
        return (value, True) if INT64_MIN <= value <= INT64_MAX else (None, False)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and INT64_MIN <= value <= INT64_MAX:
        return int(value), True
    return None, False


def _fit_float(value: Any) -> tuple[Any, bool]:
    if not isinstance(value, (int, float)):
        return None, False
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None, False
    return (number, True) if math.isfinite(number) else (None, False)


def _fit_bool(value: Any) -> tuple[Any, bool]:
    if isinstance(value, bool):
        return value, True
    return (bool(value), True) if value in (0, 1) else (None, False)


def _fit_str(value: Any, where: str, problems: Problems) -> Any:
    if not isinstance(value, str):
        problems.note(REASON_OUT_OF_RANGE, where, value)
        return None
    if len(value) > MAX_TEXT_CHARS:
        problems.note(REASON_TEXT_CUT, where, value)
        value = value[:MAX_TEXT_CHARS]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: SQLite stores UTF-8 only
        problems.note(REASON_OUT_OF_RANGE, where, value)
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


_FITTERS = {"int": _fit_int, "float": _fit_float, "bool": _fit_bool}


def fit_row(row: dict[str, Any], kinds: dict[str, str], where: str, problems: Problems) -> None:
    """Replace, in place, every value of `row` that its column cannot hold."""
    for name, kind in kinds.items():
        value = row.get(name)
        if value is None:
            continue
        if kind == "str":
            row[name] = _fit_str(value, f"{where}.{name}", problems)
            continue
        fitted, fits = _FITTERS[kind](value)
        if not fits:
            problems.note(REASON_OUT_OF_RANGE, f"{where}.{name}", value)
        row[name] = fitted


def _row_fits_as_is(row: dict[str, Any], kinds: dict[str, str]) -> bool:
    """The quick check that passes almost every row; any doubt sends the row to fit_row's careful path.

    One loop with the common cases inlined: a parse at stats depth checks thousands of rows.
    """
    for name, kind in kinds.items():
        value = row.get(name)
        if value is None:
            continue
        value_type = type(value)
        if value_type is int:
            if kind == "int" and INT64_MIN <= value <= INT64_MAX:
                continue
            if kind == "float" and -FLOAT_EXACT_INT <= value <= FLOAT_EXACT_INT:
                continue
        elif value_type is float:
            if kind == "float" and value - value == 0.0:  # false for inf and nan
                continue
        elif value_type is str:
            if kind == "str" and len(value) <= MAX_TEXT_CHARS and value.isascii():
                continue
        elif value_type is bool and kind in ("bool", "int"):
            continue
        return False
    return True


def fit_result_rows(rows: dict[str, Any]) -> Problems:
    """Bound every row of a result (replay, players, chat, build_order, player_stats) in place."""
    problems = Problems()
    if rows.get("replay") is not None:
        fit_row(rows["replay"], FIELD_KINDS["replay"], "replay", problems)
    for table in ("players", "chat", "build_order", "player_stats"):
        kinds, keys, kept = FIELD_KINDS[table], ROW_KEYS.get(table, ()), []
        for index, row in enumerate(rows.get(table) or []):
            if not _row_fits_as_is(row, kinds):
                fit_row(row, kinds, f"{table}[{index}]", problems)
            if any(row.get(key) is None for key in keys):
                problems.note(REASON_ROW_DROPPED, f"{table}[{index}]", {key: row.get(key) for key in keys})
                continue
            kept.append(row)
        rows[table] = kept
    return problems
