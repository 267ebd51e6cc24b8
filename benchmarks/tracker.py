"""CPU of the `stats` records: sc2reader's level 3 over level 2, against replay_cli.tracker.

Every configuration runs in this one process, interleaved per file, in an order that rotates
from file to file and round to round, with an untimed `gc.collect()` before each timed call, so
load from other jobs on the shared machine hits them alike. The metric is CPU time
(`time.process_time`); the headline numbers are RATIOS measured side by side.

Configurations, per file:

* l2 -- sc2reader load level 2, no engine: what `summary` loads;
* l3 -- sc2reader load level 3 with GameHeartNormalizer + ContextLoader (the `stats` engine),
  then extract.py's player_stats_rows, unit_records and upgrade_records: today's stats records;
* direct -- from an (untimed) level-2 replay: read the raw `replay.tracker.events` member the
  way sc2reader does, then `tracker.stats_records`: the same three record lists;
* read -- the member read alone (MPQ lookup and bzip2), the part of `direct` sc2reader shares;
* decode -- `tracker.read_events` alone on the (untimed) raw member: the decoding, the checks
  and the stats rows and upgrades, without the unit records.

"sc2reader's records" is l3 - l2: what level 3 and the extraction add over a summary load.
Only files with tracker events that both paths parse are timed. Timings are printed, never
asserted; the script always exits 0.

    python benchmarks/tracker.py              # every file with tracker events, 3 rounds
    python benchmarks/tracker.py --quick      # every 4th such file, 1 round
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from replay_cli import extract, tracker  # noqa: E402

CORPUS_ENV = "REPLAYCLI_TEST_REPLAYS"
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "replays"
LOTV_MIN_BUILD = 34784  # Legacy of the Void: base_build >= 34784
QUICK_STRIDE = 4
DEFAULT_ROUNDS = 3
MS_PER_S = 1000.0
CONFIGS = ("l2", "l3", "direct", "read", "decode")


def corpus_paths(corpus: Path) -> list[Path]:
    """MANIFEST.tsv rows (corpus/<source with / as +>/<path>), else every *.SC2Replay below."""
    manifest = corpus / "MANIFEST.tsv"
    if not manifest.is_file():
        return sorted(p for p in corpus.rglob("*") if p.suffix.lower() == ".sc2replay" and p.is_file())
    with manifest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [p for row in rows if (p := corpus / row["source"].replace("/", "+") / row["path"]).is_file()]


def _sc2reader() -> Any:
    import sc2reader

    logging.getLogger("sc2reader").setLevel(logging.CRITICAL)
    return sc2reader


def load(data: bytes, level: int, engine: Any) -> Any:
    with contextlib.redirect_stdout(io.StringIO()):
        return _sc2reader().resources.Replay(io.BytesIO(data), load_level=level, engine=engine, debug=False)


def stats_engine() -> Any:
    from sc2reader.engine import GameEngine
    from sc2reader.engine.plugins import ContextLoader, GameHeartNormalizer

    engine = GameEngine()
    engine.register_plugin(GameHeartNormalizer())
    engine.register_plugin(ContextLoader())
    return engine


def member(replay: Any) -> bytes:
    from sc2reader.utils import extract_data_file

    return extract_data_file("replay.tracker.events", replay.archive) or b""


def direct(replay: Any) -> tracker.StatsRecords:
    """The direct path as parse.py calls it."""
    from replay_cli.parse import direct_stats

    return direct_stats(replay)


def reference(data: bytes) -> tuple[Any, ...]:
    replay = load(data, 3, stats_engine())
    return extract.player_stats_rows(replay), extract.unit_records(replay), extract.upgrade_records(replay)


class Replay:
    """One timed file: its bytes, untimed level-2 replay and raw member, and CPU per config."""

    def __init__(self, path: Path, data: bytes, summary: Any, raw: bytes) -> None:
        self.path, self.data, self.summary, self.raw = path, data, summary, raw
        self.lotv = int(summary.base_build or 0) >= LOTV_MIN_BUILD
        self.per_second = extract.loops_per_real_second(summary)
        self.cpu: dict[str, list[float]] = {config: [] for config in CONFIGS}

    def call(self, config: str) -> Callable[[], object]:
        return {
            "l2": lambda: load(self.data, 2, None),
            "l3": lambda: reference(self.data),
            "direct": lambda: direct(self.summary),
            "read": lambda: member(self.summary),
            "decode": lambda: tracker.read_events(self.raw, self.summary.build, self.per_second),
        }[config]

    def median(self, config: str) -> float:
        return statistics.median(self.cpu[config])


def prepare(paths: list[Path]) -> list[Replay]:
    """Keep the files with tracker events that both paths parse to the same records."""
    kept = []
    for path in paths:
        data = path.read_bytes()
        try:
            summary = load(data, 2, None)
            raw = member(summary)
            if not raw or not summary.players:
                continue
            records = direct(summary)
            if (records.player_stats, records.units, records.upgrades) != reference(data):
                print(f"skipped (records differ): {path}", file=sys.stderr)
                continue
        except Exception:  # either path refuses it (GameHeart, corrupt): nothing to compare
            continue
        kept.append(Replay(path, data, summary, raw))
    return kept


def measure(replays: list[Replay], rounds: int) -> None:
    for round_index in range(rounds):
        for file_index, replay in enumerate(replays):
            shift = (file_index + round_index) % len(CONFIGS)
            for config in CONFIGS[shift:] + CONFIGS[:shift]:
                call = replay.call(config)
                gc.collect()
                start = time.process_time()
                call()
                replay.cpu[config].append(time.process_time() - start)
        print(f"round {round_index + 1}/{rounds} done", file=sys.stderr)


def _ratios(numerators: list[float], denominators: list[float]) -> str:
    per_file = [n / d for n, d in zip(numerators, denominators) if d > 0]
    of_medians = statistics.median(numerators) / statistics.median(denominators)
    of_totals = sum(numerators) / sum(denominators)
    return f"{of_medians:6.3f} {of_totals:6.3f} {statistics.median(per_file):6.3f}"


def report(title: str, replays: list[Replay]) -> None:
    if not replays:
        return
    columns = {config: [r.median(config) for r in replays] for config in CONFIGS}
    records = [r.median("l3") - r.median("l2") for r in replays]
    print(f"\n{title}: {len(replays)} files with tracker events")
    print(f"{'CPU ms per file':<34} {'median':>8} {'total s':>8}")
    rows = [*((f"{c}", columns[c]) for c in CONFIGS), ("sc2reader records (l3 - l2)", records)]
    for name, values in rows:
        print(f"{name:<34} {statistics.median(values) * MS_PER_S:8.2f} {sum(values):8.2f}")
    print(f"\n{'ratio':<34} {'of med':>6} {'total':>6} {'med/file':>8}")
    print(f"{'direct / (l3 - l2)':<34} {_ratios(columns['direct'], records)}")
    print(f"{'read / (l3 - l2)':<34} {_ratios(columns['read'], records)}")
    print(f"{'decode / (l3 - l2)':<34} {_ratios(columns['decode'], records)}")
    with_summary = [a + b for a, b in zip(columns["l2"], columns["direct"])]
    print(f"{'(l2 + direct) / l3':<34} {_ratios(with_summary, columns['l3'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", help=f"replay folder (default ${CORPUS_ENV}, else {DEFAULT_CORPUS})")
    parser.add_argument("--quick", action="store_true", help=f"every {QUICK_STRIDE}th file with tracker events, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help=f"passes over the files (default {DEFAULT_ROUNDS})")
    args = parser.parse_args(argv)
    corpus = Path(args.corpus or os.environ.get(CORPUS_ENV) or DEFAULT_CORPUS).resolve()
    rounds = args.rounds or (1 if args.quick else DEFAULT_ROUNDS)
    replays = prepare(corpus_paths(corpus))
    if args.quick:
        replays = replays[::QUICK_STRIDE]
    if not replays:
        print(f"no replay with tracker events under {corpus}")
        return 0
    measure(replays, rounds)
    print(f"$ {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"python {platform.python_version()}, sc2reader {_sc2reader().__version__}, {rounds} round(s), "
          f"load average {os.getloadavg()[0]:.1f}; CPU = time.process_time, per-file median over rounds")
    report("All", replays)
    report("LotV (base_build >= 34784)", [r for r in replays if r.lotv])
    return 0


if __name__ == "__main__":
    sys.exit(main())
