"""`replaycli export`: stream tables and views of a replay database to Parquet, CSV or JSON Lines.

The schema is read as data: column names, types and keys come from the live database (`PRAGMA
table_info`) with the column dicts of migrations.py deciding booleans, so a column added by a later
migration is exported without touching this module. Every table is read inside one read transaction
(one consistent snapshot), in key order, a batch at a time, so memory stays flat and two exports of
the same database are byte-identical. File formats live in export_files.py; pseudonyms in pseudonym.py.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from replay_cli import __version__
from replay_cli.errors import ReplayCliError, StoreError
from replay_cli.export_files import FORMATS, Column, ExportError, TableWriter, open_writer, require_format
from replay_cli.migrations import (
    CHILD_TABLES,
    FILE_COLUMNS,
    MIGRATIONS_TABLE,
    REPLAY_COLUMNS,
    REPLAY_EXTRA_COLUMNS,
    RUN_COLUMNS,
)
from replay_cli.pseudonym import CHAT_POLICIES, IDENTITY_COLUMNS, Pseudonymizer, column_sql, register
from replay_cli.result import SCHEMA_VERSION
from replay_cli.store import Store

# What analysts and dataset publishers want by default: the data tables and the views over them.
# runs (command lines, input paths) and v_failures (a subset of files) are exported only when named.
DEFAULT_TABLES: tuple[str, ...] = ("replays", *CHILD_TABLES, "files", "v_1v1", "v_player_games", "matches")
# Hive partition key -> SQL on the replay row `r`; months are UTC, from the ISO-8601 played_at.
PARTITIONS: dict[str, str] = {"release": "{r}.release", "month": "substr({r}.played_at, 1, 7)"}
FETCH_ROWS = 8192  # rows per fetchmany(): a few MiB of Python objects for the widest table
MANIFEST = "manifest.json"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"  # the folder Hive, Spark and pyarrow read back as a NULL key
SAFE_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # table names become folder names: no separators, no dots
_ALL_COLUMN_DICTS = (REPLAY_COLUMNS, REPLAY_EXTRA_COLUMNS, FILE_COLUMNS, RUN_COLUMNS,
                     *(columns for columns, _ in CHILD_TABLES.values()))
# SQLite stores booleans as 0/1 integers; the column dicts say which integers are booleans.
BOOL_COLUMNS = frozenset(name for columns in _ALL_COLUMN_DICTS for name, kind in columns.items() if kind is bool)
# Columns that link a table to its replay: (column in the table, column of replays it holds).
LINKS = (("replay_id", "id"), ("replay_sha256", "sha256"), ("sha256", "sha256"), ("match_key", "match_key"))
# Links that name one replay, so its partition value applies (a match_key can group several).
REPLAY_KEYS = ("id", "sha256")

ProgressCallback = Callable[[str, int, int], None]  # table, rows written so far, rows in the table


class ExportUsageError(ReplayCliError):
    """The options ask for something the export cannot or must not do (a usage error, exit 2)."""


@dataclass(frozen=True)
class ExportOptions:
    """What `replaycli export` was asked for; key is the pseudonym key, None for no pseudonyms."""

    out_dir: Path
    fmt: str
    tables: tuple[str, ...] | None = None
    where: str | None = None
    partition_by: str | None = None
    key: bytes | None = None
    chat: str | None = None
    overwrite: bool = False

    @property
    def chat_policy(self) -> str:
        """Chat text: kept by default, redacted by default when pseudonymising."""
        return self.chat or ("redact" if self.key is not None else "keep")


@dataclass(frozen=True)
class TablePlan:
    """One table's export: its output columns and the one SELECT that yields them in order."""

    name: str
    columns: tuple[Column, ...]
    sql: str
    count_sql: str
    partition_key: str | None  # when set, the SELECT's first column is the partition value


@dataclass
class TableResult:
    """How many rows of one table were written, into which files (relative to the output folder)."""

    name: str
    rows: int = 0
    files: list[str] = field(default_factory=list)


