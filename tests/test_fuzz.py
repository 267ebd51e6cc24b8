"""Fuzzing at volume: thousands of structure-aware mutants through the real `replaycli ingest`.

Mutants come from replay_cli.synth.mutate (members decompressed, rewritten, re-packed by the
project's own MPQ writer), seeded from `samples/`, replays the synth writer makes and, when the
real corpus is present, a few dozen small real replays. Untouched healthy replays are mixed in.
The inputs alternate between `ingest --depth summary` and `--depth stats` (mutants of the game
events go to a `--depth full` run, the only one that reads them), each with 2 workers, all into
one database, and the promise is checked: one files row per input, no
traceback, exit 0 or 1, every stored replay has its players, the database is intact, every healthy
replay is stored, and no process outlives the CLI.

Every run prints its seed; `REPLAYCLI_FUZZ_SEED=<seed> pytest tests/test_fuzz.py` rebuilds exactly
the same inputs (the real corpus present or absent as it was), and `mutant_at(fuzz_seeds(), seed,
index)` rebuilds one of them. A bigger run is
the same test with `REPLAYCLI_FUZZ_COUNT=50000`.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from replay_cli.result import ERROR_KINDS
from replay_cli.synth import describe_game, write_replay
from replay_cli.synth.catalogue import SCENARIOS
from replay_cli.synth.game import replay_members
from replay_cli.synth.mutate import HEADER, MEMBER_FAMILIES, MUTATION_KINDS, Mutant, SeedReplay, mutant_at
from replay_cli.synth.reader import GAME_EVENTS, TRACKER_EVENTS, ArchiveError, read_archive
from tests.conftest import ReplayCli, replays_dir, sample_games
from tests.processes import alive, descendants

# Read at import: the autouse fixture in conftest.py clears REPLAYCLI_* before each test runs.
FUZZ_COUNT = int(os.environ.get("REPLAYCLI_FUZZ_COUNT") or 5000)
FUZZ_SEED = int(os.environ.get("REPLAYCLI_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
SYNTH_CATALOGUE, SYNTH_SEEDS = 1717, 12  # synthetic seed replays (distinct from samples/)
# samples/ already has 2v2, 4v4 and long games; the extra synth seeds come from the scenarios that are
# cheap to parse at stats depth, which keeps thousands of mutants inside CI's time.
CHEAP_SCENARIOS = ("1v1", "vs-ai", "unicode", "hostile", "short")
HEALTHY_CATALOGUE, HEALTHY_COUNT = 1718, 16  # untouched replays that must all be stored
REAL_SEEDS = 30  # the smallest distinct real replays, when the corpus is present
# A mutant that makes a worker spin is killed after this long (and re-run alone to confirm), so a
# handful of hangs cannot eat the run's time budget; healthy replays parse in milliseconds.
FILE_TIMEOUT_S = 5
# Far beyond a healthy run (tens of milliseconds a file, even on a loaded machine): only a wedged CLI
# reaches it, at the default count or at a bigger one.
RUN_DEADLINE_S = max(600, FUZZ_COUNT // 5)
CHILDREN_GONE_S = 2.0  # how long a leftover is watched after the exit, to say whether it goes at all
SAMPLE_INTERVAL_S = 0.05
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FAMILY_CHECK_COUNT = 600  # enough for the rarest family to turn up many times
DEPTHS = ("summary", "stats", "full")
# sc2reader reads game events only at full depth and tracker events from stats on: a mutant of one of
# those members goes to the run that reads it, the others alternate between summary and stats.
DEPTH_OF_MEMBER = {GAME_EVENTS: "full", TRACKER_EVENTS: "stats"}

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc to watch processes")


def tag(text: str) -> str:
    """Prefix an assertion message with what reproduces the run."""
    return f"[fuzz seed {FUZZ_SEED}, {FUZZ_COUNT} mutants; rerun with REPLAYCLI_FUZZ_SEED={FUZZ_SEED}] {text}"


def fuzz_seeds() -> list[SeedReplay]:
    """The replays mutants derive from: samples/, synth replays and small real ones when present."""
    seeds = []
    for path in sample_games():
        try:
            seeds.append(SeedReplay.load(path.name, path.read_bytes()))
        except ArchiveError:
            continue  # a sample the reader cannot open has nothing to mutate
    cheap = [index for index in range(SYNTH_SEEDS * len(SCENARIOS)) if SCENARIOS[index % len(SCENARIOS)] in CHEAP_SCENARIOS]
    for index in cheap[:SYNTH_SEEDS]:
        seeds.append(SeedReplay.load(f"synth-{index}", write_replay(describe_game(SYNTH_CATALOGUE, index), "zlib")))
    corpus = replays_dir()
    if not (corpus / "MANIFEST.tsv").is_file():
        return seeds
    seen: set[bytes] = set()
    for path in sorted(corpus.rglob("*.SC2Replay"), key=lambda p: (p.stat().st_size, p.as_posix())):
        data = path.read_bytes()
        if data in seen:
            continue
        seen.add(data)
        try:
            seeds.append(SeedReplay.load(f"real:{path.relative_to(corpus)}", data))
        except ArchiveError:
            continue  # encrypted or empty archives are not seeds
        if sum(seed.name.startswith("real:") for seed in seeds) >= REAL_SEEDS:
            break
    return seeds


@dataclass(frozen=True)
class Inputs:
    mutants: dict[str, tuple[int, Mutant]]  # path -> (index, mutant)
    healthy: dict[str, int]  # path -> catalogue index
    folders: dict[str, Path]  # depth -> the folder ingested at that depth
    manifest: Path


def write_inputs(root: Path) -> Inputs:
    """Write the mutants and healthy replays into one folder per depth, and a manifest."""
    seeds = fuzz_seeds()
    folders = {depth: root / depth for depth in DEPTHS}
    for folder in folders.values():
        folder.mkdir()
    mutants, healthy, lines = {}, {}, ["index\tkind\tmember\torigin\tdetail"]
    for index in range(FUZZ_COUNT):
        mutant = mutant_at(seeds, FUZZ_SEED, index)
        depth = DEPTH_OF_MEMBER.get(mutant.member, DEPTHS[index % 2])
        path = folders[depth] / f"{index:05d}-{mutant.kind}.SC2Replay"
        path.write_bytes(mutant.data)
        mutants[str(path)] = (index, mutant)
        lines.append(f"{index}\t{mutant.kind}\t{mutant.member}\t{mutant.origin}\t{mutant.detail}")
    for index in range(HEALTHY_COUNT):
        path = folders[DEPTHS[index % len(DEPTHS)]] / f"healthy-{index:02d}.SC2Replay"
        path.write_bytes(write_replay(describe_game(HEALTHY_CATALOGUE, index), "zlib"))
        healthy[str(path)] = index
    manifest = root / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Inputs(mutants, healthy, folders, manifest)


@dataclass
class IngestRun:
    depth: str
    pid: int
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    children: set[int]
    alive_at_exit: set[int]  # children still running the moment the CLI had exited
    gone_after_s: float  # how long after the exit the last of them was gone (polled up to 2 s)
    cpu_seconds: dict[int, float]  # pid -> CPU time at its last sample: the CLI's own and its workers'


def _cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time of a live process, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _watch(pid: int, seen: set[int], cpu: dict[int, float], stop: threading.Event) -> None:
    """Record every process below the CLI while it runs (pool workers are replaced as they go)."""
    while not stop.is_set():
        seen.update(descendants(pid))
        for process in (pid, *seen):
            used = _cpu_seconds(process)
            if used is not None:
                cpu[process] = used
        time.sleep(SAMPLE_INTERVAL_S)


def run_ingest(replaycli: ReplayCli, folder: Path, db: Path, depth: str, logs: Path) -> IngestRun:
    """Run `replaycli ingest FOLDER` in a subprocess; return what it did and what it left running."""
    out, err = logs / f"{depth}.out", logs / f"{depth}.err"
    started = time.monotonic()
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = replaycli.start("ingest", str(folder), "--db", str(db), "--workers", "2", "--depth", depth,
                               "--timeout", str(FILE_TIMEOUT_S), "--json", "--quiet", stdout=stdout, stderr=stderr)
    children: set[int] = set()
    cpu: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(proc.pid, children, cpu, stop), daemon=True)
    watcher.start()
    try:
        code = proc.wait(RUN_DEADLINE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    finally:
        stop.set()
        watcher.join()
    seconds = time.monotonic() - started
    at_exit = {pid for pid in children if alive(pid)}
    for pid in list(at_exit):
        at_exit |= descendants(pid)
    exited = time.monotonic()
    while any(alive(pid) for pid in at_exit) and time.monotonic() < exited + CHILDREN_GONE_S:
        time.sleep(SAMPLE_INTERVAL_S)
    return IngestRun(depth, proc.pid, code, out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace"),
                     seconds, children, at_exit, time.monotonic() - exited, cpu)


def _describe_paths(inputs: Inputs, paths: list[str], limit: int = 5) -> str:
    """Index, kind and change of a few mutant paths, enough to rebuild them."""
    shown = []
    for path in sorted(paths)[:limit]:
        if path in inputs.mutants:
            index, mutant = inputs.mutants[path]
            shown.append(f"#{index} {mutant.kind} {mutant.member} of {mutant.origin}: {mutant.detail}")
        else:
            shown.append(path)
    return f"{len(paths)}: " + "; ".join(shown)


Statuses = dict[str, tuple[str, str | None, str | None]]  # path -> (files.status, error_kind, depth)


def _traceback_tail(stderr: str) -> str:
    """The last lines of the first traceback on stderr: where it was raised and what."""
    lines = stderr[stderr.index("Traceback"):].splitlines()
    end = next((i for i, line in enumerate(lines) if i and not line.startswith((" ", "Traceback"))), len(lines) - 1)
    return " | ".join(line.strip() for line in lines[max(0, end - 2):end + 1])


def check_run(run: IngestRun) -> list[str]:
    """What broke the CLI's promise in one run: a traceback, an exit code, a missing summary, a leftover."""
    problems = []
    what = f"ingest --depth {run.depth}"
    if "Traceback" in run.stderr:
        problems.append(f"{what}: traceback on stderr: {_traceback_tail(run.stderr)}")
    if run.exit_code not in (0, 1):
        problems.append(f"{what}: exit {run.exit_code}: {run.stderr[-1000:]}")
    try:
        summary_code = json.loads(run.stdout)["exit_code"]
    except (ValueError, KeyError, TypeError):
        problems.append(f"{what}: no JSON summary on stdout ({len(run.stdout)} characters)")
    else:
        if summary_code != run.exit_code:
            problems.append(f"{what}: the JSON summary says exit {summary_code}, the process exited {run.exit_code}")
    if not run.children:
        problems.append(f"{what}: no worker process was ever seen below the CLI")
    if run.alive_at_exit:
        # A script may move or delete the folder the moment ingest returns: nothing of it may still run.
        problems.append(f"{what}: {sorted(run.alive_at_exit)} still running when the CLI had exited "
                        f"(gone {run.gone_after_s:.2f} s later, polled up to {CHILDREN_GONE_S} s)")
    return problems


