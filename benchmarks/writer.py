"""The writer's ceiling: results parsed once, then fed to the main process's writer alone.

Every corpus file is parsed once (2 workers, depth `stats` by default) and the results are
pickled to a temporary file. Each round then replays them through `BatchWriter` into a fresh
database, exactly as `replaycli ingest` commits them (same flush policy, one transaction per
batch), in a fresh Python process per write so nothing warms up between configurations. It
prints per configuration the writer's CPU per stored file (process time of the write alone),
the files/s one writer can take, and the database's bytes per replay. Two configurations use this
checkout: the results as `replaycli ingest`'s pool workers send them (the big child tables packed
as a small database, rowpack.py) and as plain rows (what inline parses, the service and Dask store).

`--baseline-src DIR` adds a configuration that writes the same results with the `replay_cli`
package of another checkout (for example a `git worktree` of an earlier commit), interleaved
with this one round by round, so the two writers are compared side by side in one run.

    python benchmarks/writer.py                       # whole corpus, 3 rounds
    python benchmarks/writer.py --quick               # every 10th file
    git worktree add /tmp/before HEAD~5 && python benchmarks/writer.py --baseline-src /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling parse_depths.py

from parse_depths import command_line, format_table, load_corpus, machine_line, resolve_corpus

REPO = Path(__file__).resolve().parent.parent
PACKED, PLAIN, BASELINE = "this checkout, packed rows", "this checkout, plain rows", "baseline, plain rows"
DEFAULT_ROUNDS = 3
# Runs in a fresh interpreter whose sys.path starts with the checkout under test: it loads the
# pickled (FileStat fields, result) pairs, writes them through BatchWriter and reports JSON.
WRITE_ONE = r"""
import json, os, pickle, sys, time
from replay_cli.store import FileStat, open_store
from replay_cli.writer import BatchWriter
pairs = pickle.load(open(sys.argv[1], "rb"))
db_path = sys.argv[2]
with open_store(db_path) as store:
    run_id = store.begin_run("benchmark", {}, 2, "stats")
    writer = BatchWriter(store, run_id)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for stat, result in pairs:
        writer.add(FileStat(*stat), result)
        writer.flush_if_due()
    writer.flush()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    replays = store.db.execute("SELECT count(*) FROM replays").fetchone()[0]
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
print(json.dumps({"cpu": cpu, "wall": wall, "files": len(pairs), "replays": replays}))
"""


def pack(result: dict) -> dict:
    """The result as an ingest pool worker sends it."""
    from replay_cli.rowpack import pack as pack_rows

    return pack_rows(result)  # type: ignore[arg-type,return-value]


def parse_once(paths: list[str], depth: str) -> list[tuple[tuple[str, int, int], dict]]:
    """Parse every path once with 2 workers and keep (stat fields, result) of each."""
    from replay_cli.runner import run_parses

    results = [r for r in run_parses(paths, depth=depth, workers=2, timeout=120.0, max_memory=None,
                                     max_bytes=64 * 1024 * 1024) if r is not None]
    pairs = []
    for result in results:
        stat = os.stat(result["source"])
        pairs.append(((result["source"], stat.st_size, stat.st_mtime_ns), result))
    return pairs


def write_once(src: Path, pairs_file: Path, folder: Path) -> dict:
    """Write the pickled results into a fresh database with the replay_cli of src; return its report."""
    db_path = folder / "writer.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src)}
    done = subprocess.run([sys.executable, "-c", WRITE_ONE, str(pairs_file), str(db_path)], env=env,
                          capture_output=True, text=True, check=True, cwd=src)
    report = json.loads(done.stdout)
    report["db_bytes"] = db_path.stat().st_size
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--quick", action="store_true", help="every 10th file")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--depth", default="stats")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="a checkout of another revision, written side by side with this one")
    args = parser.parse_args()
    paths = [str(f.path) for f in load_corpus(resolve_corpus(args.corpus), args.quick)]
    with tempfile.TemporaryDirectory(prefix="replaycli-writer-") as tmp:
        folder = Path(tmp)
        print(f"parsing {len(paths)} files once at {args.depth} ...", file=sys.stderr)
        pairs = parse_once(paths, args.depth)
        plain_file, packed_file = folder / "plain.pickle", folder / "packed.pickle"
        plain_file.write_bytes(pickle.dumps(pairs))
        packed_file.write_bytes(pickle.dumps([(stat, pack(result)) for stat, result in pairs]))
        configs = {PACKED: (REPO, packed_file), PLAIN: (REPO, plain_file)}
        if args.baseline_src is not None:
            configs[BASELINE] = (args.baseline_src.resolve(), plain_file)
        runs: dict[str, list[dict]] = {label: [] for label in configs}
        for round_no in range(args.rounds):
            order = list(configs.items())
            order = order[round_no % len(order):] + order[:round_no % len(order)]
            for label, (src, pairs_file) in order:
                runs[label].append(write_once(src, pairs_file, folder))
                print(f"round {round_no + 1}: {label} done", file=sys.stderr)
    report(runs, args)
    return 0


def report(runs: dict[str, list[dict]], args: argparse.Namespace) -> None:
    """Print per configuration the median CPU per file, files/s and bytes per replay, then the ratios."""
    rows = []
    medians = {}
    for label, reports in runs.items():
        files = reports[0]["files"]
        cpu_ms = statistics.median(1000 * r["cpu"] / r["files"] for r in reports)
        wall = statistics.median(r["wall"] for r in reports)
        per_replay = statistics.median(r["db_bytes"] / max(1, r["replays"]) for r in reports)
        medians[label] = (cpu_ms, per_replay)
        rows.append([label, str(files), str(reports[0]["replays"]), f"{cpu_ms:.2f}",
                     f"{files / wall:.0f}", f"{1000 / cpu_ms:.0f}", f"{per_replay / 1024:.1f}"])
    print(command_line())
    print(f"{machine_line()}; depth {args.depth}; {args.rounds} round(s), medians over rounds")
    print(format_table(["configuration", "files", "replays", "CPU ms/file", "files/s wall", "files/s per CPU s",
                        "KiB/replay"], rows))
    packed_cpu, plain_cpu = medians[PACKED][0], medians[PLAIN][0]
    print(f"packed / plain rows: CPU per file {packed_cpu / plain_cpu:.2f}x")
    if BASELINE in medians:
        (base_cpu, base_size), size = medians[BASELINE], medians[PLAIN][1]
        print(f"this checkout / baseline: CPU per file {packed_cpu / base_cpu:.2f}x packed, "
              f"{plain_cpu / base_cpu:.2f}x plain; bytes per replay {size / base_size:.2f}x")


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"elapsed {time.perf_counter() - started:.0f} s", file=sys.stderr)
    sys.exit(code)
