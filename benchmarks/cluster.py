"""The same corpus through the local pebble pool and through a 2-worker Dask LocalCluster.

One process runs both, interleaved over rounds (the order rotates), each into a fresh
database through `ingest_paths`: the only difference is the parse backend. It prints files/s
and CPU per file (this process plus every descendant: pool workers, fork server, nannies and
Dask workers, polled through psutil), for Dask batch sizes 16 (the default) and 1, so the
cost of Dask's per-task overhead and what batching buys are visible side by side. Timings are
printed, never asserted; the script exits 0.

    python benchmarks/cluster.py            # whole corpus, depth summary, 2 rounds
    python benchmarks/cluster.py --quick    # every 10th file
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling parse_depths.py

import psutil  # comes with distributed
from parse_depths import command_line, format_table, load_corpus, machine_line, resolve_corpus

from replay_cli.cluster import DEFAULT_BATCH_SIZE, cluster_backend, quiet_dask
from replay_cli.ingest import IngestOptions, ingest_paths
from replay_cli.store import open_store

WORKERS = 2
DEFAULT_ROUNDS = 2
DEFAULT_DEPTH = "summary"  # the depth where per-task overhead matters most
CPU_POLL_S = 0.2


@dataclass
class Measured:
    label: str
    files: int
    wall_s: float
    cpu_s: float

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s

    @property
    def cpu_ms_per_file(self) -> float:
        return 1000 * self.cpu_s / self.files


class TreeCpu:
    """CPU seconds of this process and all its descendants, polled while a run goes on."""

    def __init__(self) -> None:
        self.root = psutil.Process()
        self.seen: dict[tuple[int, float], float] = {}  # (pid, create_time) -> latest cpu seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _sample(self) -> None:
        for process in [self.root, *self.root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                self.seen[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                continue

    def _poll(self) -> None:
        while not self._stop.wait(CPU_POLL_S):
            self._sample()

    def __enter__(self) -> TreeCpu:
        self._sample()
        self.start = dict(self.seen)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def used(self) -> float:
        return sum(cpu - self.start.get(key, 0.0) for key, cpu in self.seen.items())


def measure(label: str, paths: Sequence[str], depth: str, backend_factory: Callable[[], object | None]) -> Measured:
    """Ingest paths into a fresh database with the given backend; return wall and CPU."""
    with tempfile.TemporaryDirectory() as work, TreeCpu() as cpu:
        started = time.perf_counter()
        with open_store(Path(work) / "bench.db") as store:
            tally = ingest_paths(store, iter(paths), IngestOptions(depth=depth, workers=WORKERS),
                                 backend=backend_factory())  # type: ignore[arg-type]
        wall = time.perf_counter() - started
    assert tally.counts["parsed"] == len(paths), tally.counts
    return Measured(label, len(paths), wall, cpu.used)


def rotated(items: Sequence[str], by: int) -> Iterator[str]:
    yield from items[by % len(items):]
    yield from items[: by % len(items)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None)
    parser.add_argument("--quick", action="store_true", help="every 10th file of the corpus")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--depth", default=DEFAULT_DEPTH, choices=("summary", "stats", "full"))
    args = parser.parse_args(argv)
    corpus = resolve_corpus(args.corpus)
    paths = [str(f.path) for f in load_corpus(corpus, args.quick)]
    from distributed import Client, LocalCluster

    quiet_dask()
    cluster = LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=":0", silence_logs=logging.ERROR)
    client = Client(cluster)
    configs: dict[str, Callable[[], object | None]] = {
        "local pebble pool (2 workers)": lambda: None,
        f"Dask LocalCluster 2x1, batch {DEFAULT_BATCH_SIZE}": lambda: cluster_backend(
            client, depth=args.depth, timeout=30, batch_size=DEFAULT_BATCH_SIZE),
        "Dask LocalCluster 2x1, batch 1": lambda: cluster_backend(client, depth=args.depth, timeout=30, batch_size=1),
    }
    results: dict[str, list[Measured]] = {label: [] for label in configs}
    try:
        for round_index in range(args.rounds):
            for label in rotated(list(configs), round_index):
                print(f"round {round_index + 1}: {label}", file=sys.stderr)
                results[label].append(measure(label, paths, args.depth, configs[label]))
    finally:
        client.close()
        cluster.close()
    rows = []
    local = statistics.median(m.files_per_s for m in results[next(iter(configs))])
    for label, runs in results.items():
        rate = statistics.median(m.files_per_s for m in runs)
        cpu = statistics.median(m.cpu_ms_per_file for m in runs)
        rows.append([label, str(len(paths)), f"{statistics.median(m.wall_s for m in runs):.2f}", f"{rate:.1f}",
                     f"{rate / local:.2f}", f"{cpu:.1f}"])
    print(f"replaycli benchmark: local pool vs Dask LocalCluster, depth {args.depth}")
    print(f"command: {command_line()}")
    print(f"corpus: {corpus} ({len(paths)} files); rounds: {args.rounds}, order rotated; medians of rounds")
    print(f"machine: {machine_line()}")
    print()
    print(format_table(["backend", "files", "wall s", "files/s", "vs local", "CPU ms/file"], rows))
    print()
    print("CPU = this process + every descendant (pool workers, fork server, nannies, Dask workers, scheduler "
          "threads in this process), polled every 0.2 s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
