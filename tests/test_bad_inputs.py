"""The bad-input catalogue and members corrupted after decompression, through the real CLI and pool.

Mutants at volume (thousands per run, structure-aware) are tests/test_fuzz.py's job.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import mpyq
import pytest

from replay_cli.ingest import IngestOptions, ingest_paths
from replay_cli.parse import parse_file
from replay_cli.result import ERROR_KINDS
from replay_cli.store import open_store
from tests.hostile import bomb_replay, build_catalogue

REAL = ["tests/replays/1v1.SC2Replay", "tests/replays/2v2.SC2Replay", "tests/replays/1v1_computer.SC2Replay",
        "spawningtool/replays/patch_5_0_14_tvp.SC2Replay", "test_replays/1.0.0.16117/1.SC2Replay"]
# The CLI never holds a replay's decompressed members: a bomb must not move its memory.
PARENT_PEAK_RSS_CEILING_MIB = 300


def _peak_rss_mib(pid: int, stop: threading.Event, peak: list[float]) -> None:
    while not stop.is_set():
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]) / 1024)
        except OSError:
            return
        time.sleep(0.05)


def _files_rows(db_path: Path) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(db_path)
    rows = {Path(p).name: (s, k) for p, s, k in conn.execute("select path, status, error_kind from files")}
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    orphans = conn.execute(
        "select count(*) from replays r where not exists (select 1 from players p where p.replay_id = r.id)"
    ).fetchone()[0]
    assert orphans == 0, "a replay without its players"
    conn.close()
    return rows


def test_catalogue_each_bad_file_gets_its_own_kind_and_neighbours_are_stored(tmp_path: Path, game, replaycli):
    tree = tmp_path / "inputs"
    tree.mkdir()
    expected = build_catalogue(tree, game(REAL[0]).read_bytes())
    for index, suffix in enumerate(REAL):
        shutil.copy(game(suffix), tree / f"real-{index}.SC2Replay")
        expected[f"real-{index}.SC2Replay"] = ("ok", None)
    shutil.copy(game(REAL[0]), tree / "real-copy.SC2Replay")
    db_path = tmp_path / "bad.db"
    proc = replaycli.start("ingest", str(tree), "--db", str(db_path), "--workers", "2", "--json", "--timeout", "60",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stop, peak = threading.Event(), [0.0]
    watcher = threading.Thread(target=_peak_rss_mib, args=(proc.pid, stop, peak), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate(timeout=240)
    stop.set()
    assert proc.returncode == 1, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr
    rows = _files_rows(db_path)
    statuses = {name: rows[name] for name in expected}
    # Which byte-identical copy is stored first is a race; the other is the duplicate.
    pair = sorted([rows["real-0.SC2Replay"][0], rows["real-copy.SC2Replay"][0]])
    assert pair == ["duplicate", "ok"]
    statuses.pop("real-0.SC2Replay")
    expected.pop("real-0.SC2Replay")
    assert statuses == expected
    assert set(rows) == set(expected) | {"real-0.SC2Replay", "real-copy.SC2Replay"}, "one files row per input"
    summary = json.loads(stdout)
    assert summary["counts"]["failed"] == len([e for e in expected.values() if e[0] == "failed"])
    assert peak[0] < PARENT_PEAK_RSS_CEILING_MIB, f"parent peak RSS {peak[0]:.0f} MiB"
    print(f"\ncatalogue: {len(rows)} inputs, parent peak RSS {peak[0]:.0f} MiB")


def test_bomb_in_a_capped_worker_is_memory_not_a_machine_killer(tmp_path: Path):
    bomb = tmp_path / "bomb.SC2Replay"
    bomb.write_bytes(bomb_replay("replay.game.events"))
    db_path = tmp_path / "bomb.db"
    with open_store(db_path) as store:
        tally = ingest_paths(store, [str(bomb)], IngestOptions(depth="full", workers=1, max_memory=512 * 2**20))
    assert tally.failures[0]["kind"] == "memory"
    assert "MemoryError" in tally.failures[0]["message"]


def test_file_deleted_after_discovery_is_unreadable(tmp_path: Path, game):
    doomed = tmp_path / "doomed.SC2Replay"
    shutil.copy(game(REAL[0]), doomed)
    discovered = [str(doomed)]
    doomed.unlink()
    with open_store(tmp_path / "gone.db") as store:
        tally = ingest_paths(store, discovered, IngestOptions(depth="summary", workers=0))
    assert tally.failures[0]["kind"] == "unreadable"
    assert _files_rows(tmp_path / "gone.db") == {"doomed.SC2Replay": ("failed", "unreadable")}


@pytest.mark.parametrize("seed", range(3))
def test_flips_after_decompression_come_back_classified(monkeypatch, game, seed):
    """Corrupt members after bz2 (where CRCs cannot catch it): data or a classified failure."""
    rng = random.Random(seed)
    real_read = mpyq.MPQArchive.read_file

    def flipped_read(self, filename, force_decompress=False):
        data = real_read(self, filename, force_decompress)
        if data and filename.endswith((".events", ".details", ".initData")):
            data = bytearray(data)
            for _ in range(4):
                data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
            data = bytes(data)
        return data

    monkeypatch.setattr(mpyq.MPQArchive, "read_file", flipped_read)
    for suffix in REAL:
        result = parse_file(str(game(suffix)), "stats")
        assert result["status"] in ("ok", "partial", "failed")
        if result["status"] != "ok":
            assert result["error"]["kind"] in ERROR_KINDS
            assert "\n" not in result["error"]["message"]
        if result["status"] != "failed":
            json.dumps(result)
