"""What monitoring costs: per-file metering as a ratio to not metering, and one metrics() snapshot.

1. Per file: each worker resets its peak RSS before a parse (/proc/self/clear_refs) and reads it
   after (/proc/self/status), and reads its CPU time. Both configurations run in this one process,
   interleaved per file in an order that rotates from file to file and round to round, so load
   from other jobs hits both alike: `metered` is parse_file as shipped; `bare` is parse_file with
   the two meter calls replaced by no-ops. The metric is CPU time (user + system, so the kernel's
   page-table walk for clear_refs counts) and the headline is the ratio metered / bare.
2. Per snapshot: ReplayParser.metrics() on a live 2-worker pool, timed over many calls, printed
   as microseconds and as a share of a one-second scrape interval.

Timings are printed, never asserted. The script always exits 0.

    python benchmarks/monitoring.py               # every 4th corpus file, stats depth, 3 rounds
    python benchmarks/monitoring.py --stride 1    # every file
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "replays"
SCRAPE_INTERVAL_S = 1.0
SNAPSHOT_CALLS = 2000


def corpus_files(folder: Path, stride: int) -> list[str]:
    """Every stride-th replay of the corpus (else of samples/), sorted."""
    files = sorted(str(p) for p in folder.rglob("*.SC2Replay")) if folder.is_dir() else []
    if not files:
        files = sorted(str(p) for p in (REPO_ROOT / "samples").glob("*.SC2Replay"))
    return files[::stride]


def configurations(depth: str) -> dict[str, Callable[[str], object]]:
    """metered: parse_file as shipped; bare: the same with the meter's two calls made no-ops."""
    from replay_cli import parse

    shipped = (parse.reset_peak, parse.peak_since)

    def metered(path: str) -> object:
        parse.reset_peak, parse.peak_since = shipped
        return parse.parse_file(path, depth)

    def bare(path: str) -> object:
        parse.reset_peak, parse.peak_since = (lambda: False), (lambda _ok: (None, None))
        try:
            return parse.parse_file(path, depth)
        finally:
            parse.reset_peak, parse.peak_since = shipped

    return {"metered": metered, "bare": bare}


def measure(files: Sequence[str], rounds: int, depth: str) -> dict[str, list[float]]:
    """CPU seconds per (file, round) for each configuration, interleaved and rotated."""
    table = configurations(depth)
    names = list(table)
    for path in files[:3]:  # warm sc2reader's lazy tables before anything is timed
        for name in names:
            table[name](path)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        for file_index, path in enumerate(files):
            shift = (file_index + round_index) % len(names)
            for name in names[shift:] + names[:shift]:
                start = time.process_time()
                table[name](path)
                cpu[name].append(time.process_time() - start)
    return cpu


async def snapshot_cost(sample: bytes) -> list[float]:
    """Seconds per metrics() call on a live 2-worker pool that has parsed a few uploads."""
    from replay_cli.service import ReplayParser

    async with ReplayParser(workers=2, depth="summary") as parser:
        await asyncio.gather(*(parser.parse(sample, name=f"u{i}") for i in range(6)))
        costs = []
        for _ in range(SNAPSHOT_CALLS):
            start = time.perf_counter()
            parser.metrics()
            costs.append(time.perf_counter() - start)
        return costs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=os.environ.get("REPLAYCLI_TEST_REPLAYS") or str(DEFAULT_CORPUS))
    parser.add_argument("--stride", type=int, default=4, help="every Nth corpus file (default 4)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--depth", default="stats")
    args = parser.parse_args(argv)
    files = corpus_files(Path(args.corpus), args.stride)
    print(f"$ {shlex.join(['python', *sys.argv])}")
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    cpu = measure(files, args.rounds, args.depth)
    per_file = [m / b for m, b in zip(cpu["metered"], cpu["bare"]) if b > 0]
    print(f"\nper-file metering, {len(files)} files x {args.rounds} rounds at {args.depth}:")
    print(f"  CPU total: metered {sum(cpu['metered']):.2f} s, bare {sum(cpu['bare']):.2f} s, "
          f"ratio {sum(cpu['metered']) / sum(cpu['bare']):.3f}")
    print(f"  per-file ratio: median {statistics.median(per_file):.3f}, "
          f"p10 {statistics.quantiles(per_file, n=10)[0]:.3f}, p90 {statistics.quantiles(per_file, n=10)[-1]:.3f}")
    costs = asyncio.run(snapshot_cost(Path(files[0]).read_bytes()))
    median = statistics.median(costs)
    print(f"\nmetrics() on 2 live workers, {SNAPSHOT_CALLS} calls: median {median * 1e6:.0f} us, "
          f"p99 {statistics.quantiles(costs, n=100)[-1] * 1e6:.0f} us; "
          f"{median / SCRAPE_INTERVAL_S:.5%} of a {SCRAPE_INTERVAL_S:g} s scrape interval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
