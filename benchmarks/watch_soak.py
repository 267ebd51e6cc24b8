"""Soak `replaycli ingest --watch`: an hour of saved games, compressed in time, with the main process's RSS sampled.

A real `replaycli ingest --watch` subprocess watches an empty folder while this script saves
synthetic games into it, each written in a few chunks as the game does, at an even rhythm:
`--saves` games over `--minutes` of wall time (by default 240 games in 4 minutes: one every
15 simulated seconds of an hour, compressed 15x, far more than any player saves). Rescans run
every second, so the loop turns over as often as in days of normal use. The watcher's own RSS
(/proc/<pid>/status VmRSS; the workers are separate processes) is sampled twice a second.

It prints RSS medians for each fifth of the run and the ratio of the last fifth to the second
(the first holds start-up and the first pool); "flat" means within 10 %. Nothing is asserted
and it always exits 0.

    python benchmarks/watch_soak.py                 # about 4.5 minutes
    python benchmarks/watch_soak.py --minutes 1 --saves 60
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from replay_cli.synth import describe_game, write_replay

SEED = 4242
CHUNKS = 4  # the game writes a replay in a few writes, not one
SAMPLE_S = 0.5
FLAT_WITHIN = 0.10
STOP_WAIT_S = 60


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _save(path: Path, data: bytes, pause_s: float) -> None:
    """Write one game in CHUNKS pieces, pausing between them, as a save in progress."""
    step = len(data) // CHUNKS + 1
    with open(path, "wb") as handle:
        for start in range(0, len(data), step):
            handle.write(data[start:start + step])
            handle.flush()
            time.sleep(pause_s)


def _stored(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT count(*) FROM files WHERE status = 'ok'").fetchone()[0]
    except sqlite3.Error:
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=240, help="games saved during the run")
    parser.add_argument("--minutes", type=float, default=4.0, help="wall time the saves are spread over")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    games = [write_replay(describe_game(SEED, index), compression="zlib") for index in range(args.saves)]
    interval = args.minutes * 60 / args.saves
    with tempfile.TemporaryDirectory(prefix="replaycli-soak-") as tmp:
        folder, db = Path(tmp, "Multiplayer"), Path(tmp, "soak.db")
        folder.mkdir()
        command = [sys.executable, "-m", "replay_cli", "ingest", str(folder), "--watch", "--db", str(db), "-q",
                   "--depth", "summary", "--workers", str(args.workers), "--settle", "0.5", "--rescan", "1"]
        print(f"$ {shlex.join(command)}", file=sys.stderr)
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        samples: list[tuple[float, int]] = []
        started = time.monotonic()
        next_sample = started
        for index, data in enumerate(games):
            due = started + index * interval
            while time.monotonic() < due:
                if time.monotonic() >= next_sample:
                    rss = _rss_kib(proc.pid)
                    if rss is not None:
                        samples.append((time.monotonic() - started, rss))
                    next_sample += SAMPLE_S
                time.sleep(0.05)
            _save(folder / f"game-{index:04}.SC2Replay", data, pause_s=min(0.1, interval / (2 * CHUNKS)))
        while _stored(db) < len(games) and time.monotonic() - started < args.minutes * 60 + STOP_WAIT_S:
            time.sleep(SAMPLE_S)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=STOP_WAIT_S)
        stored = _stored(db)
    _report(samples, stored, len(games), code)


def _report(samples: list[tuple[float, int]], stored: int, saved: int, code: int) -> None:
    print(f"saved {saved} games, stored {stored}; watcher exit code {code}")
    if len(samples) < 10:
        print("too few RSS samples to judge")
        return
    fifths = [samples[len(samples) * k // 5: len(samples) * (k + 1) // 5] for k in range(5)]
    print("fifth  from_s  to_s  median_rss_mib")
    for k, part in enumerate(fifths, 1):
        median = statistics.median(rss for _t, rss in part) / 1024
        print(f"{k:>5}  {part[0][0]:>6.0f}  {part[-1][0]:>4.0f}  {median:>14.1f}")
    second = statistics.median(rss for _t, rss in fifths[1])
    last = statistics.median(rss for _t, rss in fifths[4])
    ratio = last / second
    verdict = "flat" if abs(ratio - 1) <= FLAT_WITHIN else "NOT flat"
    print(f"last fifth / second fifth: {ratio:.3f} ({verdict} within {FLAT_WITHIN:.0%})")


if __name__ == "__main__":
    main()
