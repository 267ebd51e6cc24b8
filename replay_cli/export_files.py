"""The file formats of `replaycli export`: Parquet (through pyarrow), CSV and JSON Lines.

Each writer takes batches of row tuples and knows its columns' kinds. pyarrow is an optional extra
(`replaycli[parquet]`), imported only when a Parquet file is opened, so CSV and JSON Lines work without it.

Values: JSON Lines and Parquet keep text verbatim. CSV writes every text cell quoted and NULL as an empty
unquoted cell, and defuses spreadsheet formulas (see csv_cell) in a way that can be undone exactly.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from replay_cli.errors import ReplayCliError

FORMATS: dict[str, str] = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}  # format -> file extension
PARQUET_EXTRA = "replaycli[parquet]"
ROW_GROUP_ROWS = 65_536  # rows per Parquet row group: large enough for column statistics to prune well
# A spreadsheet runs a cell starting with one of these as a formula (=HYPERLINK(...), +cmd|...). A leading
# apostrophe makes it text; apostrophe itself is in the set so that stripping one leading ' always undoes it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")
CSV_NEWLINE = "\r\n"  # RFC 4180 line ending


class ExportError(ReplayCliError):
    """The export could not proceed (missing library, unreadable database, unwritable folder)."""


@dataclass(frozen=True)
class Column:
    """One exported column: its name, kind (int, float, bool, text, timestamp, blob) and nullability."""

    name: str
    kind: str
    nullable: bool = True


class TableWriter(Protocol):
    """Writes one file of one table, a batch of row tuples at a time."""

    def write(self, rows: list[tuple[Any, ...]]) -> None: ...

    def close(self) -> None: ...


def require_format(fmt: str) -> None:
    """Check that the format's library is importable. Raises ExportError naming the extra to install."""
    if fmt != "parquet":
        return
    try:
        import pyarrow.parquet  # noqa: F401  (only checking that it imports)
    except ImportError as exc:
        raise ExportError(f"--format parquet needs pyarrow: pip install '{PARQUET_EXTRA}'") from exc


def open_writer(fmt: str, path: Path, columns: tuple[Column, ...], metadata: dict[str, str]) -> TableWriter:
    """Create the file at path (and its folder) and return a writer for it. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        return ParquetWriter(path, columns, metadata)
    if fmt == "csv":
        return CsvWriter(path, columns)
    return JsonLinesWriter(path, columns)


def _csv_number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):  # bool is an int: True is written 1, as SQLite stores it
        return str(int(value)) if isinstance(value, bool) else str(value)
    return _csv_text(value)  # SQLite lets any column hold text: still quoted and defused


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    text = value.hex() if isinstance(value, bytes) else str(value)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return '"' + text.replace('"', '""') + '"'


def csv_cell(value: Any, kind: str) -> str:
    """Return one CSV cell: NULL empty, numbers bare, text quoted and defused.

    Text starting with a FORMULA_STARTS character gets one leading apostrophe, so a spreadsheet shows
    it as text; the source value is that cell without its first apostrophe, for any cell that starts
    with one (an apostrophe at the start is itself escaped).
    """
    return _csv_number(value) if kind in ("int", "float", "bool") else _csv_text(value)


class CsvWriter:
    """CSV with a header row; UTF-8, RFC 4180 quoting and line endings."""

    def __init__(self, path: Path, columns: tuple[Column, ...]) -> None:
        # One formatter per column, chosen once: the per-cell cost decides the export's speed.
        self._cells = [_csv_number if c.kind in ("int", "float", "bool") else _csv_text for c in columns]
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="")
        self._file.write(",".join(_csv_text(column.name) for column in columns) + CSV_NEWLINE)

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        cells = self._cells
        self._file.writelines(
            ",".join([cell(value) for cell, value in zip(cells, row)]) + CSV_NEWLINE for row in rows
        )

    def close(self) -> None:
        self._file.close()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):  # sqlite-utils' convention for BLOBs in JSON
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


class JsonLinesWriter:
    """One JSON object per row, keys in column order; values exactly as the database holds them.

    ASCII-escaped like `sqlite-utils rows --nl`: hostile names (control and bidi characters) stay
    inert in a terminal, and `json.loads` gives back every value unchanged.
    """

    def __init__(self, path: Path, columns: tuple[Column, ...]) -> None:
        self._names = [column.name for column in columns]
        self._file: IO[str] = path.open("w", encoding="utf-8", newline="\n")

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        names = self._names
        self._file.writelines(json.dumps(dict(zip(names, row)), default=_json_default) + "\n" for row in rows)

    def close(self) -> None:
        self._file.close()


def _timestamp(value: Any) -> datetime | None:
    """Parse a stored ISO-8601 time; a time without an offset is UTC, as everything the store writes."""
    if value is None:
        return None
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class ParquetWriter:
    """Parquet with the columns' real types; rows buffered into row groups of ROW_GROUP_ROWS."""

    def __init__(self, path: Path, columns: tuple[Column, ...], metadata: dict[str, str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._columns = columns
        types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "text": pa.string(),
                 "timestamp": pa.timestamp("us", tz="UTC"), "blob": pa.binary()}
        fields = [pa.field(c.name, types[c.kind], nullable=c.nullable) for c in columns]
        self._schema = pa.schema(fields, metadata=metadata)
        self._writer = pq.ParquetWriter(str(path), self._schema)
        self._pending: list[Any] = []
        self._pending_rows = 0

    def _array(self, values: tuple[Any, ...], column: Column, arrow_type: Any) -> Any:
        if column.kind == "bool":
            values = tuple(None if v is None else bool(v) for v in values)
        elif column.kind == "timestamp":
            values = tuple(map(_timestamp, values))
        elif column.kind == "text":
            values = tuple(v if v is None or isinstance(v, str) else str(v) for v in values)
        try:
            return self._pa.array(values, type=arrow_type)
        except (self._pa.ArrowInvalid, self._pa.ArrowTypeError, ValueError) as exc:
            raise ExportError(f"column {column.name} holds a value that is not {column.kind}: {exc}") from exc

    def write(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        by_column = list(zip(*rows))
        arrays = [self._array(values, column, self._schema.field(i).type)
                  for i, (values, column) in enumerate(zip(by_column, self._columns))]
        self._pending.append(self._pa.RecordBatch.from_arrays(arrays, schema=self._schema))
        self._pending_rows += len(rows)
        if self._pending_rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = self._pa.Table.from_batches(self._pending, schema=self._schema)
            self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._writer.close()
