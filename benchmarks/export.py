"""What does `replaycli export` cost, and does its memory stay flat as the database grows?

Two parts, each export one `replaycli export` subprocess whose peak RSS is its own (os.wait4's
ru_maxrss, so no other process counts):

1. The corpus database (skipped when the corpus is absent): the real replays ingested at stats depth,
   exported once in each format. Per format: rows, wall seconds, rows/s and peak RSS, side by side.
2. Growth: a synthetic database grown in steps by copying the rows of the ingested samples/ under new
   keys (the same rows SQLite would hold for that many distinct replays, built in seconds instead of
   hours of parsing). Per step and format: database size, rows, peak RSS, rows/s. Flat RSS across
   steps is what the export promises; a database larger than RAM then exports too.

Timings are printed, never asserted; the script exits 0 unless an export fails.

    python benchmarks/export.py                        # corpus + growth to 12,000 replays
    python benchmarks/export.py --quick                # growth to 2,000 replays, no corpus
    python benchmarks/export.py --steps 1000,8000,64000 --formats parquet --keep /tmp/export-bench
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
FORMATS = ("parquet", "csv", "jsonl")
DEFAULT_STEPS = (1_000, 4_000, 12_000)
QUICK_STEPS = (500, 2_000)
MIB = 1024 * 1024
KIB = 1024


@dataclass(frozen=True)
class Measured:
    """One export: what it wrote and what it cost."""

    rows: int
    seconds: float
    peak_rss_mib: float


def replaycli(*args: str) -> list[str]:
    return [sys.executable, "-m", "replay_cli", *args]


def ingest(inputs: Path, db: Path) -> None:
    done = subprocess.run(replaycli("ingest", str(inputs), "--db", str(db), "-q", "--workers", "2"), check=False)
    if done.returncode not in (0, 1):  # 1: some files are recorded as failures, the rest are stored
        raise SystemExit(f"ingest of {inputs} failed with exit code {done.returncode}")


def measure_export(db: Path, out: Path, fmt: str) -> Measured:
    """Run one export and return its rows, wall time and the child's own peak RSS."""
    shutil.rmtree(out, ignore_errors=True)
    command = replaycli("export", "--db", str(db), "--out", str(out), "--format", fmt, "-q")
    start = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"export failed ({process.returncode}): {shlex.join(command)}")
    return Measured(_manifest_rows(out), seconds, usage.ru_maxrss * KIB / MIB)  # ru_maxrss is in KiB on Linux


def _manifest_rows(out: Path) -> int:
    return int(json.loads((out / "manifest.json").read_text(encoding="utf-8"))["rows"])


COPY_ID_STRIDE = 100_000  # more than the seed database's largest replay id


def _copy_sql(conn: sqlite3.Connection, table: str) -> str:
    """INSERT ... SELECT copying one table's seed rows under copy number `n` (new keys, same content)."""
    columns = [row[1] for row in conn.execute(f'PRAGMA seed.table_info("{table}")')]
    renamed = {
        "sha256": "substr(sha256, 1, 56) || printf('%08x', n)",
        # The seed is a few replays: copy n's ids go above every id of copies before it.
        "id": f"n * {COPY_ID_STRIDE} + id",
        "replay_id": f"n * {COPY_ID_STRIDE} + replay_id",
        "match_key": "substr(match_key, 1, 24) || printf('%08x', n)",
        "path": "path || '#' || n",
        "first_path": "first_path || '#' || n",
    }
    select = ", ".join(renamed.get(c, f'"{c}"') for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    return f'INSERT INTO main."{table}" ({names}) SELECT {select} FROM seed."{table}", copies'


def grow(db: Path, seed: Path, start: int, stop: int) -> None:
    """Add copies number start..stop-1 of every seed replay (with its rows) to db."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("ATTACH DATABASE ? AS seed", (str(seed),))
    conn.execute("BEGIN")
    conn.execute("DROP TABLE IF EXISTS temp.copies")
    conn.execute("CREATE TEMP TABLE copies (n INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO temp.copies VALUES (?)", ((n,) for n in range(start, stop)))
    for table in ("replays", "players", "chat", "build_order", "player_stats", "files"):
        conn.execute(_copy_sql(conn, table))
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE seed")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def corpus_part(work: Path, corpus: Path, formats: list[str]) -> None:
    if not corpus.is_dir():
        print(f"corpus: not found at {corpus}; skipped")
        return
    db = work / "corpus.db"
    print(f"corpus: ingesting {corpus} ...", file=sys.stderr)
    ingest(corpus, db)
    print(f"\ncorpus database {db.stat().st_size / MIB:.1f} MiB")
    print(f"{'format':8} {'rows':>10} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
    for fmt in formats:
        m = measure_export(db, work / f"corpus-{fmt}", fmt)
        print(f"{fmt:8} {m.rows:>10,} {m.seconds:>8.1f} {m.rows / m.seconds:>10,.0f} {m.peak_rss_mib:>13.1f}")


def growth_part(work: Path, steps: list[int], formats: list[str]) -> None:
    seed = work / "seed.db"
    ingest(SAMPLES, seed)
    seed_replays = sqlite3.connect(seed).execute("SELECT count(*) FROM replays").fetchone()[0]
    db = work / "grown.db"
    shutil.copy(seed, db)
    copies = 1
    print(f"\ngrowth: copies of the {seed_replays} sample replays")
    print(f"{'replays':>8} {'db MiB':>8} {'format':8} {'rows':>11} {'seconds':>8} {'rows/s':>10} {'peak RSS MiB':>13}")
    for target in steps:
        wanted = max(1, target // seed_replays)
        if wanted > copies:
            grow(db, seed, copies, wanted)
            copies = wanted
        replays = copies * seed_replays
        size = db.stat().st_size / MIB
        for fmt in formats:
            m = measure_export(db, work / f"grown-{fmt}", fmt)
            print(f"{replays:>8,} {size:>8.0f} {fmt:8} {m.rows:>11,} {m.seconds:>8.1f} "
                  f"{m.rows / m.seconds:>10,.0f} {m.peak_rss_mib:>13.1f}", flush=True)
        for fmt in formats:
            shutil.rmtree(work / f"grown-{fmt}", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="growth to 2,000 replays, no corpus part")
    parser.add_argument("--steps", default=None, help="comma-separated replay counts of the growth steps")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated formats")
    parser.add_argument("--corpus", type=Path,
                        default=Path(os.environ.get("REPLAYCLI_TEST_REPLAYS") or REPO.parent / "shared" / "replays"))
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")] if args.steps else list(QUICK_STEPS if args.quick else DEFAULT_STEPS)
    formats = [f for f in args.formats.split(",") if f]
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    work = args.keep or Path(tempfile.mkdtemp(prefix="replaycli-export-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.quick:
            corpus_part(work, args.corpus, formats)
        growth_part(work, steps, formats)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
