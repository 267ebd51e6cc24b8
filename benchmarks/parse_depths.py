"""CPU cost per replay of each parse depth, against plain sc2reader, on the real corpus.

Every configuration runs in this one process, interleaved per file: for each file, each
configuration runs once, in an order that rotates from file to file (and from round to round),
so load from other jobs on the shared machine hits every configuration alike. The metric is
CPU time (`time.process_time`) and the headline numbers are RATIOS measured side by side.

Configurations:

* summary, stats, full -- `replay_cli.parse.parse_file(path, depth)`, file read included;
* baseline -- plain `sc2reader.load_replay(path)`: load_level 4 with sc2reader's default
  engine plugins (GameHeartNormalizer + ContextLoader), which is what peer tools do.

`full` costs about as much as the baseline, so by default it runs on every 3rd file only
(`--full-every`); full/stats and full/baseline are computed on exactly those files.

Timings are printed, never asserted. The script always exits 0.

    python benchmarks/parse_depths.py            # all files, 1 round, full on every 3rd
    python benchmarks/parse_depths.py --quick    # every 10th file: well under a minute
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_ENV = "REPLAYCLI_TEST_REPLAYS"
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "replays"
MANIFEST_NAME = "MANIFEST.tsv"
REPLAY_SUFFIX = ".sc2replay"
LOTV_MIN_BUILD = 34784  # Legacy of the Void: base_build >= 34784 (performance.md)
QUICK_STRIDE = 10  # --quick keeps every 10th file of the corpus
DEFAULT_FULL_EVERY = 3  # `full` (and its baseline comparison) on every 3rd file
DEFAULT_ROUNDS = 1
PERCENTILE_P90 = 90.0
MS_PER_S = 1000.0

DEPTH_CONFIGS = ("summary", "stats", "full")
BASELINE = "baseline"
# `stats` with REPLAYCLI_TRACKER=sc2reader: the same parse with sc2reader decoding the tracker events.
STATS_SC2READER = "stats-sc2reader"
CONFIGS = (*DEPTH_CONFIGS, STATS_SC2READER, BASELINE)
# (numerator, denominator) pairs printed as ratios, always over files where both succeeded.
RATIO_PAIRS = (("stats", STATS_SC2READER), ("stats", "summary"), ("full", "stats"), ("stats", BASELINE),
               ("full", BASELINE),
               ("summary", BASELINE))


@dataclass(frozen=True)
class ReplayFile:
    """One corpus file and the build it was recorded on (0 when unknown)."""

    path: str
    base_build: int

    @property
    def is_lotv(self) -> bool:
        return self.base_build >= LOTV_MIN_BUILD


@dataclass
class Sample:
    """One configuration's timings on one file, one entry per round."""

    cpu: list[float] = field(default_factory=list)
    ok: bool = True

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu)


# --------------------------------------------------------------------------- corpus


def resolve_corpus(override: str | None) -> Path:
    """Return the corpus directory: --corpus, else $REPLAYCLI_TEST_REPLAYS, else ../shared/replays."""
    return Path(override or os.environ.get(CORPUS_ENV) or DEFAULT_CORPUS).resolve()


def manifest_files(corpus: Path) -> list[ReplayFile]:
    """Read MANIFEST.tsv: the file on disk is corpus/<source with / as +>/<path>."""
    files: list[ReplayFile] = []
    with (corpus / MANIFEST_NAME).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            path = corpus / row["source"].replace("/", "+") / row["path"]
            if path.is_file():
                files.append(ReplayFile(str(path), int(row["base_build"] or 0)))
    return files


def header_build(path: str) -> int:
    """Read base_build from the replay header (sc2reader load_level 0); 0 when unreadable."""
    import sc2reader

    try:
        return int(sc2reader.load_replay(path, load_level=0).base_build or 0)
    except Exception:
        return 0


def walked_files(corpus: Path) -> list[ReplayFile]:
    """Find *.SC2Replay below a corpus that has no manifest, sorted by path."""
    paths = sorted(p for p in corpus.rglob("*") if p.suffix.lower() == REPLAY_SUFFIX and p.is_file())
    return [ReplayFile(str(p), header_build(str(p))) for p in paths]


def load_corpus(corpus: Path, quick: bool) -> list[ReplayFile]:
    """Every replay of the corpus (manifest order when there is one); --quick keeps every 10th."""
    files = manifest_files(corpus) if (corpus / MANIFEST_NAME).is_file() else walked_files(corpus)
    return files[::QUICK_STRIDE] if quick else files


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil(n * pct / 100)
    return ordered[int(rank) - 1]


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ... 11th, 12th, 13th, 21st."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero."""
    return numerator / denominator if denominator else float("nan")


