"""Compare databases by content: rows keyed by what they are, not by the ids one run gave them."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection


def table_rows(conn: sqlite3.Connection, table: str, dropped: Collection[str] = ()) -> list[tuple]:
    """Every row of table, sorted, without the dropped columns.

    Replay ids follow commit order, which differs between two runs over the same files: a child
    row's replay_id is given as its replay's sha256, and the replays' own id is left out.
    """
    selected = []
    for _cid, name, *_ in conn.execute(f"PRAGMA table_info({table})"):
        if name in dropped or (table == "replays" and name == "id"):
            continue
        selected.append("(SELECT sha256 FROM replays r WHERE r.id = t.replay_id)" if name == "replay_id" else name)
    return sorted(conn.execute(f"SELECT {', '.join(selected)} FROM {table} t").fetchall(), key=repr)
