"""What the trust checks cost: parse_replay against the same parse without them, per depth.

`checked` is `replay_cli.parse.parse_replay(data, depth)` as shipped: sc2reader's log records
counted, the completeness and trust assessment, and every value bounded to its column.
`unchecked` loads the same bytes with plain sc2reader (no log capture, no tolerant subclass)
and extracts the same rows, with none of those checks. Both run in this process, interleaved
per file with the order alternating, so machine noise hits them alike. CPU time, ratios.

    python benchmarks/quality_cost.py            # every LotV replay of the corpus
    python benchmarks/quality_cost.py --quick    # every 5th

Timings are printed, never asserted. The script exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "replays"
LOTV_MIN_BASE_BUILD = 34784
DEPTHS = ("summary", "stats", "full")


def unchecked(data: bytes, depth: str) -> None:
    """The parse without the trust checks: plain sc2reader, then the same row extraction."""
    from replay_cli import parse

    with contextlib.redirect_stdout(io.StringIO()):
        replay = parse._sc2reader().resources.Replay(
            io.BytesIO(data), load_level=parse.LOAD_LEVEL_BY_DEPTH[depth], engine=parse._engine(depth), debug=False
        )
    parse._extract(replay, "0" * 64, depth)


def checked(data: bytes, depth: str) -> None:
    from replay_cli.parse import parse_replay

    parse_replay(data, depth)


def cpu(function, data: bytes, depth: str) -> float:
    started = time.process_time()
    function(data, depth)
    return time.process_time() - started


def corpus_files(corpus: Path, stride: int) -> list[bytes]:
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle, delimiter="\t")
                if row["base_build"].isdigit() and int(row["base_build"]) >= LOTV_MIN_BASE_BUILD
                and row["sc2reader4_status"] == "ok"]
    paths = [corpus / f"{row['source'].replace('/', '+')}" / row["path"] for row in rows][::stride]
    return [path.read_bytes() for path in paths if path.exists()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("REPLAYCLI_TEST_REPLAYS", DEFAULT_CORPUS)))
    parser.add_argument("--quick", action="store_true", help="every 5th replay")
    args = parser.parse_args()
    files = corpus_files(args.corpus, 5 if args.quick else 1)
    print(f"{len(files)} LotV replays from {args.corpus}")
    for data in files[:2]:  # warm up imports and engines
        for depth in DEPTHS:
            checked(data, depth)
            unchecked(data, depth)
    for depth in DEPTHS:
        totals = {"checked": 0.0, "unchecked": 0.0}
        ratios = []
        for index, data in enumerate(files):
            order = (("checked", checked), ("unchecked", unchecked))
            seconds = {name: cpu(function, data, depth) for name, function in (order if index % 2 else order[::-1])}
            for name, value in seconds.items():
                totals[name] += value
            if seconds["unchecked"] > 0:
                ratios.append(seconds["checked"] / seconds["unchecked"])
        print(f"{depth:8} checked {totals['checked']:7.2f} s  unchecked {totals['unchecked']:7.2f} s  "
              f"ratio of totals {totals['checked'] / totals['unchecked']:.3f}  "
              f"median per-file ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