def command_line() -> str:
    """The exact command that ran this script, ready to paste into a shell."""
    return shlex.join([sys.executable, *sys.argv])


def machine_line() -> str:
    """One line about the machine: Python, CPUs and load, which matter for reading the numbers."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load}"


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    body = [list(header), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    lines = []
    for row in body:
        cells = [row[0].ljust(widths[0]), *(cell.rjust(width) for cell, width in zip(row[1:], widths[1:]))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- the runs


def quiet_sc2reader() -> None:
    """Silence sc2reader's per-unit warnings, as replaycli does, for every configuration."""
    logging.getLogger("sc2reader").setLevel(logging.CRITICAL)


def run_depth(depth: str) -> Callable[[str], bool]:
    """A runner for `parse_file(path, depth)`; True when it returned a usable (non-failed) result."""
    from replay_cli.parse import parse_file

    def run(path: str) -> bool:
        return parse_file(path, depth)["status"] != "failed"

    return run


def run_stats_sc2reader(path: str) -> bool:
    """`parse_file(path, "stats")` with sc2reader's own tracker decoder (the reference path)."""
    from replay_cli.parse import TRACKER_PATH_ENV, TRACKER_PATH_SC2READER, parse_file

    os.environ[TRACKER_PATH_ENV] = TRACKER_PATH_SC2READER
    try:
        return parse_file(path, "stats")["status"] != "failed"
    finally:
        del os.environ[TRACKER_PATH_ENV]


def run_baseline(path: str) -> bool:
    """Plain `sc2reader.load_replay(path)`: load_level 4, default plugins; True when it did not raise."""
    import sc2reader

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # same stdout guard as replaycli's loader
            sc2reader.load_replay(path)
    except Exception:
        return False
    return True


def runners() -> dict[str, Callable[[str], bool]]:
    """Every configuration by name."""
    table = {depth: run_depth(depth) for depth in DEPTH_CONFIGS}
    table[STATS_SC2READER] = run_stats_sc2reader
    table[BASELINE] = run_baseline
    return table


def configs_for(index: int, full_every: int) -> list[str]:
    """The configurations run on the index-th file: `full` only on every full_every-th file."""
    return [c for c in CONFIGS if c != "full" or index % full_every == 0]


def rotated(configs: list[str], shift: int) -> list[str]:
    """configs rotated left by shift, so no configuration always runs first (or after the same one)."""
    shift %= len(configs)
    return configs[shift:] + configs[:shift]


def time_cpu(run: Callable[[str], bool], path: str) -> tuple[float, bool]:
    """CPU seconds of one call, and whether it succeeded.

    A full collection runs first, untimed: otherwise the previous call's cyclic garbage (an L4
    replay is tens of thousands of objects) is collected, and charged, inside this call. A
    summary parse after a baseline parse measured 94 ms instead of 5 ms that way.
    """
    gc.collect()
    started = time.process_time()
    ok = run(path)
    return time.process_time() - started, ok


def warm_up(files: Sequence[ReplayFile], table: dict[str, Callable[[str], bool]]) -> None:
    """Run every configuration once, untimed: imports, engines and lazy data load here, not in a sample.

    On the first file, and on the first LotV file too: the first file may have no tracker
    events, and what only tracker events load (sc2reader's tracker reader and datapacks,
    replay_cli.tracker's compiled pattern) would otherwise land in one file's sample.
    """
    first_lotv = next((replay for replay in files if replay.is_lotv), files[0])
    for path in dict.fromkeys((files[0].path, first_lotv.path)):
        for run in table.values():
            run(path)


def measure(files: Sequence[ReplayFile], rounds: int, full_every: int,
            progress: Callable[[str], None]) -> dict[str, dict[int, Sample]]:
    """Run the interleaved rounds; return samples[config][file index]."""
    table = runners()
    warm_up(files, table)
    samples: dict[str, dict[int, Sample]] = {config: {} for config in CONFIGS}
    started = time.monotonic()
    for round_no in range(rounds):
        for index, replay in enumerate(files):
            for config in rotated(configs_for(index, full_every), index + round_no):
                cpu, ok = time_cpu(table[config], replay.path)
                sample = samples[config].setdefault(index, Sample())
                sample.cpu.append(cpu)
                sample.ok = sample.ok and ok
            if (index + 1) % 50 == 0:
                progress(f"round {round_no + 1}/{rounds}: {index + 1}/{len(files)} files, "
                         f"{time.monotonic() - started:.0f} s")
    return samples


# --------------------------------------------------------------------------- the report


