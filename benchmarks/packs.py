"""Replay packs and ingest filters, side by side with plain loose-file ingests.

From one run, at depth `stats` with `--workers 2`, on the real corpus:

(a) the corpus as loose files vs the same files in one zip (deflated, as packs ship), each
    ingested into a fresh database: wall / wall, and the unchanged re-run of each (the zip is
    skipped without being opened);
(b) what a filtered file costs compared with a stored one: an ingest with
    `--game-type 1v1 --ladder-only --min-duration 300`, its wall against the unfiltered loose
    ingest, and the worker CPU seconds per file (files.cpu_seconds) of filtered files, by the
    stage that decided them (header or summary), against those of stored files.

Each round runs every configuration once, the order rotating from round to round. Ingests are
real `replaycli` subprocesses. Timings are printed, never asserted; the script always exits 0.

    python benchmarks/packs.py            # the whole corpus, 2 rounds
    python benchmarks/packs.py --quick    # every 10th file
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling parse_depths.py

from parse_depths import command_line, format_table, load_corpus, machine_line, ratio, resolve_corpus

REPO_ROOT = Path(__file__).resolve().parent.parent
FILTERS = ("--game-type", "1v1", "--ladder-only", "--min-duration", "300")
WORKERS = "2"
DEPTH = "stats"


def ingest(inputs: list[Path], db: Path, *extra: str) -> float:
    """Run `replaycli ingest` into db and return its wall seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "replay_cli", "ingest", *map(str, inputs), "--db", str(db), "--workers",
                    WORKERS, "--depth", DEPTH, "-q", *extra], cwd=REPO_ROOT, check=False)
    return time.perf_counter() - started


def median_cpu(db: Path, where: str) -> tuple[int, float]:
    """How many files match, and the median of their worker CPU seconds."""
    with sqlite3.connect(db) as conn:
        values = [row[0] for row in conn.execute(f"SELECT cpu_seconds FROM files WHERE {where}")]
    return len(values), statistics.median(values) if values else float("nan")


def one_round(loose: Path, pack: Path, work: Path, rotation: int) -> dict[str, float]:
    """Run every configuration once, starting at `rotation`; return wall seconds by name."""
    configs = {
        "loose": lambda db: (ingest([loose], db), ingest([loose], db)),
        "zip": lambda db: (ingest([pack], db), ingest([pack], db)),
        "filtered": lambda db: (ingest([loose], db, *FILTERS), 0.0),
    }
    names = list(configs)
    names = names[rotation % len(names):] + names[: rotation % len(names)]
    walls: dict[str, float] = {}
    for name in names:
        db = work / f"{name}-{rotation}.db"
        walls[name], walls[f"{name} re-run"] = configs[name](db)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=None, help="Replay folder (default: ../shared/replays).")
    parser.add_argument("--quick", action="store_true", help="Every 10th file only.")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    files = load_corpus(resolve_corpus(args.corpus), args.quick)
    with tempfile.TemporaryDirectory(prefix="replaycli-packs-") as tmp:
        work = Path(tmp)
        loose = work / "loose"
        loose.mkdir()
        for index, replay in enumerate(files):  # numbered: the corpus repeats file names across sources
            shutil.copyfile(replay.path, loose / f"{index:05d}-{Path(replay.path).name}")
        pack = work / "corpus.zip"
        with zipfile.ZipFile(pack, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(loose.iterdir()):
                archive.write(path, f"replays/{path.name}")
        rounds = [one_round(loose, pack, work, r) for r in range(args.rounds)]
        report(files_count=len(files), rounds=rounds, work=work)


def report(files_count: int, rounds: list[dict[str, float]], work: Path) -> None:
    print(command_line())
    print(machine_line())
    print(f"{files_count} replays, depth {DEPTH}, --workers {WORKERS}, {len(rounds)} rounds")
    names = list(rounds[0])
    rows = [[name, *(f"{r[name]:.2f}" for r in rounds),
             f"{ratio(sum(r[name] for r in rounds), sum(r['loose'] for r in rounds)):.2f}"] for name in names
            if not (name == "filtered re-run")]
    print(format_table(["configuration", *(f"round {i + 1} s" for i in range(len(rounds))), "x loose"], rows))
    filtered_db, loose_db = work / "filtered-0.db", work / "loose-0.db"
    cost_rows = []
    for label, db, where in (
        ("stored (unfiltered run)", loose_db, "status IN ('ok', 'partial')"),
        ("stored (filtered run)", filtered_db, "status IN ('ok', 'partial')"),
        ("filtered on the header", filtered_db, "status = 'filtered' AND error_stage = 'header'"),
        ("filtered on the summary", filtered_db, "status = 'filtered' AND error_stage = 'summary'"),
    ):
        count, cpu = median_cpu(db, where)
        cost_rows.append([label, str(count), f"{cpu * 1000:.1f}"])
    print(format_table(["files", "count", "median worker CPU ms"], cost_rows))


if __name__ == "__main__":
    main()
