"""Untrusted text is stored verbatim and never interpreted by a terminal or by rich."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

HOSTILE_SAMPLE = "05-hostile.SC2Replay"
SAMPLE_ARG = "<the hostile sample>"  # replaced by its path in the test: parameters are fixed at import
HOSTILE_NAMES = {"[bold red]x[/]", "\x1b[31mRedAlert\x1b[0m", "'); DROP TABLE replays;--", "Quote\"Name's"}
HOSTILE_FILE = "[bold]boom[blink] \x1b[5mblink.SC2Replay"  # no "/": it is a file name
RAW_CONTROL_BYTES = (b"\x1b", b"\x07", b"\x9b")


@pytest.fixture(scope="module")
def run(replaycli):
    """Run the CLI with a bare environment (PATH only: no terminal or colour settings leak in)."""
    # COLUMNS keeps rich from cutting the names short, so the check sees them whole.
    return lambda *args: replaycli.run(*args, env={"COLUMNS": "400"}, inherit_env=False)


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory, samples: Path, run) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    shutil.copy(samples / HOSTILE_SAMPLE, folder / HOSTILE_SAMPLE)
    (folder / HOSTILE_FILE).write_bytes(b"MPQ\x1b broken")
    db_path = folder / "h.db"
    proc = run("ingest", str(folder), "--db", str(db_path), "--workers", "0")
    assert proc.returncode == 1, proc.stderr
    for raw in RAW_CONTROL_BYTES:
        assert raw not in proc.stderr
    assert b"[bold]boom[blink]" in proc.stderr  # markup shown literally, not rendered
    return db_path


def test_hostile_text_is_stored_verbatim(hostile_db: Path):
    conn = sqlite3.connect(hostile_db)
    names = {row[0] for row in conn.execute("select name from players")}
    assert HOSTILE_NAMES <= names
    assert conn.execute("select map_name from replays").fetchone()[0] == "Map'; DROP TABLE maps;--"
    assert {row[0] for row in conn.execute("select text from chat")} == {"\x1b[2J\x1b[Hcleared"}
    assert conn.execute("select count(*) from replays").fetchone()[0] == 1  # the SQL did nothing
    failed = conn.execute("select path from files where status = 'failed'").fetchone()[0]
    assert failed.endswith(HOSTILE_FILE)


@pytest.mark.parametrize(
    "command",
    [["stats"], ["failures"], ["parse", SAMPLE_ARG], ["parse", SAMPLE_ARG, "--depth", "summary"]],
)
def test_every_human_output_escapes_control_characters(hostile_db: Path, command: list[str], samples: Path, run):
    command = [str(samples / HOSTILE_SAMPLE) if arg == SAMPLE_ARG else arg for arg in command]
    args = [*command, "--db", str(hostile_db)] if command[0] != "parse" else command
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout + proc.stderr
    for raw in RAW_CONTROL_BYTES:
        assert raw not in output, (command, raw)
    if command[0] == "parse":
        assert b"[bold red]x[/]" in output and b"\\x1b[31mRedAlert" in output
    if command[0] == "failures":
        assert b"\\x1b[5mblink" in output
