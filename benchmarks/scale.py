"""Does ingest scale linearly? Growing steps into ONE database, measured side by side in one run.

Writes N distinct synthetic replays (`replay_cli.synth.write_corpus`) into a temp dir, then
ingests them into one fresh database in three growing steps -- the first 5%, the next 20%
(total 25%), the remaining 75% (total 100%); with the default 20,000 that is 1k / +4k / +15k.
Each step is one `replaycli ingest - --db DB --workers W --depth D --json -q` subprocess with its
paths on stdin. Per step it prints:

* files, wall seconds (from the JSON summary), files/second for that step -- flat across steps
  means linear scaling -- and each step's files/s as a ratio to the first step's;
* the peak RSS of the main `replaycli` process (VmHWM from /proc/<pid>/status, polled until it
  exits; workers are separate processes, so this is the main process alone);
* database bytes per stored replay (size of db + db-wal after the step / rows in `replays`).

Timings are printed, never asserted. The script exits 0 unless an ingest step itself fails.

    python benchmarks/scale.py                  # 20,000 replays: steps 1,000 / 5,000 / 20,000
    python benchmarks/scale.py --quick          # 2,000 replays: steps 200 / 1,000 / 2,000
    python benchmarks/scale.py --count 8000 --workers 2 --depth stats --keep /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_COUNT = 20_000
QUICK_COUNT = 2_000
DEFAULT_SEED = 7
DEFAULT_WORKERS = 2
DEFAULT_DEPTH = "stats"
DEPTHS = ("summary", "stats", "full")
# Cumulative fractions of --count after each step: 5% / 25% / 100% (1k / 5k / 20k of 20,000).
STEP_FRACTIONS = (0.05, 0.25, 1.0)
RSS_POLL_SECONDS = 0.05
KIB = 1024
MIB = 1024 * 1024
DB_NAME = "scale.db"
WAL_SUFFIX = "-wal"
CORPUS_DIRNAME = "replays"


@dataclass(frozen=True)
class StepResult:
    """What one ingest step measured."""

    step: int
    files: int
    total: int
    wall_seconds: float
    peak_rss_kib: int | None
    db_bytes: int
    replays_stored: int
    counts: dict[str, int]
    exit_code: int

    @property
    def files_per_second(self) -> float:
        """Files of this step per wall second of this step."""
        return self.files / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    @property
    def bytes_per_replay(self) -> float:
        """Database bytes (db + wal) per replay stored so far."""
        return self.db_bytes / self.replays_stored if self.replays_stored else float("nan")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; --quick sets --count to QUICK_COUNT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help=f"replays in total (default {DEFAULT_COUNT:,})")
    parser.add_argument("--quick", action="store_true", help=f"--count {QUICK_COUNT:,}")
    parser.add_argument("--depth", choices=DEPTHS, default=DEFAULT_DEPTH)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="ingest --workers")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="synth seed")
    parser.add_argument("--keep", type=Path, default=None,
                        help="work in this directory (replays + db) and keep it afterwards")
    args = parser.parse_args(argv)
    if args.count is None:
        args.count = QUICK_COUNT if args.quick else DEFAULT_COUNT
    if args.count < len(STEP_FRACTIONS):
        parser.error(f"--count must be at least {len(STEP_FRACTIONS)}")
    return args


def step_boundaries(count: int) -> list[int]:
    """Cumulative file counts after each step, strictly increasing, ending at ``count``."""
    bounds: list[int] = []
    for fraction in STEP_FRACTIONS:
        bound = max(round(count * fraction), (bounds[-1] + 1) if bounds else 1)
        bounds.append(min(bound, count))
    return bounds


def replaycli_executable() -> str:
    """The `replaycli` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("replaycli")
    if beside.exists():
        return str(beside)
    found = shutil.which("replaycli")
    if found is None:
        raise SystemExit("replaycli not found next to the interpreter or on PATH")
    return found


def generate_corpus(outdir: Path, count: int, seed: int) -> tuple[list[Path], float]:
    """Write ``count`` distinct synthetic replays; return their sorted paths and wall seconds."""
    from replay_cli.synth import write_corpus

    started = time.perf_counter()
    paths = sorted(write_corpus(outdir, count, seed))
    return paths, time.perf_counter() - started


def read_vmhwm_kib(pid: int) -> int | None:
    """VmHWM (peak resident set) of ``pid`` in KiB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_ingest(command: list[str], paths: Sequence[Path]) -> tuple[dict[str, Any], int | None, int]:
    """Run one ingest with ``paths`` on stdin, polling its VmHWM; return (summary, peak KiB, rc)."""
    stdin_text = "".join(f"{path}\n" for path in paths)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as stdin_file:
        stdin_file.write(stdin_text)
        stdin_file.seek(0)
        proc = subprocess.Popen(command, stdin=stdin_file, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        peak = poll_peak_rss(proc)
        stdout, stderr = proc.communicate()
    if stderr.strip():
        print(stderr.rstrip(), file=sys.stderr)
    try:
        summary: dict[str, Any] = json.loads(stdout)
    except json.JSONDecodeError:
        summary = {}
    return summary, peak, proc.returncode


def poll_peak_rss(proc: subprocess.Popen[str]) -> int | None:
    """Poll VmHWM of ``proc`` until it exits; return the last value read (it only grows).

    stdout is only a short JSON document at the end, so not draining it while polling is safe;
    stderr is quiet under -q.
    """
    peak: int | None = None
    while proc.poll() is None:
        value = read_vmhwm_kib(proc.pid)
        if value is not None:
            peak = value if peak is None else max(peak, value)
        time.sleep(RSS_POLL_SECONDS)
    return peak


def db_bytes(db_path: Path) -> int:
    """Size of the database file plus its WAL (if any)."""
    wal = db_path.with_name(db_path.name + WAL_SUFFIX)
    return sum(p.stat().st_size for p in (db_path, wal) if p.exists())


def replays_stored(db_path: Path) -> int:
    """Rows in the `replays` table, read through a read-only connection."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT count(*) FROM replays").fetchone()[0])


