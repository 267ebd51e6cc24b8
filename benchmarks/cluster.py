"""The same corpus through the local pebble pool and through 2-worker Dask LocalClusters.

One process runs every configuration, interleaved over rounds (the order rotates), each into a
fresh database through `ingest_paths`: only the parse backend differs. The configurations: the
local pool (2 workers); replay_cli's own cluster (`cluster.local_cluster`) at the default batch
size; a stock LocalCluster (Dask's default configuration, as a cluster reached by address may
run) at the same batch size; and replay_cli's cluster at 1 file per task, the per-task cost alone.

Each Dask measurement starts its own cluster and closes it afterwards, so no idle cluster is
counted in another configuration's CPU; each configuration first parses a few files unmeasured,
so process start-up and imports count for none. CPU is this process plus every descendant (pool
workers, fork server, Dask workers; the scheduler and nannies are threads of this process),
including descendants that exit during the run: their CPU reaches the children times of the
process that reaps them. The script prints wall, files/s and CPU per file, then the per-file
overhead at the default batch size: Dask CPU per file minus the local pool's, per round (the two
ran back to back), and the ratio. Timings are printed, never asserted; the script exits 0.

    python benchmarks/cluster.py            # whole corpus, depth summary, 3 rounds
    python benchmarks/cluster.py --quick    # every 10th file
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling parse_depths.py

import psutil  # comes with distributed
from parse_depths import command_line, format_table, load_corpus, machine_line, resolve_corpus

from replay_cli.backend import ParseBackend
from replay_cli.cluster import DEFAULT_BATCH_SIZE, cluster_backend, local_cluster, quiet_dask
from replay_cli.ingest import IngestOptions, ingest_paths
from replay_cli.parse import parse_file
from replay_cli.store import open_store

WORKERS = 2
DEFAULT_ROUNDS = 3
DEFAULT_DEPTH = "summary"  # the depth where per-task overhead matters most
WARM_UP_FILES = 8
LOCAL = "local pebble pool (2 workers)"

@dataclass
class Measured:
    files: int
    wall_s: float
    cpu_s: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s

    @property
    def cpu_ms_per_file(self) -> float:
        return 1000 * self.cpu_s / self.files


def tree_cpu_seconds() -> float:
    """User + system CPU of this process and its live descendants, each with the children it reaped."""
    root = psutil.Process()
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:  # exited between listing and reading: its parent's children times have it
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def ingest(paths: Sequence[str], depth: str, backend: ParseBackend | None) -> Measured:
    """Ingest paths into a fresh database with backend (None: the local pool); return wall and CPU."""
    with tempfile.TemporaryDirectory() as work:
        cpu_before, started = tree_cpu_seconds(), time.perf_counter()
        with open_store(Path(work) / "bench.db") as store:
            tally = ingest_paths(store, iter(paths), IngestOptions(depth=depth, workers=WORKERS), backend=backend)
        wall, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu_before
    assert tally.counts["parsed"] == len(paths), tally.counts
    return Measured(len(paths), wall, cpu)


def stock_cluster() -> Any:
    """A LocalCluster with Dask's default configuration, otherwise as local_cluster starts one."""
    from distributed import LocalCluster

    return LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.ERROR)


def on_cluster(start: Callable[[], Any], batch_size: int, paths: Sequence[str], depth: str) -> Measured:
    """Start a cluster, warm it up unmeasured, measure paths through it, and close it."""
    from distributed import Client

    cluster = start()
    client = Client(cluster)
    try:
        # Every worker imports and runs the parser once, as the local pool's fork server preloads it:
        # a batch of warm-up files would reach only one worker.
        client.run(parse_file, paths[0], depth)
        backend = cluster_backend(client, depth=depth, timeout=30, batch_size=batch_size)
        ingest(paths[:WARM_UP_FILES], depth, backend)
        return ingest(paths, depth, cluster_backend(client, depth=depth, timeout=30, batch_size=batch_size))
    finally:
        client.close()
        cluster.close()