def cost_rows(samples: dict[str, dict[int, Sample]], keep: Callable[[int], bool]) -> list[list[str]]:
    """Per configuration: files, failures, median / p90 ms and total CPU s, on the kept files."""
    rows = []
    for config in CONFIGS:
        chosen = [s for i, s in samples[config].items() if keep(i)]
        if not chosen:
            continue
        cpu = [s.cpu_median for s in chosen]
        rows.append([config, str(len(chosen)), str(sum(not s.ok for s in chosen)),
                     f"{statistics.median(cpu) * MS_PER_S:.1f}", f"{percentile(cpu, PERCENTILE_P90) * MS_PER_S:.1f}",
                     f"{sum(cpu):.1f}"])
    return rows


def ratio_rows(samples: dict[str, dict[int, Sample]], keep: Callable[[int], bool]) -> list[list[str]]:
    """Each ratio pair on the kept files where both configurations ran and succeeded."""
    rows = []
    for top, bottom in RATIO_PAIRS:
        common = [i for i in samples[top] if keep(i) and i in samples[bottom]
                  and samples[top][i].ok and samples[bottom][i].ok]
        if not common:
            continue
        num = [samples[top][i].cpu_median for i in common]
        den = [samples[bottom][i].cpu_median for i in common]
        per_file = [ratio(n, d) for n, d in zip(num, den)]
        rows.append([f"{top} / {bottom}", str(len(common)),
                     f"{ratio(statistics.median(num), statistics.median(den)):.2f}",
                     f"{ratio(sum(num), sum(den)):.2f}", f"{statistics.median(per_file):.2f}"])
    return rows


def report(files: Sequence[ReplayFile], samples: dict[str, dict[int, Sample]], args: argparse.Namespace,
           corpus: Path, elapsed: float) -> str:
    """The whole plain-text report."""
    lotv = {i for i, f in enumerate(files) if f.is_lotv}
    cost_header = ["config", "files", "failed", "CPU med ms", "CPU p90 ms", "CPU total s"]
    ratio_header = ["ratio (CPU)", "files", "of medians", "of totals", "median per file"]
    n_full = len(samples["full"])
    parts = [
        "replaycli benchmark: parse cost per depth vs plain sc2reader (CPU time, one process)",
        f"command: {command_line()}",
        (f"corpus: {corpus} ({len(files)} files{f', --quick: every {ordinal(QUICK_STRIDE)}' if args.quick else ''}; "
         f"{len(lotv)} LotV, base_build >= {LOTV_MIN_BUILD})"),
        (f"rounds: {args.rounds}; configurations interleaved per file in rotating order; "
         "per-file value = median over rounds"),
        (f"full: run on every {ordinal(args.full_every)} file only ({n_full} files) to keep the run short; "
         "full/x ratios use exactly those files"),
        "baseline: sc2reader.load_replay(path), load_level 4, default plugins (GameHeartNormalizer + ContextLoader)",
        "ratios: only files where both configurations succeeded; gc.collect() runs untimed before each call",
        f"machine: {machine_line()}; elapsed {elapsed:.0f} s wall, {time.process_time():.0f} s CPU in this process",
        "",
        "All files",
        format_table(cost_header, cost_rows(samples, lambda i: True)),
        "",
        format_table(ratio_header, ratio_rows(samples, lambda i: True)),
    ]
    if lotv:
        parts += [
            "",
            f"LotV subset (base_build >= {LOTV_MIN_BUILD})",
            format_table(cost_header, cost_rows(samples, lambda i: i in lotv)),
            "",
            format_table(ratio_header, ratio_rows(samples, lambda i: i in lotv)),
        ]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"every {QUICK_STRIDE}th file only")
    parser.add_argument("--corpus", help=f"replay folder (default ${CORPUS_ENV} or {DEFAULT_CORPUS})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds over the files (default 1)")
    parser.add_argument("--full-every", type=int, default=DEFAULT_FULL_EVERY,
                        help="run `full` on every Nth file (default 3; 1 = every file)")
    args = parser.parse_args(argv)
    args.rounds = max(1, args.rounds)
    args.full_every = max(1, args.full_every)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; always 0 (timings are reported, never asserted)."""
    args = parse_args(argv)
    quiet_sc2reader()
    corpus = resolve_corpus(args.corpus)
    files = load_corpus(corpus, args.quick)
    if not files:
        print(f"no replays found under {corpus}")
        return 0
    started = time.monotonic()
    samples = measure(files, args.rounds, args.full_every, lambda line: print(line, file=sys.stderr, flush=True))
    print(report(files, samples, args, corpus, time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
