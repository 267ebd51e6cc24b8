"""`replaycli export`: databases built by really ingesting samples/ (and the corpus), exported in each
format, read back with pyarrow, DuckDB, csv and json, and compared with SQL on the same database."""

from __future__ import annotations

import csv
import json
import os
import pty
import select
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from replay_cli.cli import cli
from replay_cli.export import DEFAULT_TABLES
from replay_cli.export_files import FORMULA_STARTS, csv_cell
from replay_cli.result import SCHEMA_VERSION
from tests.conftest import replays_dir

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FORMATS = ("parquet", "csv", "jsonl")
EXTENSION = {"parquet": "parquet", "csv": "csv", "jsonl": "jsonl"}


def ingest(inputs: Path, db: Path) -> None:
    """Build a database the way users do: the real CLI in a real process."""
    done = subprocess.run([sys.executable, "-m", "replay_cli", "ingest", str(inputs), "--db", str(db), "-q",
                           "--workers", "2"], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode in (0, 1), done.stderr  # 1: some corpus files are recorded as failures


def export(db: Path, out: Path, *args: str) -> dict[str, Any]:
    """Run `replaycli export --json` in-process; return its summary."""
    result = CliRunner().invoke(cli, ["export", "--db", str(db), "--out", str(out), "--json", *args],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def export_process(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter, after `prelude` (used to make pyarrow unimportable)."""
    code = f"import sys; {prelude or 'pass'}; from replay_cli.cli import cli; sys.argv[0] = 'replaycli'; cli()"
    return subprocess.run([sys.executable, "-c", code, "export", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=REPO)


@pytest.fixture(scope="module")
def samples_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("samples") / "samples.db"
    ingest(SAMPLES, db)
    return db


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, synth_games: list[Path]) -> Path:
    """The real corpus ingested; without it, the session's synthetic games (a bigger, more varied
    database than samples/: every release partition and month still has rows to compare)."""
    folder = replays_dir()
    db = tmp_path_factory.mktemp("corpus") / "corpus.db"
    ingest(folder if folder.is_dir() else synth_games[0].parent, db)
    return db


@pytest.fixture(params=["samples", "corpus"])
def database(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(f"{request.param}_db")


def sql(db: Path, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def sql_dicts(db: Path, table: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f'SELECT * FROM "{table}"')]


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def read_csv_cell(cell: str) -> str:
    """Undo the export's formula defusing: one leading apostrophe is always the export's own."""
    return cell[1:] if cell.startswith("'") else cell


def read_back(out: Path, table: str, fmt: str) -> list[dict[str, Any]]:
    """Read one exported table with the tools analysts use (a Hive dataset for Parquet)."""
    if fmt == "parquet":
        return ds.dataset(out / table, format="parquet", partitioning="hive").to_table().to_pylist()
    rows: list[dict[str, Any]] = []
    for path in sorted((out / table).rglob(f"*.{EXTENSION[fmt]}")):
        with path.open(encoding="utf-8", newline="") as handle:
            if fmt == "csv":
                rows += [{k: read_csv_cell(v) for k, v in row.items()} for row in csv.DictReader(handle)]
            else:
                rows += [json.loads(line) for line in handle]
    return rows


def as_exported(row: dict[str, Any], kinds: dict[str, str], fmt: str) -> dict[str, Any]:
    """What a SQLite row should look like once written in fmt and read back."""
    if fmt == "jsonl":
        return row
    if fmt == "csv":
        return {k: "" if v is None else repr(v) if isinstance(v, float) else str(v) for k, v in row.items()}
    converted = dict(row)
    for name, value in row.items():
        if value is not None and kinds[name] == "bool":
            converted[name] = bool(value)
        elif value is not None and kinds[name] == "timestamp":
            converted[name] = datetime.fromisoformat(value)
    return converted


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in rows)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_table_reads_back_equal_to_sqlite(database: Path, tmp_path: Path, fmt: str):
    summary = export(database, tmp_path / "out", "--format", fmt)
    assert list(summary["tables"]) == list(DEFAULT_TABLES)
    columns = manifest(tmp_path / "out")["columns"]
    for table in DEFAULT_TABLES:
        expected = sql_dicts(database, table)
        assert summary["tables"][table]["rows"] == len(expected), table
        kinds = {c["name"]: c["kind"] for c in columns[table]}
        got = read_back(tmp_path / "out", table, fmt)
        assert canonical(got) == canonical([as_exported(r, kinds, fmt) for r in expected]), table


def test_tables_are_written_in_key_order(samples_db: Path, tmp_path: Path):
    export(samples_db, tmp_path / "out", "--format", "jsonl")
    for table, key in (("replays", ["id"]), ("players", ["replay_id", "slot"]),
                       ("player_stats", ["replay_id", "pid", "game_loop"]), ("files", ["path"])):
        keys = [tuple(row[k] for k in key) for row in read_back(tmp_path / "out", table, "jsonl")]
        assert keys == sorted(keys) and len(keys) > 1, table


def test_duckdb_counts_match_sqlite(database: Path, tmp_path: Path):
    duckdb = pytest.importorskip("duckdb")  # in the test extra; analysts query the files this way
    export(database, tmp_path / "out", "--format", "parquet")
    for table in ("players", "replays", "player_stats", "v_1v1"):
        ((count,),) = duckdb.sql(f"select count(*) from '{tmp_path / 'out' / table}/*.parquet'").fetchall()
        assert count == sql(database, f"select count(*) from {table}")[0][0], table


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("extra", [(), ("--partition-by", "month")])
def test_two_exports_are_byte_identical(samples_db: Path, tmp_path: Path, fmt: str, extra: tuple[str, ...]):
    first, second = tmp_path / "first", tmp_path / "second"
    export(samples_db, first, "--format", fmt, *extra)
    export(samples_db, second, "--format", fmt, *extra)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    assert len(files) >= len(DEFAULT_TABLES) + 1
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_parquet_types_follow_the_schema(samples_db: Path, tmp_path: Path):
    export(samples_db, tmp_path / "out", "--format", "parquet")
    replays = pq.read_schema(tmp_path / "out" / "replays" / "part-0.parquet")
    players = pq.read_schema(tmp_path / "out" / "players" / "part-0.parquet")
    assert str(replays.field("played_at").type) == "timestamp[us, tz=UTC]"
    assert str(replays.field("duration_s").type) == "double"
    assert str(replays.field("is_ladder").type) == "bool" and replays.field("is_ladder").nullable
    assert str(replays.field("player_count").type) == "int64" and not replays.field("player_count").nullable
    assert str(players.field("toon_id").type) == "int64" and players.field("toon_id").nullable
    assert str(players.field("name").type) == "string" and not players.field("name").nullable
    metadata = {k.decode(): v.decode() for k, v in replays.metadata.items()}
    assert metadata["replaycli.version"] == "0.1.0"
    assert metadata["replaycli.result_schema_version"] == str(SCHEMA_VERSION)
    assert "m001_initial" in metadata["replaycli.db_migrations"].split(",")
    assert metadata["replaycli.source_database"] == samples_db.name
    mmr = pq.read_schema(tmp_path / "out" / "v_1v1" / "part-0.parquet").field("p1_mmr")  # coalesce(): undeclared
    assert str(mmr.type) == "int64"


def test_a_column_added_later_flows_through(samples_db: Path, tmp_path: Path):
    db = tmp_path / "later.db"
    shutil.copy(samples_db, db)
    with sqlite3.connect(db) as conn:  # what a future migration does: a new typed column on replays
        conn.execute("ALTER TABLE replays ADD COLUMN later_score INTEGER")
        conn.execute("UPDATE replays SET later_score = length(map_name)")
    export(db, tmp_path / "out", "--format", "parquet", "--tables", "replays")
    table = pq.read_table(tmp_path / "out" / "replays" / "part-0.parquet")
    assert str(table.schema.field("later_score").type) == "int64"
    assert sorted(table.column("later_score").to_pylist()) == sorted(
        v for (v,) in sql(db, "select later_score from replays"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_where_filters_replays_and_their_rows(samples_db: Path, tmp_path: Path, fmt: str):
    where = "game_type = '1v1'"
    summary = export(samples_db, tmp_path / "out", "--format", fmt, "--where", where)
    ids = {str(replay_id) for (replay_id,) in sql(samples_db, f"select id from replays where {where}")}  # CSV: text
    assert 0 < len(ids) < sql(samples_db, "select count(*) from replays")[0][0]
    assert {str(r["id"]) for r in read_back(tmp_path / "out", "replays", fmt)} == ids
    players = read_back(tmp_path / "out", "players", fmt)
    assert {str(p["replay_id"]) for p in players} == ids
    expected = sql(samples_db, f"select count(*) from players where replay_id in "
                               f"(select id from replays where {where})")[0][0]
    assert summary["tables"]["players"]["rows"] == len(players) == expected


@pytest.mark.parametrize(("by", "value_sql"), [("release", "r.release"), ("month", "substr(r.played_at, 1, 7)")])
def test_partitions_read_back_as_a_hive_dataset(database: Path, tmp_path: Path, by: str, value_sql: str):
    export(database, tmp_path / "out", "--format", "parquet", "--partition-by", by)
    for table, link, key in (("replays", "id", "id"), ("players", "replay_id", "id"),
                             ("player_stats", "replay_id", "id")):
        got = ds.dataset(tmp_path / "out" / table, format="parquet", partitioning="hive").to_table()
        pairs = sorted(zip(got.column(link).to_pylist(), got.column(by).to_pylist()), key=str)
        expected = sql(database, f"select t.{link}, {value_sql} from {table} t "
                                 f"left join replays r on r.{key} = t.{link}")
        assert pairs == sorted(expected, key=str), table
    folders = {p.name for p in (tmp_path / "out" / "players").iterdir()}
    assert folders and all(name.startswith(f"{by}=") for name in folders)


def identities(db: Path) -> dict[str, set[str]]:
    """Everything that names a person or a file in the database."""
    found = {
        "names": {v for (v,) in sql(db, "select name from players union select sender_name from chat")},
        "clan tags": {v for (v,) in sql(db, "select clan_tag from players")},
        "toon handles": {v for (v,) in sql(db, "select toon_handle from players")},
        "chat texts": {v for (v,) in sql(db, "select text from chat")},
        "file names": {Path(v).stem for (v,) in sql(db, "select path from files")},
        "folders": {str(Path(v).parent) for (v,) in sql(db, "select path from files")} | {db.stem},
    }
    return {kind: {v for v in values if v not in (None, "", "None")} for kind, values in found.items()}


# Text that identifies nobody but may contain a name by chance (a player called "Dark", a unit DarkTemplar).
INNOCENT_COLUMNS = {
    "replays": ("map_name", "release", "category", "game_type", "region", "game_speed", "expansion"),
    "build_order": ("name", "kind"),
    "players": ("pick_race", "play_race", "result", "ai_difficulty", "commander", "color"),
    "files": ("status", "error_kind", "error_type", "error_stage"),
    "chat": ("channel",),
}
BULK_TABLES = ("player_stats", "build_order")
HEX = set("0123456789abcdefABCDEF")


def scannable(needle: str, innocent: str) -> bool:
    """Whether finding needle in the output's bytes can only mean a leak (not hex, a number or innocent text)."""
    return len(needle) >= 4 and not set(needle) <= HEX and needle not in innocent


SOURCE_KEYS = ("replaycli.source_database", "replaycli.where")  # the metadata that could name someone


def structure(document: Any) -> list[str]:
    """The manifest's keys, names, kinds and flags (not where the data came from): the export's vocabulary."""
    if isinstance(document, dict):
        return [*document, *(word for key, value in document.items() if key not in SOURCE_KEYS
                             for word in structure(value))]
    if isinstance(document, list):
        return [word for item in document for word in structure(item)]
    return [document] if isinstance(document, str) else []


def output_texts(out: Path, fmt: str) -> set[str]:
    """Every value of a text column in the export (numbers can equal a chat text like "550" by chance)."""
    values: set[str] = set()
    for table, columns in manifest(out)["columns"].items():
        texts = [c["name"] for c in columns if c["kind"] == "text"]
        for row in read_back(out, table, fmt):
            values.update(str(row[name]) for name in texts if row[name] is not None)
    return values


@pytest.mark.parametrize("fmt", FORMATS)
def test_anonymized_export_leaks_no_identity(database: Path, tmp_path: Path, fmt: str):
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    out = tmp_path / "out"
    export(database, out, "--format", fmt, "--anonymize", str(key))
    # Parquet pages are compressed: its values are checked decoded, its metadata as text. The bulk
    # tables hold no identity column, so their values alone are checked: scanning their bytes for
    # thousands of needles would take minutes.
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file() and p.suffix != ".parquet"
             and p.relative_to(out).parts[0] not in BULK_TABLES]
    blobs += [b"\n".join(k + b"=" + v for k, v in pq.read_schema(p).metadata.items()) for p in out.rglob("*.parquet")]
    values = output_texts(out, fmt)
    innocent_values = {str(v) for table, columns in INNOCENT_COLUMNS.items() for column in columns
                       for (v,) in sql(database, f"select distinct {column} from {table}") if v is not None}
    innocent = "\n".join([*innocent_values, *structure(manifest(out))])  # "where" is a chat text and a key
    for kind, needles in identities(database).items():
        assert needles, kind
        for needle in needles:
            assert needle not in values or needle in innocent_values, f"{kind}: {needle!r} is an exported value"
            if scannable(needle, innocent):
                forms = {needle.encode(), json.dumps(needle)[1:-1].encode()}
                if kind == "toon handles":  # pseudonyms keep the region-S2-realm- prefix: match whole values
                    forms = {form + b'"' for form in forms}
                assert not any(form in blob for blob in blobs for form in forms), f"{kind}: {needle!r} in the bytes"
    assert all(row["text"] == "[redacted]" for row in read_back(out, "chat", fmt))
    # Account numbers are plain integers, like everything else: compare the column itself.
    toon_ids = {str(v) for (v,) in sql(database, "select toon_id from players where toon_id is not null")}
    for table in ("players", "v_player_games"):
        exported = {str(row["toon_id"]) for row in read_back(out, table, fmt) if row["toon_id"] not in (None, "")}
        assert exported and not exported & toon_ids, table


def test_pseudonymised_views_keep_their_counts(samples_db: Path, tmp_path: Path):
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    plain = export(samples_db, tmp_path / "plain", "--format", "jsonl")
    hidden = export(samples_db, tmp_path / "hidden", "--format", "jsonl", "--anonymize", str(key))
    for table in ("v_1v1", "matches", "v_player_games"):
        assert hidden["tables"][table]["rows"] == plain["tables"][table]["rows"] > 0
    copies = sorted(row["copies"] for row in read_back(tmp_path / "hidden", "matches", "jsonl"))
    assert copies == sorted(n for (n,) in sql(samples_db, "select copies from matches"))


def pseudonyms_by_handle(db: Path, out: Path) -> dict[str, tuple[str, str]]:
    """Map each original toon handle to its exported (handle, name), matching rows on their key."""
    exported = {(p["replay_id"], p["slot"]): p for p in read_back(out, "players", "jsonl")}
    return {handle: (exported[(replay_id, slot)]["toon_handle"], exported[(replay_id, slot)]["name"])
            for replay_id, slot, handle in sql(db, "select replay_id, slot, toon_handle from players")
            if handle}


def test_pseudonyms_depend_on_the_key_only(samples_db: Path, tmp_path: Path):
    """Same key on another database (other files, other order): same pseudonyms; another key: none shared."""
    subset = tmp_path / "subset"
    subset.mkdir()
    for source in sorted(SAMPLES.glob("*.SC2Replay"))[::-3]:  # a third of the games, renamed, reversed
        shutil.copy(source, subset / f"zz-{source.name}")
    other_db = tmp_path / "other.db"
    ingest(subset, other_db)
    key, other_key = tmp_path / "key", tmp_path / "other.key"
    key.write_bytes(b"0123456789abcdef" * 2)
    other_key.write_bytes(b"fedcba9876543210" * 2 + b"\n")
    for db, out, secret in ((samples_db, "a", key), (other_db, "b", key), (samples_db, "c", other_key)):
        export(db, tmp_path / out, "--format", "jsonl", "--anonymize", str(secret))
    a = pseudonyms_by_handle(samples_db, tmp_path / "a")
    b = pseudonyms_by_handle(other_db, tmp_path / "b")
    c = pseudonyms_by_handle(samples_db, tmp_path / "c")
    assert b and all(a[handle] == pseudonym for handle, pseudonym in b.items())
    assert not {v for pair in a.values() for v in pair} & {v for pair in c.values() for v in pair}
    files = {row["path"] for row in read_back(tmp_path / "b", "files", "jsonl")}
    assert files == {f"{sha}.SC2Replay" for (sha,) in sql(other_db, "select sha256 from files")}


@pytest.mark.parametrize("policy", ["keep", "redact", "drop"])
def test_chat_policies(samples_db: Path, tmp_path: Path, policy: str):
    key = tmp_path / "key"
    key.write_bytes(os.urandom(32))
    summary = export(samples_db, tmp_path / "out", "--format", "jsonl", "--anonymize", str(key), "--chat", policy)
    if policy == "drop":
        assert "chat" not in summary["tables"] and not (tmp_path / "out" / "chat").exists()
        return
    texts = [row["text"] for row in read_back(tmp_path / "out", "chat", "jsonl")]
    expected = [text for (text,) in sql(samples_db, "select text from chat order by replay_id, seq")]
    assert texts == (expected if policy == "keep" else ["[redacted]"] * len(expected)) and texts


def test_chat_redact_without_pseudonyms(samples_db: Path, tmp_path: Path):
    export(samples_db, tmp_path / "out", "--format", "jsonl", "--chat", "redact", "--tables", "chat,players")
    chat = read_back(tmp_path / "out", "chat", "jsonl")
    assert chat and all(row["text"] == "[redacted]" for row in chat)
    names = {row["name"] for row in read_back(tmp_path / "out", "players", "jsonl")}
    assert names == {name for (name,) in sql(samples_db, "select name from players")}  # names stay real


@pytest.mark.parametrize("value", ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "'quoted", "\tTab", "plain"])
def test_csv_defuses_formulas_and_keeps_values_recoverable(samples_db: Path, tmp_path: Path, value: str):
    db = tmp_path / "hostile.db"
    shutil.copy(samples_db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE players SET name = ? WHERE slot = 0", (value,))
    export(db, tmp_path / "out", "--format", "csv", "--tables", "players")
    with (tmp_path / "out" / "players" / "part-0.csv").open(encoding="utf-8", newline="") as handle:
        cells = [row["name"] for row in csv.DictReader(handle) if row["slot"] == "0"]
    assert cells and all(cell == ("'" + value if value.startswith(FORMULA_STARTS) else value) for cell in cells)
    assert all(read_csv_cell(cell) == value for cell in cells)


def test_csv_tells_null_from_empty_text():
    assert csv_cell(None, "text") == ""
    assert csv_cell("", "text") == '""'
    assert csv_cell(-5, "int") == "-5"  # numbers are never defused: only text can be a formula
    assert csv_cell(True, "bool") == "1"
    assert csv_cell("=1+1", "int") == "\"'=1+1\""  # SQLite lets text into any column: still defused


def test_missing_pyarrow_is_one_line_naming_the_extra(samples_db: Path, tmp_path: Path):
    block = "sys.modules['pyarrow'] = None"  # import pyarrow now raises ImportError, as when not installed
    done = export_process("--format", "parquet", "--db", str(samples_db), "--out", str(tmp_path / "p"), prelude=block)
    assert done.returncode == 3
    assert done.stderr == "Error: --format parquet needs pyarrow: pip install 'replaycli[parquet]'\n"
    assert not (tmp_path / "p").exists()
    done = export_process("--format", "csv", "--db", str(samples_db), "--out", str(tmp_path / "c"), prelude=block)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c" / "players" / "part-0.csv").is_file()


def usage_cases(db: Path, tmp_path: Path) -> list[tuple[list[str], str]]:
    short_key = tmp_path / "short.key"
    short_key.write_bytes(b"tiny")
    key = tmp_path / "good.key"
    key.write_bytes(os.urandom(32))
    full = tmp_path / "full"
    full.mkdir(exist_ok=True)
    (full / "keep.txt").write_text("mine")
    return [
        (["--tables", "runs", "--anonymize", str(key)], "runs cannot be exported with --anonymize"),
        (["--tables", "nosuch"], "no table or view 'nosuch' in the database"),
        (["--where", "no_such_column = 1"], "--where is not a valid SQL condition on replays"),
        (["--where", "1); DELETE FROM replays; --"], "--where is not a valid SQL condition on replays"),
        (["--anonymize", str(short_key)], "holds 4 bytes; use at least 16 random bytes"),
        (["--chat", "drop", "--tables", "chat"], "--chat drop and --tables chat contradict each other"),
        (["--tables", "runs", "--where", "1"], "--where cannot filter runs"),
        (["--out", str(full)], "is not empty; name a new folder or add --overwrite"),
    ]


def test_usage_errors_exit_2_with_one_line(samples_db: Path, tmp_path: Path):
    replays_before = sql(samples_db, "select count(*) from replays")
    for args, message in usage_cases(samples_db, tmp_path):
        out = ["--out", str(tmp_path / "o")] if "--out" not in args else []
        result = CliRunner().invoke(cli, ["export", "--format", "csv", "--db", str(samples_db), *out, *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr and "Traceback" not in result.output, (args, result.stderr)
    assert sql(samples_db, "select count(*) from replays") == replays_before
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_overwrite_replaces_only_the_exported_tables(samples_db: Path, tmp_path: Path):
    out = tmp_path / "out"
    export(samples_db, out, "--format", "jsonl", "--partition-by", "month")
    (out / "notes.txt").write_text("mine")
    export(samples_db, out, "--format", "jsonl", "--overwrite")
    assert (out / "notes.txt").read_text() == "mine"
    assert not list((out / "players").glob("month=*"))  # the old partitions went with the old table folder
    assert (out / "players" / "part-0.jsonl").is_file()


def test_progress_only_on_a_terminal(samples_db: Path, tmp_path: Path):
    piped = export_process("--format", "jsonl", "--db", str(samples_db), "--out", str(tmp_path / "a"))
    assert piped.returncode == 0 and "\r" not in piped.stderr
    assert piped.stderr.startswith("exported ") and piped.stdout == ""
    leader, follower = pty.openpty()
    code = "import sys; from replay_cli.cli import cli; cli()"
    with subprocess.Popen([sys.executable, "-c", code, "export", "--format", "jsonl", "--db", str(samples_db),
                           "--out", str(tmp_path / "b")], stderr=follower, stdout=subprocess.DEVNULL, cwd=REPO) as proc:
        os.close(follower)
        seen = b""
        while select.select([leader], [], [], 60)[0]:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closes when the process exits
                break
            if not chunk:
                break
            seen += chunk
        assert proc.wait(timeout=60) == 0
    os.close(leader)
    assert b"\rexporting players:" in seen and b"exported " in seen