def read_statuses(db: Path) -> Statuses:
    """The files rows as path -> (status, error kind, depth); empty when there is no files table."""
    conn = sqlite3.connect(db)
    try:
        return {p: (s, k, d) for p, s, k, d in conn.execute("SELECT path, status, error_kind, depth FROM files")}
    except sqlite3.Error:
        return {}
    finally:
        conn.close()


def check_database(db: Path, inputs: Inputs) -> list[str]:
    """What is wrong with the database: integrity, one files row per input, players for every replay."""
    conn = sqlite3.connect(db)
    try:
        if conn.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
            return ["PRAGMA integrity_check is not ok"]
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'files'").fetchone():
            return ["the database has no files table"]
        violations = conn.execute("PRAGMA foreign_key_check").fetchall()
        problems = [f"foreign key violations: {violations[:5]}"] if violations else []
        counts = conn.execute("SELECT path, count(*) FROM files GROUP BY path HAVING count(*) > 1").fetchall()
        without_players = [sha for (sha,) in conn.execute(
            "SELECT sha256 FROM replays r WHERE NOT EXISTS "
            "(SELECT 1 FROM players p WHERE p.replay_id = r.id)")]
        dangling = [path for (path,) in conn.execute(
            "SELECT path FROM files f WHERE f.status IN ('ok', 'partial', 'duplicate') "
            "AND NOT EXISTS (SELECT 1 FROM replays r WHERE r.sha256 = f.sha256)")]
    finally:
        conn.close()
    statuses = read_statuses(db)
    expected = set(inputs.mutants) | set(inputs.healthy)
    missing = sorted(expected - set(statuses))
    unknown = [path for path, (_s, kind, _d) in statuses.items() if kind is not None and kind not in ERROR_KINDS]
    problems += [
        *([f"inputs without a files row, {_describe_paths(inputs, missing)}"] if missing else []),
        *([f"files rows for paths never given: {sorted(set(statuses) - expected)[:5]}"]
          if set(statuses) - expected else []),
        *([f"paths with more than one files row: {counts[:5]}"] if counts else []),
        *([f"{len(without_players)} stored replays without players: {without_players[:5]}"] if without_players else []),
        *([f"files rows pointing at no replay, {_describe_paths(inputs, dangling)}"] if dangling else []),
        *([f"error kinds outside ERROR_KINDS, {_describe_paths(inputs, unknown)}"] if unknown else []),
    ]
    return problems