def quoted(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _declared_kind(declared: str) -> str | None:
    """Map a declared SQLite type to a column kind by SQLite's own affinity rules; None: undeclared."""
    upper = declared.upper()
    if "INT" in upper:
        return "int"
    if any(word in upper for word in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return "float"
    if "BLOB" in upper:
        return "blob"
    return None  # a view's computed column (count(*), coalesce(...)) or NUMERIC: look at the values


def _probed_kind(conn: sqlite3.Connection, table: str, column: str) -> str:
    """Decide an undeclared column's kind from the storage classes of all its values."""
    found = {kind for (kind,) in conn.execute(f"SELECT DISTINCT typeof({quoted(column)}) FROM {quoted(table)}")}
    found.discard("null")
    if found == {"integer"}:
        return "int"
    if found and found <= {"integer", "real"}:
        return "float"
    return "blob" if found == {"blob"} else "text"


def _column_kind(conn: sqlite3.Connection, table: str, name: str, declared: str) -> str:
    kind = _declared_kind(declared) or _probed_kind(conn, table, name)
    if kind == "int" and name in BOOL_COLUMNS:
        return "bool"
    if kind == "text" and name.endswith("_at"):  # played_at, stored_at, ...: ISO-8601 UTC by convention
        return "timestamp"
    return kind


def _table_info(conn: sqlite3.Connection, table: str) -> list[tuple[str, str, bool, int]]:
    """Return (name, declared type, not null, position in the primary key or 0) per column."""
    return [(name, declared, bool(notnull), pk)
            for _cid, name, declared, notnull, _default, pk in conn.execute(f"PRAGMA table_info({quoted(table)})")]


def exportable_tables(conn: sqlite3.Connection) -> list[str]:
    """Return the tables and views a user may name: everything but SQLite's and replaycli's own bookkeeping."""
    names = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
    return [n for n in names if not n.startswith(("sqlite_", MIGRATIONS_TABLE)) and SAFE_NAME.match(n)]


def _link(columns: list[str]) -> tuple[str, str] | None:
    return next(((mine, theirs) for mine, theirs in LINKS if mine in columns), None)


def _order_positions(info: list[tuple[str, str, bool, int]], exprs: list[str], offset: int) -> list[int]:
    """Order by the primary key when it is exported unchanged, else by every output column.

    Sorting by all columns gives views (which have no key) and pseudonymised keys a total order too:
    rows that tie on everything are identical, so their order cannot change the bytes written.
    """
    key = sorted((pk, i) for i, (_, _, _, pk) in enumerate(info) if pk)
    if key and all(exprs[i] == f"t.{quoted(info[i][0])}" for _, i in key):
        return [offset + i + 1 for _, i in key]
    return [offset + i + 1 for i in range(len(exprs))]


def plan_table(conn: sqlite3.Connection, table: str, options: ExportOptions) -> TablePlan:
    """Build the SELECT (columns, pseudonyms, filter, partition, order) of one table or view."""
    info = _table_info(conn, table)
    names = [name for name, *_ in info]
    link = _link(names)
    partition = options.partition_by if link is not None and link[1] in REPLAY_KEYS else None
    if partition is not None:  # Hive convention: the partition key lives in the path, not in the rows
        info = [column for column in info if column[0] != partition]
    exprs = [column_sql(table, name, names, "t", options.chat_policy, pseudonymise=options.key is not None)
             for name, *_ in info]
    columns = tuple(Column(name, _column_kind(conn, table, name, declared), nullable=not notnull or expr == "NULL")
                    for (name, declared, notnull, _pk), expr in zip(info, exprs))
    source = f"{quoted(table)} AS t"
    selected = ", ".join(f"{expr} AS {quoted(name)}" for expr, (name, *_) in zip(exprs, info))
    if partition is not None and link is not None:
        if table != "replays":
            source += f" LEFT JOIN replays AS r ON r.{quoted(link[1])} = t.{quoted(link[0])}"
        value = PARTITIONS[partition].format(r="t" if table == "replays" else "r")
        selected = f"{value} AS __partition, {selected}"
    where = ""
    if options.where is not None:
        if link is None:
            raise ExportUsageError(f"--where cannot filter {table}: it has no column linking it to replays")
        where = f" WHERE t.{quoted(link[0])} IN (SELECT {quoted(link[1])} FROM replays WHERE ({options.where}))"
    offset = 1 if partition is not None else 0
    order = ", ".join(str(p) for p in ([1] if partition else []) + _order_positions(info, exprs, offset))
    return TablePlan(table, columns, f"SELECT {selected} FROM {source}{where} ORDER BY {order}",
                     f"SELECT count(*) FROM {quoted(table)} AS t{where}", partition)


def _partition_folder(key: str, value: Any) -> str:
    """Return a Hive folder name; values are percent-encoded as pyarrow and Spark decode them."""
    if value is None:
        return f"{key}={HIVE_NULL}"
    return f"{key}={quote(str(value), safe='')}"


def _batches(cursor: sqlite3.Cursor) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(FETCH_ROWS):
        yield rows


def _runs(rows: list[tuple[Any, ...]], partitioned: bool) -> Iterator[tuple[Any, list[tuple[Any, ...]]]]:
    """Split a batch into (partition value, rows without it) runs; the rows arrive sorted by partition."""
    if not partitioned:
        yield None, rows
        return
    start = 0
    for i in range(1, len(rows) + 1):
        if i == len(rows) or rows[i][0] != rows[start][0]:
            yield rows[start][0], [row[1:] for row in rows[start:i]]
            start = i


def export_table(conn: sqlite3.Connection, plan: TablePlan, options: ExportOptions, metadata: dict[str, str],
                 progress: ProgressCallback | None = None) -> TableResult:
    """Write one table: one file, or one per partition value, streaming FETCH_ROWS rows at a time."""
    result = TableResult(plan.name)
    total = conn.execute(plan.count_sql).fetchone()[0] if progress is not None else 0
    folder = options.out_dir / plan.name
    file_name = f"part-0.{FORMATS[options.fmt]}"
    meta = {**metadata, "replaycli.table": plan.name}
    writer: TableWriter | None = None
    current: Any = object()  # matches no partition value, so the first run opens a file
    try:
        for rows in _batches(conn.execute(plan.sql)):
            for value, run in _runs(rows, plan.partition_key is not None):
                if writer is None or value != current:
                    if writer is not None:
                        writer.close()
                    path = folder / file_name if plan.partition_key is None else \
                        folder / _partition_folder(plan.partition_key, value) / file_name
                    writer, current = open_writer(options.fmt, path, plan.columns, meta), value
                    result.files.append(path.relative_to(options.out_dir).as_posix())
                writer.write(run)
                result.rows += len(run)
            if progress is not None:
                progress(plan.name, result.rows, total)
        if writer is None and plan.partition_key is None:  # an empty table still gets its file and columns
            writer = open_writer(options.fmt, folder / file_name, plan.columns, meta)
            result.files.append(f"{plan.name}/{file_name}")
    finally:
        if writer is not None:
            writer.close()
    return result


def _chosen_tables(conn: sqlite3.Connection, options: ExportOptions) -> list[str]:
    """Resolve --tables against the database. Raises ExportUsageError for a name that must not be exported."""
    available = exportable_tables(conn)
    chat_dropped = options.chat_policy == "drop"
    if options.tables is None:
        return [t for t in DEFAULT_TABLES if t in available and not (chat_dropped and t == "chat")]
    for table in options.tables:
        if table not in available:
            raise ExportUsageError(f"no table or view {table!r} in the database; choose from {', '.join(available)}")
        if options.key is not None and table not in IDENTITY_COLUMNS:
            raise ExportUsageError(f"{table} cannot be exported with --anonymize: its columns may hold identities")
        if chat_dropped and table == "chat":
            raise ExportUsageError("--chat drop and --tables chat contradict each other")
    return list(dict.fromkeys(options.tables))


def _check_options(conn: sqlite3.Connection, options: ExportOptions) -> None:
    """Refuse bad combinations before any file is written. Raises ExportUsageError, ExportError."""
    if options.fmt not in FORMATS:
        raise ExportUsageError(f"unknown format {options.fmt!r}; choose from {', '.join(FORMATS)}")
    if options.partition_by is not None and options.partition_by not in PARTITIONS:
        raise ExportUsageError(f"cannot partition by {options.partition_by!r}; choose from {', '.join(PARTITIONS)}")
    if options.chat_policy not in CHAT_POLICIES:
        raise ExportUsageError(f"unknown chat policy {options.chat!r}; choose from {', '.join(CHAT_POLICIES)}")
    require_format(options.fmt)
    if options.where is not None:
        try:
            conn.execute(f"SELECT count(*) FROM replays WHERE ({options.where})").fetchone()
        except (sqlite3.Error, sqlite3.Warning) as exc:
            raise ExportUsageError(f"--where is not a valid SQL condition on replays: {exc}") from exc


def _prepare_folder(out_dir: Path, tables: list[str], overwrite: bool) -> None:
    """Create the output folder; refuse a non-empty one unless overwriting, then clear only our own entries."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportUsageError(f"--out {out_dir} is a file, not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise ExportUsageError(f"--out {out_dir} is not empty; name a new folder or add --overwrite")
        for name in [*tables, MANIFEST]:  # other files in the folder are not ours to delete
            target = out_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc


def _metadata(conn: sqlite3.Connection, db_name: str, options: ExportOptions) -> dict[str, str]:
    """Describe the export's source, identically on every run: no clock, no host, no absolute path."""
    migrations = [name for (name,) in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} ORDER BY name")]
    anonymized = options.key is not None
    return {
        "replaycli.version": __version__,
        "replaycli.result_schema_version": str(SCHEMA_VERSION),
        "replaycli.db_migrations": ",".join(migrations),
        # A database's file name can name its owner: left out of pseudonymised exports, like --where.
        "replaycli.source_database": "" if anonymized else db_name,
        "replaycli.where": "" if anonymized else options.where or "",
        "replaycli.partition_by": options.partition_by or "",
        "replaycli.pseudonymised": "true" if anonymized else "false",
        "replaycli.chat": options.chat_policy,
    }


@dataclass
class ExportSummary:
    """What one export wrote: per table, its rows and files; `as_json()` is the --json document."""

    options: ExportOptions
    tables: list[TableResult]

    def as_json(self) -> dict[str, Any]:
        """Return the summary as plain data (the manifest and `--json` print it)."""
        return {
            "replaycli_result_version": 1,
            "command": "export",
            "status": "success",
            "format": self.options.fmt,
            "partition_by": self.options.partition_by,
            "pseudonymised": self.options.key is not None,
            "chat": self.options.chat_policy,
            "rows": sum(t.rows for t in self.tables),
            "tables": {t.name: {"rows": t.rows, "files": t.files} for t in self.tables},
        }


def _write_manifest(out_dir: Path, summary: ExportSummary, plans: list[TablePlan], metadata: dict[str, str]) -> None:
    document = {**summary.as_json(), "metadata": metadata}
    del document["command"], document["status"]
    document["columns"] = {p.name: [{"name": c.name, "kind": c.kind, "nullable": c.nullable} for c in p.columns]
                           for p in plans}
    (out_dir / MANIFEST).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextmanager
def _snapshot(conn: sqlite3.Connection, key: bytes | None) -> Iterator[None]:
    """Read every table in one read-only transaction, with the pseudonym functions when a key is given."""
    if key is not None:
        register(conn, Pseudonymizer(key))
    conn.execute("PRAGMA query_only = ON")  # --where is user SQL: it can read, never write
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.execute("PRAGMA query_only = OFF")


def export_database(store: Store, options: ExportOptions, progress: ProgressCallback | None = None) -> ExportSummary:
    """Export the chosen tables of an open store to options.out_dir and write its manifest.

    Raises ExportUsageError for options that cannot or must not be honoured, ExportError when a
    library is missing or a file cannot be written, StoreError when the database cannot be read.
    """
    conn: sqlite3.Connection = store.db.conn
    try:
        with _snapshot(conn, options.key):
            _check_options(conn, options)
            tables = _chosen_tables(conn, options)
            plans = [plan_table(conn, table, options) for table in tables]
            _prepare_folder(options.out_dir, tables, options.overwrite)
            metadata = _metadata(conn, Path(store.path).name, options)
            results = [export_table(conn, plan, options, metadata, progress) for plan in plans]
            summary = ExportSummary(options, results)
            _write_manifest(options.out_dir, summary, plans, metadata)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read database {store.path}: {' '.join(str(exc).split())}") from exc
    except OSError as exc:
        raise ExportError(f"cannot write to {options.out_dir}: {exc.strerror or exc}") from exc
    return summary
