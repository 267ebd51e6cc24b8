"""`replaycli ingest` end to end: real replays, real SQLite, real worker processes."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay_cli.cli import cli

# Rows that must be identical between runs; `runs` and timing columns legitimately differ.
VOLATILE_COLUMNS = {"parse_seconds", "stored_at", "stored_run", "first_run", "last_run", "attempts"}
COMPARED_TABLES = ("replays", "players", "chat", "build_order", "player_stats", "files")
JSON_SUMMARY_KEYS = {
    "replaycli_result_version", "command", "status", "exit_code", "run_id", "db", "counts", "failures",
    "failures_listed", "wall_seconds", "files_per_second",
}
COUNT_KEYS = {"discovered", "skipped", "parsed", "ok", "partial", "duplicate", "failed"}


def dump(db_path: Path, *, path_prefix: str = "") -> dict[str, list[tuple]]:
    """Every compared table as sorted rows, volatile columns dropped, paths made relative."""
    conn = sqlite3.connect(db_path)
    tables = {}
    for table in COMPARED_TABLES:
        cursor = conn.execute(f"select * from {table}")
        names = [d[0] for d in cursor.description]
        keep = [i for i, name in enumerate(names) if name not in VOLATILE_COLUMNS]
        rows = []
        for row in cursor:
            values = tuple(row[i].replace(path_prefix, "") if isinstance(row[i], str) and path_prefix else row[i]
                           for i in keep)
            rows.append(values)
        tables[table] = sorted(rows, key=repr)
    conn.close()
    return tables


def ingest(*args: str, stdin: bytes | None = None) -> tuple[int, dict | None, str]:
    """Run the real CLI; return its exit code, parsed --json summary and stderr."""
    runner = CliRunner()
    result = runner.invoke(cli, ["ingest", "--json", *args], input=stdin, catch_exceptions=False)
    summary = json.loads(result.stdout) if result.stdout.strip() else None
    return result.exit_code, summary, result.stderr


@pytest.fixture(scope="module")
def corpus_ingests(corpus: Path, tmp_path_factory):
    """The whole corpus at summary depth, once with 2 workers and once inline."""
    out = tmp_path_factory.mktemp("ingest")
    pooled, inline = out / "pooled.db", out / "inline.db"
    first = ingest(str(corpus), "--db", str(pooled), "--workers", "2", "--depth", "summary")
    second = ingest(str(corpus), "--db", str(inline), "--workers", "0", "--depth", "summary")
    return pooled, inline, first, second


def test_pool_and_inline_store_the_same_rows(corpus_ingests):
    pooled, inline, _, _ = corpus_ingests
    assert dump(pooled) == dump(inline)


def test_counts_match_the_manifest(corpus_ingests, manifest):
    pooled, _, (code, summary, _), _ = corpus_ingests
    assert code == 1  # the header-only testError2 fails; everything else is stored
    counts = summary["counts"]
    assert counts["discovered"] == counts["parsed"] == len(manifest)
    assert counts["failed"] == 1 and counts["duplicate"] == 0
    assert counts["ok"] + counts["partial"] == len(manifest) - 1
    conn = sqlite3.connect(pooled)
    assert conn.execute("select count(*) from replays").fetchone()[0] == len({row["sha256"] for row in manifest}) - 1
    assert {row[0] for row in conn.execute("select sha256 from replays")} <= {row["sha256"] for row in manifest}
    # every input has exactly one files row, every failure is classified
    assert conn.execute("select count(*) from files").fetchone()[0] == len(manifest)
    failed = conn.execute("select path, error_kind, error_type from files where status = 'failed'").fetchall()
    assert [(Path(p).name, kind, kind_type) for p, kind, kind_type in failed] == [
        ("testError2.SC2Replay", "invalid_replay", "InvalidReplay")
    ]
    # never a replay without its players
    assert conn.execute(
        "select count(*) from replays r where not exists (select 1 from players p where p.replay_sha256 = r.sha256)"
    ).fetchone()[0] == 0


def test_json_summary_keys_are_pinned(corpus_ingests):
    _, _, (_, summary, _), _ = corpus_ingests
    assert set(summary) == JSON_SUMMARY_KEYS
    assert set(summary["counts"]) == COUNT_KEYS
    assert summary["status"] == "partial" and summary["exit_code"] == 1
    assert set(summary["failures"][0]) == {"path", "kind", "type", "message", "stage", "release"}
    assert summary["failures"][0]["release"] == "5.0.10.88500"  # read from the header of testError2


def test_second_run_changes_nothing_and_parses_nothing(corpus_ingests, corpus):
    pooled, _, _, _ = corpus_ingests
    before = dump(pooled)
    code, summary, _ = ingest(str(corpus), "--db", str(pooled), "--workers", "2", "--depth", "summary")
    assert summary["counts"]["parsed"] == 0
    assert summary["counts"]["skipped"] == summary["counts"]["discovered"]
    assert code == 0
    assert dump(pooled) == before
    runs = sqlite3.connect(pooled).execute("select count(*) from runs").fetchone()[0]
    assert runs == 2


def test_retry_failed_and_deeper_depth_reparse(corpus_ingests, corpus, replay):
    pooled, _, _, _ = corpus_ingests
    _, summary, _ = ingest(str(corpus), "--db", str(pooled), "--workers", "0", "--depth", "summary",
                           "--retry-failed")
    assert summary["counts"]["parsed"] == 1  # only the failure is tried again
    target = replay("tests/replays/1v1.SC2Replay")
    _, summary, _ = ingest(str(target), "--db", str(pooled), "--workers", "0", "--depth", "stats")
    assert summary["counts"]["parsed"] == 1 and summary["counts"]["ok"] == 1
    conn = sqlite3.connect(pooled)
    depth = conn.execute("select depth from files where path = ?", (str(target),)).fetchone()[0]
    assert depth == "stats"
    assert conn.execute("select count(*) from player_stats").fetchone()[0] > 0


@pytest.fixture
def awkward_tree(tmp_path: Path, replay) -> Path:
    """Real replays under awkward names, a byte-identical copy and a corrupt file."""
    tree = tmp_path / "tree with spaces"
    (tree / "sub").mkdir(parents=True)
    one = replay("tests/replays/1v1.SC2Replay")
    shutil.copy(one, tree / "plain.SC2Replay")
    shutil.copy(one, tree / "sub" / "copy of plain.sc2replay")  # duplicate, lower-case extension
    shutil.copy(replay("tests/replays/2v2.SC2Replay"), tree / "sub" / "ünïcödé 'quoted' \"name\".SC2REPLAY")
    (tree / "broken.SC2Replay").write_bytes(b"MPQ\x1b not really")
    (tree / "notes.txt").write_text("not a replay")
    return tree


def _statuses(db_path: Path) -> dict[str, str]:
    conn = sqlite3.connect(db_path)
    return {Path(p).name: s for p, s in conn.execute("select path, status from files")}


EXPECTED_AWKWARD = {
    "plain.SC2Replay": "ok",
    "copy of plain.sc2replay": "duplicate",
    "ünïcödé 'quoted' \"name\".SC2REPLAY": "ok",
    "broken.SC2Replay": "failed",
}


def _canonical(statuses: dict[str, str]) -> dict[str, str]:
    """Byte-identical copies: whichever finishes first is stored, the other is the duplicate."""
    statuses = dict(statuses)  # never mutate the caller's dict (EXPECTED_AWKWARD is shared)
    copies = ("plain.SC2Replay", "copy of plain.sc2replay")
    pair = sorted(statuses.pop(name) for name in copies)
    return {**statuses, "copies": ",".join(pair)}


def test_duplicates_mixed_case_and_awkward_names(awkward_tree: Path, tmp_path: Path):
    db_path = tmp_path / "x.db"
    code, summary, _ = ingest(str(awkward_tree), "--db", str(db_path), "--workers", "2", "--depth", "summary")
    assert code == 1
    assert _canonical(_statuses(db_path)) == _canonical(EXPECTED_AWKWARD)
    assert summary["counts"]["duplicate"] == 1 and summary["counts"]["failed"] == 1


@pytest.mark.parametrize("separator", [b"\n", b"\0"])
def test_stdin_path_lists(awkward_tree: Path, tmp_path: Path, separator: bytes):
    db_path = tmp_path / "stdin.db"
    listing = separator.join(str(p).encode() for p in sorted(awkward_tree.rglob("*")) if p.is_file())
    extra = ["--null"] if separator == b"\0" else []
    code, _, _ = ingest("-", "--db", str(db_path), "--workers", "0", "--depth", "summary", *extra, stdin=listing)
    assert code == 1
    # named explicitly, notes.txt is tried too: the user asked for it
    assert _canonical(_statuses(db_path)) == _canonical({**EXPECTED_AWKWARD, "notes.txt": "failed"})


def test_exit_code_zero_when_everything_is_stored(replay, tmp_path: Path):
    code, summary, _ = ingest(str(replay("tests/replays/1v1.SC2Replay")), "--db", str(tmp_path / "ok.db"),
                              "--workers", "0", "--depth", "summary")
    assert (code, summary["status"]) == (0, "success")


def test_unwritable_database_is_exit_3_with_one_line(tmp_path: Path, replay):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, summary, stderr = ingest(str(replay("tests/replays/1v1.SC2Replay")), "--db", str(blocker / "x.db"),
                                   "--workers", "0")
    assert code == 3
    assert summary["status"] == "error"
    assert "Traceback" not in stderr
    assert stderr.strip().startswith("Error:") and len(stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(tmp_path: Path):
    runner = CliRunner()
    assert runner.invoke(cli, ["ingest"]).exit_code == 2
    assert runner.invoke(cli, ["ingest", "--workers", "-1", str(tmp_path)]).exit_code == 2
    assert runner.invoke(cli, ["ingest", "--depth", "deep", str(tmp_path)]).exit_code == 2
    assert runner.invoke(cli, ["ingest", "--shared-fs", str(tmp_path)]).exit_code == 2  # needs --scheduler


def test_failures_and_stats_commands(corpus_ingests):
    pooled, _, _, _ = corpus_ingests
    runner = CliRunner()
    listed = runner.invoke(cli, ["failures", "--db", str(pooled), "--json"], catch_exceptions=False)
    rows = json.loads(listed.stdout)
    assert [Path(r["path"]).name for r in rows] == ["testError2.SC2Replay"]
    stats = runner.invoke(cli, ["stats", "--db", str(pooled), "--json"], catch_exceptions=False)
    assert json.loads(stats.stdout)["replays"] == 420
    human = runner.invoke(cli, ["stats", "--db", str(pooled)], catch_exceptions=False)
    assert "420 replays" in human.stdout


def test_real_cli_process_is_quiet_when_not_a_terminal(tmp_path: Path, replay):
    """No progress or colour escapes leak into redirected stderr; stdout carries only JSON."""
    target = replay("tests/replays/1v1.SC2Replay")
    proc = subprocess.run(
        [sys.executable, "-m", "replay_cli", "ingest", str(target), "--db", str(tmp_path / "p.db"), "--json",
         "--workers", "1", "--depth", "summary"],
        capture_output=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["counts"]["ok"] == 1
    assert b"\x1b[" not in proc.stderr and b"\x1b[" not in proc.stdout


def test_archive_keeps_each_stored_replay_once(awkward_tree: Path, tmp_path: Path):
    archive = tmp_path / "archive"
    db_path = tmp_path / "arch.db"
    ingest(str(awkward_tree), "--db", str(db_path), "--workers", "2", "--depth", "summary", "--archive", str(archive))
    conn = sqlite3.connect(db_path)
    hashes = {row[0] for row in conn.execute("select sha256 from replays")}
    archived = {p for p in archive.rglob("*") if p.is_file()}
    assert {p.name for p in archived} == {f"{sha}.SC2Replay" for sha in hashes}  # the duplicate once
    assert all(p.parent.name == p.name[:2] for p in archived)
    mtimes = {p: p.stat().st_mtime_ns for p in archived}
    ingest(str(awkward_tree), "--db", str(db_path), "--workers", "0", "--depth", "summary", "--archive",
           str(archive), "--force")
    assert {p: p.stat().st_mtime_ns for p in archive.rglob("*") if p.is_file()} == mtimes  # never rewritten
