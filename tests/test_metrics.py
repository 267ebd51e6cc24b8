"""Per-file cost, measured by the worker that parsed the file: CPU seconds and peak memory.

Real worker processes, real SQLite. A synthetic game with 15,000 build-order entries stands in
for a huge replay; each file is ingested by its own run, so each gets a fresh worker whose
memory holds nothing of the other file.
"""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from pathlib import Path

import pytest

from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.game import with_units

SEED = 11
MIB = 1024**2
PLAUSIBLE_MIB = (20, 1024)  # above an interpreter with sc2reader loaded; below the default cap
BIG_BUILD_ORDER = 15_000


def _huge_game() -> bytes:
    return write_replay(with_units(describe_game(SEED, 0), BIG_BUILD_ORDER))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-file peaks need /proc/self/clear_refs")
def test_each_file_records_its_own_cpu_and_peak_memory(tmp_path: Path, replaycli) -> None:
    db = tmp_path / "metrics.db"
    games = {"small": write_replay(describe_game(SEED, 1)), "huge": _huge_game()}
    for name, data in games.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.SC2Replay").write_bytes(data)
        proc = replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "1", text=True)
        assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(db) as conn:
        measured = {Path(path).stem: (cpu, peak, scope) for path, cpu, peak, scope in conn.execute(
            "SELECT path, cpu_seconds, peak_rss_bytes, peak_rss_scope FROM files")}
    for name, (cpu, peak, scope) in measured.items():
        assert scope == "file", name
        assert PLAUSIBLE_MIB[0] * MIB < peak < PLAUSIBLE_MIB[1] * MIB, (name, peak)
        assert cpu > 0, name
    assert measured["huge"][1] > measured["small"][1]
    assert measured["huge"][0] > measured["small"][0]


def test_stats_reports_costs_and_degraded_reasons_that_sql_agrees_with(tmp_path: Path, replaycli) -> None:
    from tests.test_trust import next_patch_replay

    folder = tmp_path / "in"
    folder.mkdir()
    for index in range(4):
        (folder / f"game-{index}.SC2Replay").write_bytes(write_replay(describe_game(SEED, 10 + index)))
    (folder / "next-patch.SC2Replay").write_bytes(next_patch_replay())
    db = tmp_path / "stats.db"
    assert replaycli.run("ingest", str(folder), "--db", str(db), "--workers", "2", text=True).returncode == 0
    proc = replaycli.run("stats", "--db", str(db), "--json", text=True)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    assert stats["degraded_by_reason"] == [{"reason": "datapack_gap", "replays": 1}]
    [by_depth] = stats["cost_by_depth"]
    with sqlite3.connect(db) as conn:
        times = sorted(t for (t,) in conn.execute("SELECT parse_seconds FROM files"))
        peaks = sorted(p for (p,) in conn.execute("SELECT peak_rss_bytes FROM files"))
        heaviest = conn.execute("SELECT path FROM files ORDER BY peak_rss_bytes DESC, path").fetchone()[0]
    assert (by_depth["depth"], by_depth["files"]) == ("stats", 5)
    assert by_depth["p50_seconds"] == times[math.ceil(5 * 0.5) - 1]
    assert by_depth["p95_seconds"] == times[-1]
    assert by_depth["max_peak_mib"] == round(peaks[-1] / MIB, 1)
    assert stats["heaviest_files"][0]["path"] == heaviest
    assert len(stats["heaviest_files"]) == 5
