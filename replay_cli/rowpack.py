"""A result's big child tables as a small SQLite database: what a pool worker sends the writer.

The one process that writes SQLite spends most of its time binding child rows one statement at a
time (a build-order row is about ten Python values). A worker that has just parsed a replay builds
its chat, build order and stats rows into an in-memory database instead and returns its bytes
(`Connection.serialize()`); the writer deserializes them into an attached schema and copies each
table with one `INSERT ... SELECT`, several times cheaper per row, and never unpickles the rows.
Players stay plain rows: they are few, and the live output reads them.

Packing is transport only. A packed result has empty lists for the packed tables and the bytes
under PACKED_KEY; `replaycli parse`, the service and Dask never see one. Packing never fails a
parse: a result it cannot pack (a value SQLite refuses) travels as plain rows, and the writer
records it as it always did.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any, cast

from replay_cli.migrations import (
    CHILD_TABLES,
    REPLAY_ID_COLUMN,
    SQL_TYPES,
    child_columns,
    child_insert_verb,
    child_params,
)
from replay_cli.result import Result

PACKED_TABLES = ("chat", "build_order", "player_stats")
PACKED_KEY = "packed_rows"  # the serialized database; never printed or stored as such
PACKED_COUNTS_KEY = "packed_row_counts"  # rows per packed table, for the writer's flush policy
SCHEMA = "packed"  # the name the writer attaches packed databases under
# Small pages: most results are a few KiB of rows, and every page travels through the pipe.
PAGE_SIZE = 1024


def _create_sql(table: str) -> str:
    """A packed table: the sequence number, where there is one, is its rowid, so reading it in that
    order needs no sort; a table without one is read in rowid order, the order its rows came in."""
    columns, seq_column = CHILD_TABLES[table]
    definitions = [*([f"{seq_column} INTEGER PRIMARY KEY"] if seq_column else []),
                   *(f"{name} {SQL_TYPES[kind]}" for name, kind in columns.items())]
    return f'CREATE TABLE "{table}" ({", ".join(definitions)})'


# (table, root page, CREATE statement) of every packed database, in sqlite_master order. The tables
# are created before any row, so their root pages are always 2, 3 and 4. The writer checks this
# layout before it copies: its copy statements stay prepared from one result to the next, and
# SQLite keeps their root pages when a new database of the same schema is deserialized under them.
LAYOUT = tuple((table, index + 2, _create_sql(table)) for index, table in enumerate(PACKED_TABLES))
_INSERTS = {table: f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(child_columns(table)))})'
            for table in PACKED_TABLES}


def pack(result: Result) -> Result:
    """Return result with its packed tables moved into a serialized database, or result itself."""
    if not any(result[table] for table in PACKED_TABLES):  # type: ignore[literal-required]
        return result
    try:
        data = _serialize(result)
    except (sqlite3.Error, OverflowError, ValueError, TypeError, KeyError, MemoryError):
        return result  # the writer binds these rows itself and records what it cannot store
    packed: dict[str, Any] = {**result, **{table: [] for table in PACKED_TABLES}}
    packed[PACKED_KEY] = data
    packed[PACKED_COUNTS_KEY] = {table: len(result[table]) for table in PACKED_TABLES}  # type: ignore[literal-required]
    return cast(Result, packed)


def _serialize(result: Result) -> bytes:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        for _table, _root_page, create_sql in LAYOUT:  # every table before any row: see LAYOUT
            conn.execute(create_sql)
        for table in PACKED_TABLES:
            conn.executemany(_INSERTS[table], child_params(table, result[table]))  # type: ignore[literal-required]
        conn.commit()
        return conn.serialize()
    finally:
        conn.close()


def run_packed(parse: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """Call a parse function and pack its result: the call a pool worker makes for ingest."""
    return pack(parse(*args, **kwargs))


def packed_bytes(result: Result) -> bytes | None:
    """The serialized database of a packed result; None for a result with plain rows."""
    data = cast(Mapping[str, Any], result).get(PACKED_KEY)
    return data if isinstance(data, bytes) else None


def packed_rows(result: Result) -> int:
    """How many rows a packed result holds in its database."""
    counts = cast(Mapping[str, Any], result).get(PACKED_COUNTS_KEY) or {}
    return sum(int(n) for n in counts.values())


def copy_sql(table: str) -> str:
    """Copy one packed table into the store's table of that name under replay id `?`."""
    names = ", ".join(child_columns(table))
    # Rowid order is the order the rows came in, so where a repeated sample replaces an earlier
    # one (child_insert_verb), the last one wins, as with the row-by-row insert.
    order = CHILD_TABLES[table][1] or "rowid"
    return (f'{child_insert_verb(table)} INTO main."{table}" ({REPLAY_ID_COLUMN}, {names}) '
            f'SELECT ?, {names} FROM {SCHEMA}."{table}" ORDER BY {order}')


@functools.cache
def empty_database() -> bytes:
    """A valid database with no tables, to put in place of bytes that turned out unreadable."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        conn.execute("CREATE TABLE placeholder (value)")  # an untouched database serializes to nothing
        conn.execute("DROP TABLE placeholder")
        return conn.serialize()
    finally:
        conn.close()