def configurations(batch_size: int) -> dict[str, Callable[[Sequence[str], str], Measured]]:
    """Label -> how to measure it; the local pool first, the one the others are compared with."""
    return {
        LOCAL: lambda paths, depth: ingest(paths, depth, None),
        f"Dask local_cluster, batch {batch_size}": lambda paths, depth: on_cluster(
            lambda: local_cluster(WORKERS), batch_size, paths, depth),
        f"Dask stock LocalCluster, batch {batch_size}": lambda paths, depth: on_cluster(
            stock_cluster, batch_size, paths, depth),
        "Dask local_cluster, batch 1": lambda paths, depth: on_cluster(lambda: local_cluster(WORKERS), 1, paths, depth),
    }


def rotated(items: Sequence[str], by: int) -> Iterator[str]:
    yield from items[by % len(items):]
    yield from items[: by % len(items)]


def overhead_lines(results: dict[str, list[Measured]], batch_size: int) -> list[str]:
    """Dask CPU per file minus the local pool's, median of the rounds, and the ratio of the medians."""
    local = results[LOCAL]
    local_cpu = statistics.median(m.cpu_ms_per_file for m in local)
    lines = [f"per-file overhead at batch {batch_size} (Dask CPU/file - local pool CPU/file; each round's "
             f"runs back to back, median of rounds):"]
    for label, runs in results.items():
        if label == LOCAL or not label.endswith(f"batch {batch_size}"):
            continue
        rounds = [dask.cpu_ms_per_file - pool.cpu_ms_per_file for dask, pool in zip(runs, local, strict=True)]
        dask_cpu = statistics.median(m.cpu_ms_per_file for m in runs)
        lines.append(f"  {label}: {statistics.median(rounds):+.2f} ms/file (rounds: "
                     f"{', '.join(f'{r:+.2f}' for r in rounds)}); {dask_cpu:.2f} / {local_cpu:.2f} ms = "
                     f"{dask_cpu / local_cpu:.2f}x the local pool")
    return lines


def table(results: dict[str, list[Measured]]) -> str:
    local_rate = statistics.median(m.files_per_s for m in results[LOCAL])
    rows = []
    for label, runs in results.items():
        rate = statistics.median(m.files_per_s for m in runs)
        rows.append([label, str(runs[0].files), f"{statistics.median(m.wall_s for m in runs):.2f}", f"{rate:.1f}",
                     f"{rate / local_rate:.2f}", f"{statistics.median(m.cpu_ms_per_file for m in runs):.2f}"])
    return format_table(["backend", "files", "wall s", "files/s", "vs local", "CPU ms/file"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--quick", action="store_true", help="every 10th file of the corpus")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--depth", default=DEFAULT_DEPTH, choices=("summary", "stats", "full"))
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"files per Dask task (default {DEFAULT_BATCH_SIZE}, the default of --scheduler)")
    args = parser.parse_args(argv)
    corpus = resolve_corpus(args.corpus)
    paths = [str(f.path) for f in load_corpus(corpus, args.quick)]
    quiet_dask()
    load_before = machine_line()
    configs = configurations(args.batch_size)
    ingest(paths[:WARM_UP_FILES], args.depth, None)  # starts the fork server outside the measurements
    results: dict[str, list[Measured]] = {label: [] for label in configs}
    for round_index in range(args.rounds):
        for label in rotated(list(configs), round_index):
            print(f"round {round_index + 1}: {label}", file=sys.stderr)
            results[label].append(configs[label](paths, args.depth))
    print(f"replaycli benchmark: local pool vs Dask LocalCluster, depth {args.depth}")
    print(f"command: {command_line()}")
    print(f"corpus: {corpus} ({len(paths)} files); rounds: {args.rounds}, order rotated; medians of rounds")
    print(f"machine at start: {load_before}")
    print(f"machine at end:   {machine_line()}")
    print()
    print(table(results))
    print()
    print("\n".join(overhead_lines(results, args.batch_size)))
    print()
    print("CPU = this process (client, scheduler, nannies) + every descendant, reaped ones included.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