def check_healthy(db: Path, inputs: Inputs, statuses: Statuses) -> list[str]:
    """Which untouched replays are not stored ok, at their run's depth, with the players they were written with."""
    problems = []
    conn = sqlite3.connect(db)
    try:
        for path, index in inputs.healthy.items():
            name, depth = Path(path).name, Path(path).parent.name
            if statuses.get(path) != ("ok", None, depth):
                problems.append(f"healthy {name} at {depth}: files row {statuses.get(path)}")
                continue
            names = sorted(name for (name,) in conn.execute(
                "SELECT p.name FROM players p JOIN replays r ON r.id = p.replay_id JOIN files f ON f.sha256 = r.sha256 "
                "WHERE f.path = ? AND NOT p.is_observer", (path,)))
            written = sorted(p.name for p in describe_game(HEALTHY_CATALOGUE, index).players)
            if names != written:
                problems.append(f"healthy {name} at {depth}: players {names}, written {written}")
    finally:
        conn.close()
    return problems


def report(inputs: Inputs, statuses: Statuses, runs: list[IngestRun], build_s: float, total_s: float) -> str:
    """The seed, the inputs per mutation kind with their outcomes, and the timings, as printable lines."""
    by_kind: dict[str, Counter[str]] = {}
    for path, (_index, mutant) in inputs.mutants.items():
        by_kind.setdefault(mutant.kind, Counter())[statuses.get(path, ("missing",))[0]] += 1
    lines = [f"[fuzz] seed {FUZZ_SEED}: {len(inputs.mutants)} mutants + {len(inputs.healthy)} healthy replays; "
             f"manifest {inputs.manifest}"]
    for kind, outcomes in sorted(by_kind.items(), key=lambda item: -sum(item[1].values())):
        shown = " ".join(f"{status} {n}" for status, n in sorted(outcomes.items()))
        lines.append(f"[fuzz]   {kind:16} {sum(outcomes.values()):5}  {shown}")
    for run in runs:
        main_cpu = run.cpu_seconds.get(run.pid, 0.0)
        lines.append(f"[fuzz] ingest --depth {run.depth}: exit {run.exit_code} in {run.seconds:.1f} s, "
                     f"{len(run.children)} child processes seen, {len(run.alive_at_exit)} alive at its exit; "
                     f"CPU seconds (sampled): CLI {main_cpu:.1f}, "
                     f"children {sum(run.cpu_seconds.values()) - main_cpu:.1f}")
    lines.append(f"[fuzz] building inputs {build_s:.1f} s; whole test {total_s:.1f} s; "
                 f"reproduce with REPLAYCLI_FUZZ_SEED={FUZZ_SEED}")
    return "\n".join(lines)


