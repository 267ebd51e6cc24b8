"""The bad-input catalogue and mutated replays (real ones when the corpus is there), through the real CLI and pool."""

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay_cli.ingest import IngestOptions, ingest_paths
from replay_cli.parse import parse_file
from replay_cli.result import ERROR_KINDS
from replay_cli.store import open_store
from tests.hostile import bomb_replay, build_catalogue
from tests.processes import descendants, multiprocessing_helpers

REAL = ["tests/replays/1v1.SC2Replay", "tests/replays/2v2.SC2Replay", "tests/replays/1v1_computer.SC2Replay",
        "spawningtool/replays/patch_5_0_14_tvp.SC2Replay", "test_replays/1.0.0.16117/1.SC2Replay"]
# The CLI never holds a replay's decompressed members: a bomb must not move its memory.
PARENT_PEAK_RSS_CEILING_MIB = 300
MUTATION_EXAMPLES = 15
FILES_PER_EXAMPLE = 6
mutated_inputs_seen: list[int] = []


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
        "select count(*) from replays r where not exists (select 1 from players p where p.replay_sha256 = r.sha256)"
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


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)),
                                        min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("zero-range"), st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 4096))),
    st.tuples(st.just("repeat-chunk"), st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 4096))),
)


def mutate(data: bytes, mutation: tuple) -> bytes:
    """Apply one mutation to replay bytes."""
    kind, arg = mutation
    out = bytearray(data)
    if kind == "flip":
        for where, xor in arg:
            out[int(where * len(out))] ^= xor
    elif kind == "truncate":
        del out[int(arg * len(out)):]
    elif kind == "zero-range":
        start = int(arg[0] * len(out))
        out[start:start + arg[1]] = bytes(len(out[start:start + arg[1]]))
    else:
        start = int(arg[0] * len(out))
        out[start:start] = out[start:start + arg[1]]
    return bytes(out)


@pytest.fixture(scope="module")
def real_bytes(game) -> list[bytes]:
    return [game(suffix).read_bytes() for suffix in REAL]


@settings(max_examples=MUTATION_EXAMPLES, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(REAL) - 1), MUTATIONS),
                min_size=FILES_PER_EXAMPLE, max_size=FILES_PER_EXAMPLE))
def test_mutated_real_replays_never_break_a_batch(tmp_path_factory, real_bytes, batch):
    folder = tmp_path_factory.mktemp("mutants")
    paths = []
    for index, (source, mutation) in enumerate(batch):
        path = folder / f"mutant-{index}.SC2Replay"
        path.write_bytes(mutate(real_bytes[source], mutation))
        paths.append(str(path))
    before = descendants()
    with open_store(folder / "m.db") as store:
        tally = ingest_paths(store, paths, IngestOptions(depth="stats", workers=2, timeout=30))
    rows = _files_rows(folder / "m.db")
    assert set(rows) == {Path(p).name for p in paths}, "every input has exactly one files row"
    assert all(kind is None or kind in ERROR_KINDS for _, kind in rows.values())
    assert tally.counts["parsed"] == len(paths)
    deadline = time.monotonic() + 3
    while descendants() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = descendants() - before - multiprocessing_helpers()
    assert not leftovers, f"orphan processes {leftovers}"
    mutated_inputs_seen.append(len(paths))
    print(f"mutation batch {len(mutated_inputs_seen)}: {sum(mutated_inputs_seen)} mutated inputs so far")


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
