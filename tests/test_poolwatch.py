"""What a run's worker pool did: workers started and replaced by reason, queue and memory.

Real pebble pools and the real CLI; the misbehaving files are tests/faults.py's and a
decompression bomb the synth writer builds.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from replay_cli.poolwatch import PoolMonitor
from replay_cli.runner import run_parses
from tests.faults import fault_parse
from tests.test_parse_bounds import CAP_MIB, _game_events_bomb

MiB = 1024 * 1024


def _run(paths: list[str], monitor: PoolMonitor, **overrides: object) -> list[dict]:
    options: dict = {"depth": "stats", "workers": 2, "timeout": 1.0, "max_memory": 512 * MiB,
                     "max_bytes": 50 * MiB, "parse_fn": fault_parse, "monitor": monitor}
    options.update(overrides)
    return [r for r in run_parses(paths, **options) if r is not None]


def _files(folder: Path, names: list[str]) -> list[str]:
    for name in names:
        (folder / name).touch()
    return [str(folder / name) for name in names]


def test_each_replacement_is_counted_under_its_reason_and_logged(tmp_path: Path, caplog) -> None:
    paths = _files(tmp_path, ["a-selfkill", "b-hang", "c-memory", "d-ok", "e-ok", "f-ok"])
    monitor = PoolMonitor()
    with caplog.at_level(logging.INFO, logger="replay_cli.pool"):
        results = _run(paths, monitor)
    kinds = sorted((r["error"] or {}).get("kind", "ok") for r in results)
    assert kinds == ["memory", "ok", "ok", "ok", "timeout", "worker_crash"]
    numbers = monitor.numbers()
    # The crash and the hang are each re-run alone before they are blamed: two workers each.
    assert numbers.workers_replaced == {"crash": 2, "memory": 1, "recycle": 0, "timeout": 2}
    logged = [r.getMessage().split(": ")[-1] for r in caplog.records if "replaced" in r.getMessage()]
    assert sorted(logged) == ["crash", "crash", "memory", "timeout", "timeout"]
    # At least every worker that ran a file: the first two (the crash and the hang), the one that took the
    # bomb and the one that took the rest, then one per re-check alone. Idle replacements may go unseen.
    assert numbers.workers_started >= 6
    assert 1 <= numbers.max_in_flight <= 6  # the window: 3 per worker
    assert numbers.max_queued <= numbers.max_in_flight
    assert numbers.max_worker_rss_bytes is not None and numbers.max_worker_rss_bytes > 10 * MiB


def test_workers_that_served_their_tasks_count_as_recycled(tmp_path: Path, caplog) -> None:
    paths = _files(tmp_path, [f"{n}-ok" for n in range(6)])
    monitor = PoolMonitor()
    with caplog.at_level(logging.INFO, logger="replay_cli.pool"):
        results = _run(paths, monitor, workers=1, max_tasks_per_worker=2)
    assert [r["status"] for r in results] == ["ok"] * 6
    numbers = monitor.numbers()
    # One worker serves two files: the third worker may still be exiting when the pool stops.
    assert numbers.workers_replaced["recycle"] in (2, 3), numbers
    assert sum(numbers.workers_replaced.values()) == numbers.workers_replaced["recycle"]
    assert numbers.workers_started >= 3
    assert len([r for r in caplog.records if r.getMessage().endswith("replaced: recycle")]) == \
        numbers.workers_replaced["recycle"]


def test_a_bomb_replaces_its_worker_for_memory_in_runs_and_json(tmp_path: Path, replaycli, samples: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a-bomb.SC2Replay").write_bytes(_game_events_bomb())
    for name in ("00-1v1.SC2Replay", "01-2v2.SC2Replay"):
        (folder / f"b-{name}").write_bytes((samples / name).read_bytes())
    db = tmp_path / "bomb.db"
    proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "1", "--depth", "full",
                         "--max-memory", str(CAP_MIB), "--timeout", "60", "--json", "-v", text=True)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    pool = summary["pool"]
    assert pool["workers_replaced"] == {"crash": 0, "memory": 1, "recycle": 0, "timeout": 0}
    assert pool["workers_started"] == 2  # the first worker retired after the bomb; a fresh one took the rest
    assert 1 <= pool["max_in_flight"] <= 3
    assert len([line for line in proc.stderr.splitlines() if "replaced: memory" in line]) == 1, proc.stderr
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        run = dict(conn.execute("SELECT * FROM runs").fetchone())
        kinds = dict(conn.execute("SELECT path, coalesce(error_kind, status) FROM files").fetchall())
    assert {Path(p).name: k for p, k in kinds.items()} == {
        "a-bomb.SC2Replay": "memory", "b-00-1v1.SC2Replay": "ok", "b-01-2v2.SC2Replay": "ok"}
    assert (run["replaced_memory"], run["replaced_crash"], run["replaced_recycle"], run["replaced_timeout"]) == \
        (1, 0, 0, 0)
    assert (run["workers_started"], run["max_queued"], run["max_in_flight"], run["max_worker_rss_bytes"]) == (
        pool["workers_started"], pool["max_queued"], pool["max_in_flight"], pool["max_worker_rss_bytes"])
    # The bomb's worker grew towards its cap before the MemoryError: the run's peak says so.
    assert 64 * MiB < run["max_worker_rss_bytes"] <= CAP_MIB * MiB
    shown = replaycli.run("stats", "--db", str(db), env={"COLUMNS": "250"}, text=True)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    header = next(line for line in lines if "workers_started" in line)  # the recent runs table's
    row = lines[lines.index(header) + 2]  # below the rule under the header: the one run
    cells = dict(zip([c.strip() for c in header.split("┃")], [c.strip() for c in row.split("│")]))
    assert (cells["workers_started"], cells["workers_replaced"]) == ("2", "memory 1")
    assert cells["max_worker_mib"] == str(round(run["max_worker_rss_bytes"] / MiB, 1))


@pytest.mark.parametrize("workers", [0])
def test_inline_runs_record_no_workers(tmp_path: Path, replaycli, samples: Path, workers: int) -> None:
    db = tmp_path / "inline.db"
    proc = replaycli.run("ingest", str(samples / "00-1v1.SC2Replay"), "--db", str(db), "--workers", str(workers),
                         "--json", text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pool"] == {
        "workers_started": 0, "workers_replaced": {"crash": 0, "memory": 0, "recycle": 0, "timeout": 0},
        "max_queued": 0, "max_in_flight": 0, "max_worker_rss_bytes": None}