def test_reader_reads_back_what_the_writer_wrote():
    description = describe_game(SYNTH_CATALOGUE, 3)
    archive = read_archive(write_replay(description))
    assert dict(archive.members) == dict(replay_members(description))


def test_mutants_are_reproducible_from_seed_and_index():
    seeds = fuzz_seeds()
    first = [mutant_at(seeds, FUZZ_SEED, index) for index in range(40)]
    again = [mutant_at(seeds, FUZZ_SEED, index) for index in range(40)]
    assert first == again, tag("the same seed and index gave different mutants")
    assert len({m.data for m in first}) > 30, tag("mutants repeat")


def test_every_family_applies_and_member_mutants_stay_valid_archives():
    """Member families re-pack into archives the reader opens, with the named member changed or gone."""
    seeds = fuzz_seeds()
    by_name = {seed.name: seed for seed in seeds}
    mutants = [mutant_at(seeds, FUZZ_SEED, index) for index in range(FAMILY_CHECK_COUNT)]
    assert {m.kind for m in mutants} == set(MUTATION_KINDS), tag("a mutation family never applied")
    for index, mutant in enumerate(mutants):
        if mutant.kind not in MEMBER_FAMILIES:
            continue
        archive = read_archive(mutant.data)
        seed = by_name[mutant.origin].archive
        if mutant.member == HEADER:
            changed = archive.user_data != seed.user_data
        else:
            changed = dict(archive.members).get(mutant.member) != dict(seed.members)[mutant.member]
        assert changed, tag(f"mutant #{index} ({mutant.kind} of {mutant.member}) left the member as it was")


def test_thousands_of_mutants_never_break_ingest(tmp_path: Path, replaycli: ReplayCli,
                                                 capsys: pytest.CaptureFixture[str]):
    started = time.monotonic()
    inputs = write_inputs(tmp_path)
    build_s = time.monotonic() - started
    db = tmp_path / "fuzz.db"
    runs = [run_ingest(replaycli, folder, db, depth, tmp_path) for depth, folder in inputs.folders.items()]
    statuses = read_statuses(db)
    # Straight to the terminal, passing or not: every CI log keeps the seed that rebuilds this run.
    with capsys.disabled():
        print("\n" + report(inputs, statuses, runs, build_s, time.monotonic() - started))
    problems = [problem for run in runs for problem in check_run(run)]
    problems += check_database(db, inputs)
    problems += check_healthy(db, inputs, statuses)
    assert not problems, tag(f"{len(problems)} problems (manifest {inputs.manifest}):\n" + "\n".join(problems))
