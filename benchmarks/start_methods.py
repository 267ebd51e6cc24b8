"""The cost of the portable path: `replaycli ingest --depth stats` under forkserver and under spawn, side by side.

Windows has only spawn, where every worker imports the parser itself; Linux and macOS use
forkserver, where workers are forked from a server that imported it once. Each round ingests the
whole corpus (or every 10th file with --quick) into a fresh database once per start method, in an
order that alternates from round to round, with REPLAYCLI_START_METHOD choosing the method. The
memory cap is the platform's default (RLIMIT_AS here) under both, so only the start method differs.
Timings are printed, never asserted; the script always exits 0.

    python benchmarks/start_methods.py            # the whole corpus, 2 rounds
    python benchmarks/start_methods.py --quick    # every 10th file, 2 rounds
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "replays"
METHODS = ("forkserver", "spawn")
WORKERS = 2  # the machines this is measured on have two cores


def corpus_files(corpus: Path, quick: bool) -> list[str]:
    files = sorted(str(p) for p in corpus.rglob("*.SC2Replay"))
    return files[::10] if quick else files


def ingest_seconds(files: list[str], method: str, workers: int) -> float:
    """Wall seconds of one real `replaycli ingest` of files into a fresh database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAYCLI_")}
    env["REPLAYCLI_START_METHOD"] = method
    env["PYTHONPATH"] = str(REPO_ROOT)
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "replay_cli", "ingest", "-", "--db", str(Path(folder) / "b.db"),
                               "--depth", "stats", "--workers", str(workers), "--quiet"],
                              input="\n".join(files).encode(), env=env, cwd=REPO_ROOT, check=False,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        seconds = time.perf_counter() - started
    if proc.returncode not in (0, 1):  # 1: some corpus files fail by design; anything else is no timing
        raise SystemExit(f"ingest under {method} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("REPLAYCLI_TEST_REPLAYS") or DEFAULT_CORPUS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--quick", action="store_true", help="every 10th file")
    args = parser.parse_args()
    files = corpus_files(args.corpus, args.quick)
    if not files:
        print(f"no replays under {args.corpus}")
        return
    times: dict[str, list[float]] = {method: [] for method in METHODS}
    for round_no in range(args.rounds):
        order = METHODS if round_no % 2 == 0 else METHODS[::-1]
        for method in order:
            times[method].append(ingest_seconds(files, method, args.workers))
    print(f"ingest --depth stats --workers {args.workers}, {len(files)} files, {args.rounds} rounds")
    print(f"{'start method':<12} {'median s':>9} {'files/s':>8}")
    for method in METHODS:
        median = statistics.median(times[method])
        print(f"{method:<12} {median:>9.2f} {len(files) / median:>8.1f}")
    ratio = statistics.median(times["spawn"]) / statistics.median(times["forkserver"])
    print(f"spawn / forkserver: {ratio:.2f}x wall")


if __name__ == "__main__":
    main()
