"""`replaycli ingest` end to end: real replays (or the samples without the corpus), real SQLite, real workers."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbdump import table_rows

from replay_cli.cli import cli
from replay_cli.runner import FILES_PER_TASK, IN_FLIGHT_PER_WORKER

# Rows that must be identical between runs; `runs` and timing columns legitimately differ.
VOLATILE_COLUMNS = {"parse_seconds", "cpu_seconds", "peak_rss_bytes", "peak_rss_scope", "stored_at", "stored_run",
                    "first_run", "last_run", "attempts"}
COMPARED_TABLES = ("replays", "players", "chat", "build_order", "player_stats", "files")
JSON_SUMMARY_KEYS = {
    "replaycli_result_version", "command", "status", "exit_code", "run_id", "db", "counts", "failures",
    "failures_listed", "wall_seconds", "files_per_second", "pool",
}
COUNT_KEYS = {"discovered", "skipped", "parsed", "ok", "partial", "duplicate", "failed", "filtered"}
POOL_KEYS = {"workers_started", "workers_replaced", "max_queued", "max_in_flight", "max_worker_rss_bytes"}
REPLACEMENT_REASONS = {"crash", "memory", "recycle", "timeout"}


def dump(db_path: Path, *, path_prefix: str = "") -> dict[str, list[tuple]]:
    """Every compared table as sorted rows, volatile columns dropped, paths made relative."""
    conn = sqlite3.connect(db_path)
    tables = {}
    for table in COMPARED_TABLES:
        rows = table_rows(conn, table, VOLATILE_COLUMNS)
        if path_prefix:
            rows = [tuple(v.replace(path_prefix, "") if isinstance(v, str) else v for v in row) for row in rows]
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
def corpus_ingests(ingest_set, tmp_path_factory):
    """The whole corpus (or samples/ and the corrupt sample) at summary depth, with 2 workers and inline."""
    out = tmp_path_factory.mktemp("ingest")
    pooled, inline = out / "pooled.db", out / "inline.db"
    first = ingest(*ingest_set.inputs, "--db", str(pooled), "--workers", "2", "--depth", "summary")
    second = ingest(*ingest_set.inputs, "--db", str(inline), "--workers", "0", "--depth", "summary")
    return pooled, inline, first, second


def test_pool_and_inline_store_the_same_rows(corpus_ingests):
    pooled, inline, _, _ = corpus_ingests
    assert dump(pooled) == dump(inline)


def test_counts_match_the_manifest(corpus_ingests, ingest_set):
    pooled, _, (code, summary, _), _ = corpus_ingests
    assert code == 1  # the one broken input (the corpus' header-only testError2) fails; everything else is stored
    counts = summary["counts"]
    assert counts["discovered"] == counts["parsed"] == ingest_set.files
    assert counts["failed"] == 1 and counts["duplicate"] == 0
    assert counts["ok"] + counts["partial"] == ingest_set.files - 1
    conn = sqlite3.connect(pooled)
    assert conn.execute("select count(*) from replays").fetchone()[0] == ingest_set.stored
    assert {row[0] for row in conn.execute("select sha256 from replays")} <= ingest_set.hashes
    # every input has exactly one files row, every failure is classified
    assert conn.execute("select count(*) from files").fetchone()[0] == ingest_set.files
    failed = conn.execute("select path, error_kind, error_type from files where status = 'failed'").fetchall()
    assert [(Path(p).name, kind, kind_type) for p, kind, kind_type in failed] == [ingest_set.failure]
    # never a replay without its players, never a child row without its replay
    assert conn.execute(
        "select count(*) from replays r where not exists (select 1 from players p where p.replay_id = r.id)"
    ).fetchone()[0] == 0
    assert conn.execute("pragma foreign_key_check").fetchall() == []


def test_json_summary_keys_are_pinned(corpus_ingests, ingest_set):
    _, _, (_, summary, _), _ = corpus_ingests
    assert set(summary) == JSON_SUMMARY_KEYS
    assert set(summary["counts"]) == COUNT_KEYS
    assert set(summary["pool"]) == POOL_KEYS
    assert set(summary["pool"]["workers_replaced"]) == REPLACEMENT_REASONS
    assert summary["pool"]["workers_started"] >= 2  # this run had --workers 2
    # Files in flight: at most IN_FLIGHT_PER_WORKER tasks per worker, of FILES_PER_TASK files each.
    assert 1 <= summary["pool"]["max_in_flight"] <= 2 * IN_FLIGHT_PER_WORKER * FILES_PER_TASK
    assert summary["status"] == "partial" and summary["exit_code"] == 1
    assert set(summary["failures"][0]) == {"path", "kind", "type", "message", "stage", "release"}
    # read from the header when it survives (testError2's does: 5.0.10.88500)
    assert summary["failures"][0]["release"] == ingest_set.failure_release


def test_second_run_changes_nothing_and_parses_nothing(corpus_ingests, ingest_set):
    pooled, _, _, _ = corpus_ingests
    before = dump(pooled)
    code, summary, _ = ingest(*ingest_set.inputs, "--db", str(pooled), "--workers", "2", "--depth", "summary")
    assert summary["counts"]["parsed"] == 0
    assert summary["counts"]["skipped"] == summary["counts"]["discovered"]
    assert code == 0
    assert dump(pooled) == before
    runs = sqlite3.connect(pooled).execute("select count(*) from runs").fetchone()[0]
    assert runs == 2


def test_retry_failed_and_deeper_depth_reparse(corpus_ingests, ingest_set, game):
    pooled, _, _, _ = corpus_ingests
    with sqlite3.connect(pooled) as conn:
        retried = conn.execute("select count(*) from files where status in ('failed', 'partial')").fetchone()[0]
    assert retried >= 1
    _, summary, _ = ingest(*ingest_set.inputs, "--db", str(pooled), "--workers", "0", "--depth", "summary",
                           "--retry-failed")
    assert summary["counts"]["parsed"] == retried  # only the failed and partial files are tried again
    target = game("tests/replays/1v1.SC2Replay")
    _, summary, _ = ingest(str(target), "--db", str(pooled), "--workers", "0", "--depth", "stats")
    assert summary["counts"]["parsed"] == 1 and summary["counts"]["ok"] == 1
    conn = sqlite3.connect(pooled)
    depth = conn.execute("select depth from files where path = ?", (str(target),)).fetchone()[0]
    assert depth == "stats"
    assert conn.execute("select count(*) from player_stats").fetchone()[0] > 0


@pytest.fixture
def awkward_tree(tmp_path: Path, game) -> Path:
    """Replays under awkward names, a byte-identical copy and a corrupt file."""
    tree = tmp_path / "tree with spaces"
    (tree / "sub").mkdir(parents=True)
    one = game("tests/replays/1v1.SC2Replay")
    shutil.copy(one, tree / "plain.SC2Replay")
    shutil.copy(one, tree / "sub" / "copy of plain.sc2replay")  # duplicate, lower-case extension
    shutil.copy(game("tests/replays/2v2.SC2Replay"), tree / "sub" / "ünïcödé 'quoted' \"name\".SC2REPLAY")
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


def test_exit_code_zero_when_everything_is_stored(game, tmp_path: Path):
    code, summary, _ = ingest(str(game("tests/replays/1v1.SC2Replay")), "--db", str(tmp_path / "ok.db"),
                              "--workers", "0", "--depth", "summary")
    assert (code, summary["status"]) == (0, "success")


def test_unwritable_database_is_exit_3_with_one_line(tmp_path: Path, game):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, summary, stderr = ingest(str(game("tests/replays/1v1.SC2Replay")), "--db", str(blocker / "x.db"),
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


def test_failures_and_stats_commands(corpus_ingests, ingest_set):
    pooled, _, _, _ = corpus_ingests
    runner = CliRunner()
    listed = runner.invoke(cli, ["failures", "--db", str(pooled), "--json"], catch_exceptions=False)
    rows = json.loads(listed.stdout)
    assert [Path(r["path"]).name for r in rows] == [ingest_set.failure[0]]  # testError2.SC2Replay in the corpus
    stats = runner.invoke(cli, ["stats", "--db", str(pooled), "--json"], catch_exceptions=False)
    assert json.loads(stats.stdout)["replays"] == ingest_set.stored  # 420 in the corpus
    human = runner.invoke(cli, ["stats", "--db", str(pooled)], catch_exceptions=False)
    assert f"{ingest_set.stored} replays" in human.stdout


def test_real_cli_process_is_quiet_when_not_a_terminal(tmp_path: Path, game, replaycli):
    """No progress or colour escapes leak into redirected stderr; stdout carries only JSON."""
    target = game("tests/replays/1v1.SC2Replay")
    proc = replaycli.run("ingest", str(target), "--db", str(tmp_path / "p.db"), "--json", "--workers", "1",
                         "--depth", "summary")
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


def test_quick_start_ingests_the_samples_then_records_the_corrupt_one(tmp_path: Path, replaycli, samples: Path,
                                                                      corrupt_sample: Path):
    """The README's first command succeeds on a fresh machine; naming the corrupt sample records a failure."""
    db_path = str(tmp_path / "replays.db")
    wide = {"COLUMNS": "400"}  # the summary line on one line, whatever the run's timings
    first = replaycli.run("ingest", str(samples), "--db", db_path, text=True, env=wide)
    assert first.returncode == 0, first.stderr
    summary_line = next(line for line in first.stderr.splitlines() if "discovered" in line)
    assert summary_line.startswith("Ingest complete: 12 discovered, 12 parsed, 12 ok, 0 failed in ")
    second = replaycli.run("ingest", str(corrupt_sample), "--db", db_path, text=True, env=wide)
    assert second.returncode == 1, second.stderr
    assert "Ingest complete with failures: 1 discovered, 1 parsed, 0 ok, 1 failed in " in second.stderr
    listed = replaycli.run("failures", "--db", db_path, "--json", text=True)
    listed_rows = json.loads(listed.stdout)
    assert [(row["path"], row["error_kind"]) for row in listed_rows] == [(str(corrupt_sample), "parse_error")]


@pytest.mark.parametrize(("status", "opening"), [("success", "Ingest complete: "),
                                                 ("partial", "Ingest complete with failures: "),
                                                 ("error", "Ingest stopped: "),
                                                 ("interrupted", "Ingest interrupted: ")])
def test_summary_line_never_opens_with_a_file_status(status: str, opening: str):
    from replay_cli.render import make_console, print_ingest_summary

    out = io.StringIO()
    counts = dict.fromkeys(COUNT_KEYS, 1)
    print_ingest_summary({"status": status, "counts": counts, "wall_seconds": 1.0, "files_per_second": 7.0,
                          "failures": [], "db": "x.db", "run_id": 1}, {}, make_console(file=out))
    line = out.getvalue().splitlines()[0]
    assert line.startswith(opening)
    assert line.split(":")[0].split()[0].lower() not in {"ok", "duplicate", "partial", "failed", "skipped"}
