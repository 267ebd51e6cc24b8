"""Per-file cost, measured by the worker that parsed the file: CPU seconds and peak memory.

Real worker processes, real SQLite. A synthetic game with 15,000 build-order entries stands in
for a huge replay; each file is ingested by its own run, so each gets a fresh worker whose
memory holds nothing of the other file.
"""

from __future__ import annotations

import sqlite3
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from replay_cli.synth import BuildItem, describe_game, write_replay

SEED = 11
MIB = 1024**2
PLAUSIBLE_MIB = (20, 1024)  # above an interpreter with sc2reader loaded; below the default cap
BIG_BUILD_ORDER = 15_000


def _huge_game() -> bytes:
    desc = describe_game(SEED, 0)
    first = desc.players[0]
    unit = {"Terran": "Marine", "Protoss": "Zealot", "Zerg": "Zergling"}[first.race]
    items = tuple(BuildItem(loop=100 + i, name=unit) for i in range(BIG_BUILD_ORDER))
    return write_replay(replace(desc, players=(replace(first, build_order=items), *desc.players[1:])))


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