def ingest_command(db_path: Path, workers: int, depth: str) -> list[str]:
    """The exact ingest command every step runs (paths come on stdin)."""
    return [replaycli_executable(), "ingest", "-", "--db", str(db_path), "--workers", str(workers),
            "--depth", depth, "--json", "-q"]


def run_step(step: int, command: list[str], paths: Sequence[Path], total: int, db_path: Path) -> StepResult:
    """Ingest one step's ``paths`` and measure it; sizes are read after the process exits."""
    summary, peak, rc = run_ingest(command, paths)
    size = db_bytes(db_path)  # before our own connection can touch the WAL
    return StepResult(step=step, files=len(paths), total=total,
                      wall_seconds=float(summary.get("wall_seconds", float("nan"))),
                      peak_rss_kib=peak, db_bytes=size, replays_stored=replays_stored(db_path),
                      counts=dict(summary.get("counts", {})), exit_code=rc)


def print_header(args: argparse.Namespace, bounds: Sequence[int], command: list[str], workdir: Path) -> None:
    """Print the configuration and the exact commands."""
    print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"count={args.count:,} seed={args.seed} depth={args.depth} workers={args.workers} "
          f"steps (cumulative)={', '.join(f'{b:,}' for b in bounds)}")
    print(f"workdir: {workdir}")
    print("commands:")
    print(f"  corpus: replay_cli.synth.write_corpus({str(workdir / CORPUS_DIRNAME)!r}, "
          f"{args.count}, {args.seed})  "
          f"# = replaycli synth {shlex.quote(str(workdir / CORPUS_DIRNAME))} "
          f"--count {args.count} --seed {args.seed}")
    print(f"  each step: <that step's paths, one a line> | {shlex.join(command)}")


def format_row(result: StepResult, first: StepResult) -> str:
    """One table row for ``result``; the ratio is against the first step's files/s."""
    ratio = result.files_per_second / first.files_per_second if first.files_per_second else float("nan")
    rss = f"{result.peak_rss_kib / KIB:,.1f}" if result.peak_rss_kib is not None else "n/a"
    return (f"{result.step:>4} {result.files:>7,} {result.total:>7,} {result.wall_seconds:>9.2f} "
            f"{result.files_per_second:>8.1f} {ratio:>6.2f} {rss:>9} "
            f"{result.db_bytes / MIB:>9.1f} {result.bytes_per_replay / KIB:>9.1f} {result.replays_stored:>8,} "
            f"{result.exit_code:>3}")


def print_results(results: Sequence[StepResult]) -> None:
    """Print the side-by-side table and each step's ingest counts."""
    print()
    print(f"{'step':>4} {'files':>7} {'total':>7} {'wall_s':>9} {'files/s':>8} {'ratio':>6} "
          f"{'rss_MiB':>9} {'db_MiB':>9} {'KiB/rep':>9} {'stored':>8} {'rc':>3}")
    for result in results:
        print(format_row(result, results[0]))
    print()
    print("ratio = step files/s / step 1 files/s (flat ~1.0 = linear); rss = VmHWM of the main "
          "replaycli process; KiB/rep = (db + db-wal) / replays stored")
    for result in results:
        print(f"step {result.step} counts: {json.dumps(result.counts)}")


def run(args: argparse.Namespace, workdir: Path) -> int:
    """Generate the corpus, ingest it in growing steps, print everything; return the exit code."""
    bounds = step_boundaries(args.count)
    db_path = workdir / DB_NAME
    for stale in (db_path, db_path.with_name(db_path.name + WAL_SUFFIX),
                  db_path.with_name(db_path.name + "-shm")):
        stale.unlink(missing_ok=True)  # one FRESH database every run, even with --keep
    command = ingest_command(db_path, args.workers, args.depth)
    print_header(args, bounds, command, workdir)
    paths, synth_seconds = generate_corpus(workdir / CORPUS_DIRNAME, args.count, args.seed)
    print(f"generated {len(paths):,} replays in {synth_seconds:.1f} s")
    results: list[StepResult] = []
    start = 0
    for step, end in enumerate(bounds, start=1):
        results.append(run_step(step, command, paths[start:end], end, db_path))
        print(f"step {step}: {end - start:,} files in {results[-1].wall_seconds:.2f} s", flush=True)
        start = end
    print_results(results)
    return 0 if all(r.exit_code == 0 for r in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: work in --keep DIR or a temp dir removed afterwards."""
    args = parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="replaycli-scale-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
