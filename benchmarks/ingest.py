"""`replaycli ingest` side by side with its own parse cost and with what peer tools do.

From one run, all at depth `stats` on the real corpus:

(a) parallel efficiency: (sum of in-process `parse_file(path, "stats")` CPU / 2) / wall of
    `replaycli ingest --workers 2` into a fresh database (1.0 = perfect use of 2 cores);
(b) a sequential `sc2reader.load_replay(path)` loop (load_level 4, default plugins: what peer
    tools do) vs that ingest, as wall / wall;
(c) a second, unchanged ingest of the same files into the same database vs the first (target < 5%);
(d) peak RSS of the ingest CLI's main process: its own /proc/<pid>/status VmHWM, polled while it
    runs (the workers are forkserver children, so they are not in this number), on every 4th
    file, every 2nd file and all of the corpus, to show it stays flat;
(e) `--workers 0` vs `--workers 2`, wall / wall;
(f) the main process's own CPU (utime + stime of all its threads, from /proc/<pid>/stat read once
    it has exited and before it is reaped) per parsed file, in total and beyond what the unchanged
    re-run costs (interpreter start-up, imports, the walk and the lookups, which every run pays;
    the re-run starts no pool), and the database's bytes per stored replay.

Interleaving: each round runs every configuration once over all the files, in an order that
rotates from round to round (the re-run always directly follows its first run). Ratios are
given per round, as their median, and as the ratio of the totals over the rounds. Whole-corpus
rounds, not slices: at depth stats the whole corpus is only ~13 s of parse CPU, so on a slice
the CLI's fixed start-up (~0.5 s interpreter + ~0.4 s pool) would dominate every ratio. Ingest
runs are real `replaycli` subprocesses fed a path list on stdin; the two loops run inside this
process, after a warm-up. Timings are printed, never asserted; the script always exits 0.

    python benchmarks/ingest.py            # the whole corpus, 2 rounds: about 4 minutes
    python benchmarks/ingest.py --quick    # every 10th file, 2 rounds: under a minute
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling parse_depths.py

from parse_depths import (
    CORPUS_ENV,
    DEFAULT_CORPUS,
    QUICK_STRIDE,
    command_line,
    format_table,
    load_corpus,
    machine_line,
    ordinal,
    quiet_sc2reader,
    ratio,
    resolve_corpus,
)

DEPTH = "stats"
PARALLEL_WORKERS = 2
DEFAULT_ROUNDS = 2
RSS_STRIDES = (4, 2)  # the memory series: every 4th and every 2nd file (the rounds give all of them)
QUICK_ROUNDS = 2
RSS_POLL_S = 0.02  # VmHWM only grows, so a poll every 20 ms misses at most the last 20 ms
KIB_PER_MIB = 1024
RERUN_TARGET = 0.05  # (c): an unchanged re-run should cost under 5% of the first run
CLI_OK_EXITS = (0, 1)  # 1: some files failed (the corpus has broken replays on purpose)
VMHWM_RE = re.compile(rb"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)
VMRSS_RE = re.compile(rb"^VmRSS:\s+(\d+)\s+kB", re.MULTILINE)
STDERR_TAIL_CHARS = 2000

W2, RERUN, W0, STATS_LOOP, PEER_LOOP = "ingest_w2", "ingest_w2_rerun", "ingest_w0", "stats_loop", "peer_loop"
# The steps of one round, rotated per round; the re-run always directly follows its first run.
ROUND_STEPS = (W2, W0, STATS_LOOP, PEER_LOOP)
LABELS = {
    W2: f"replaycli ingest --workers {PARALLEL_WORKERS}, fresh db",
    RERUN: "  same again, unchanged (all skipped)",
    W0: "replaycli ingest --workers 0, fresh db",
    STATS_LOOP: f"in-process parse_file(path, {DEPTH!r}) loop",
    PEER_LOOP: "in-process sc2reader.load_replay(path) loop",
}


@dataclass
class IngestRun:
    """One `replaycli ingest` subprocess."""

    command: str
    files: int
    wall: float  # the subprocess, start to exit: what a user waits for
    json_wall: float  # the CLI's own wall_seconds: the ingest loop, without interpreter start-up
    peak_rss_kib: int  # the CLI process's own VmHWM
    median_rss_kib: float  # median of the VmRSS samples: the typical footprint, not the worst moment
    main_cpu: float = 0.0  # the CLI process's own utime + stime (all its threads) at exit, seconds
    db_bytes: int = 0  # the database file and its WAL after the run
    counts: dict[str, int] = field(default_factory=dict)
    exit_code: int = 0


@dataclass
class LoopRun:
    """One sequential loop inside this process."""

    files: int
    wall: float
    cpu: float
    failures: int
    per_file_cpu: list[float] = field(default_factory=list)


Run = IngestRun | LoopRun


# --------------------------------------------------------------------------- ingest subprocesses


def replaycli_executable() -> str:
    """The `replaycli` console script of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "replaycli"
    return str(candidate) if candidate.exists() else "replaycli"


def read_memory_kib(pid: int) -> tuple[int, int] | None:
    """The process's (VmHWM, VmRSS): peak and current RSS; None once it is gone or a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_bytes()
    except OSError:
        return None
    peak, current = VMHWM_RE.search(status), VMRSS_RE.search(status)
    return (int(peak.group(1)), int(current.group(1))) if peak and current else None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def exited(pid: int) -> bool:
    """Whether the child has exited, leaving it unreaped (a zombie) so its /proc entry can still be read."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def read_cpu_seconds(pid: int) -> float | None:
    """The process's own utime + stime (not its children's); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15 of proc(5), after ")"


def database_bytes(db: Path) -> int:
    """The database file plus its WAL, as the run left them."""
    return sum(path.stat().st_size for path in (db, Path(f"{db}-wal")) if path.exists())


def ingest_command(db: Path, workers: int) -> list[str]:
    """The ingest command line; the paths come on stdin."""
    return [replaycli_executable(), "ingest", "-", "--db", str(db), "--workers", str(workers),
            "--depth", DEPTH, "--json", "-q"]


def run_ingest(paths_file: Path, files: int, db: Path, workers: int) -> IngestRun:
    """Run the CLI on a path list, polling its own VmHWM and VmRSS until it exits."""
    argv = ingest_command(db, workers)
    out_path, err_path = db.with_suffix(".out.json"), db.with_suffix(".err.txt")
    peak, samples, cpu = 0, [], 0.0
    with paths_file.open("rb") as stdin, out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err)
        while not exited(proc.pid):
            memory = read_memory_kib(proc.pid)
            if memory is not None:
                peak = max(peak, memory[0])
                samples.append(memory[1])
            time.sleep(RSS_POLL_S)
        wall = time.perf_counter() - started
        cpu = read_cpu_seconds(proc.pid) or 0.0  # exact: a zombie's stat holds all its threads' final times
        proc.wait()
    summary = parse_summary(out_path, err_path, proc.returncode)
    return IngestRun(command=f"{shlex.join(argv)} < {shlex.quote(str(paths_file))}", files=files, wall=wall,
                     json_wall=float(summary.get("wall_seconds", float("nan"))), peak_rss_kib=peak,
                     median_rss_kib=statistics.median(samples) if samples else 0.0,
                     counts=dict(summary.get("counts", {})), exit_code=proc.returncode, main_cpu=cpu,
                     db_bytes=database_bytes(db))


def parse_summary(out_path: Path, err_path: Path, exit_code: int) -> dict[str, Any]:
    """The CLI's --json summary; on a surprise exit code, show its stderr and return {}."""
    if exit_code not in CLI_OK_EXITS:
        tail = err_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL_CHARS:]
        print(f"warning: replaycli exited {exit_code}:\n{tail}", file=sys.stderr)
    try:
        return dict(json.loads(out_path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def write_paths(paths: Sequence[str], target: Path) -> Path:
    """Write a newline-separated path list for `replaycli ingest -`."""
    target.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
    return target


# --------------------------------------------------------------------------- in-process loops


def stats_loop(paths: Sequence[str]) -> LoopRun:
    """What the ingest workers do, sequentially in this process: parse_file at DEPTH."""
    from replay_cli.parse import parse_file

    failures, per_file = 0, []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for path in paths:
        started = time.process_time()
        failures += parse_file(path, DEPTH)["status"] == "failed"
        per_file.append(time.process_time() - started)
    return LoopRun(len(paths), time.perf_counter() - wall0, time.process_time() - cpu0, failures, per_file)


def peer_loop(paths: Sequence[str]) -> LoopRun:
    """What peer tools do: sc2reader.load_replay(path) (load_level 4, default plugins), one after another."""
    import sc2reader

    failures = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for path in paths:
        try:
            sc2reader.load_replay(path)
        except Exception:
            failures += 1
    return LoopRun(len(paths), time.perf_counter() - wall0, time.process_time() - cpu0, failures)


def warm_up(path: str) -> None:
    """Import sc2reader and build the engines once, untimed, so the first loop pays no import."""
    stats_loop([path])
    peer_loop([path])


# --------------------------------------------------------------------------- rounds


def run_step(step: str, paths: Sequence[str], paths_file: Path, db_dir: Path, tag: str) -> dict[str, Run]:
    """Run one step of a round; W2 also runs its unchanged re-run on the same database."""
    if step == W2:
        db = db_dir / f"{tag}-w{PARALLEL_WORKERS}.db"
        first = run_ingest(paths_file, len(paths), db, PARALLEL_WORKERS)
        return {W2: first, RERUN: run_ingest(paths_file, len(paths), db, PARALLEL_WORKERS)}
    if step == W0:
        return {W0: run_ingest(paths_file, len(paths), db_dir / f"{tag}-w0.db", 0)}
    if step == STATS_LOOP:
        return {STATS_LOOP: stats_loop(paths)}
    return {PEER_LOOP: peer_loop(paths)}


def run_rounds(paths: Sequence[str], rounds: int, work: Path, progress: Callable[[str], None]) -> list[dict[str, Run]]:
    """Every configuration on all the files, once per round, in an order that rotates per round."""
    paths_file = write_paths(paths, work / "all.paths")
    results: list[dict[str, Run]] = []
    for index in range(rounds):
        tag = f"round{index + 1}"
        shift = index % len(ROUND_STEPS)
        outcome: dict[str, Run] = {}
        for step in ROUND_STEPS[shift:] + ROUND_STEPS[:shift]:
            outcome.update(run_step(step, paths, paths_file, work, tag))
            progress(f"{tag}/{rounds}: {step} done ({len(paths)} files)")
        results.append(outcome)
    return results


def run_rss_series(paths: Sequence[str], work: Path, progress: Callable[[str], None]) -> list[IngestRun]:
    """Ingest every 4th and every 2nd file into fresh databases; the rounds give all the files.

    Strided, not prefixes: the manifest is in build order, so its first half is the old, cheap replays.
    """
    runs = []
    for stride in RSS_STRIDES:
        subset = list(paths[::stride])
        paths_file = write_paths(subset, work / f"every{stride}.paths")
        runs.append(run_ingest(paths_file, len(subset), work / f"every{stride}-w{PARALLEL_WORKERS}.db",
                               PARALLEL_WORKERS))
        progress(f"memory series: every {ordinal(stride)} file ({len(subset)} files) done")
    return runs


# --------------------------------------------------------------------------- the report


def ingest(rnd: dict[str, Run], key: str) -> IngestRun:
    """The ingest run stored under key."""
    run = rnd[key]
    assert isinstance(run, IngestRun)
    return run


def loop(rnd: dict[str, Run], key: str) -> LoopRun:
    """The in-process loop stored under key."""
    run = rnd[key]
    assert isinstance(run, LoopRun)
    return run


def efficiency(rnd: dict[str, Run], wall: Callable[[IngestRun], float]) -> float:
    """(a): ideal 2-worker wall (in-process parse CPU / 2) over the measured ingest wall."""
    return ratio(loop(rnd, STATS_LOOP).cpu / PARALLEL_WORKERS, wall(ingest(rnd, W2)))


def in_order_makespan(costs: Sequence[float], workers: int) -> float:
    """Finish time of `costs` handed out in order to whichever of `workers` frees up first.

    That is how the pool dispatches, so this is the best wall any 2-worker ingest can reach in
    this file order, before overheads: the one slow file at the end of the order is a tail that
    sum/2 ignores.
    """
    free_at = [0.0] * workers
    for cost in costs:
        heapq.heapreplace(free_at, free_at[0] + cost)
    return max(free_at)


def total(rounds: list[dict[str, Run]], key: str, attr: str) -> float:
    """Sum of one attribute of one configuration over the rounds."""
    return sum(float(getattr(rnd[key], attr)) for rnd in rounds)


RatioFn = Callable[[dict[str, Run]], float]


def ratio_specs() -> list[tuple[str, RatioFn, Callable[[list[dict[str, Run]]], float]]]:
    """(label, per-round ratio, ratio of totals) for every headline ratio."""

    def eff_total(attr: str) -> Callable[[list[dict[str, Run]]], float]:
        return lambda rs: ratio(total(rs, STATS_LOOP, "cpu") / PARALLEL_WORKERS, total(rs, W2, attr))

    def wall_total(top: str, bottom: str, attr: str = "wall") -> Callable[[list[dict[str, Run]]], float]:
        return lambda rs: ratio(total(rs, top, attr), total(rs, bottom, attr))

    return [
        ("(a) efficiency: stats CPU/2 / ingest w2 wall (process)",
         lambda r: efficiency(r, lambda run: run.wall), eff_total("wall")),
        ("(a) efficiency: stats CPU/2 / ingest w2 wall_seconds (json)",
         lambda r: efficiency(r, lambda run: run.json_wall), eff_total("json_wall")),
        ("(a) tail-aware: in-order 2-worker schedule of stats CPU / w2 wall",
         lambda r: ratio(in_order_makespan(loop(r, STATS_LOOP).per_file_cpu, PARALLEL_WORKERS), r[W2].wall),
         lambda rs: ratio(sum(in_order_makespan(loop(r, STATS_LOOP).per_file_cpu, PARALLEL_WORKERS) for r in rs),
                          total(rs, W2, "wall"))),
        ("(a) same on walls: stats-loop wall/2 / ingest w2 wall (process)",
         lambda r: ratio(r[STATS_LOOP].wall / PARALLEL_WORKERS, r[W2].wall),
         lambda rs: ratio(total(rs, STATS_LOOP, "wall") / PARALLEL_WORKERS, total(rs, W2, "wall"))),
        ("(b) peer load_replay loop wall / ingest w2 wall",
         lambda r: ratio(r[PEER_LOOP].wall, r[W2].wall), wall_total(PEER_LOOP, W2)),
        ("(b) peer load_replay loop CPU / stats loop CPU",
         lambda r: ratio(loop(r, PEER_LOOP).cpu, loop(r, STATS_LOOP).cpu),
         lambda rs: ratio(total(rs, PEER_LOOP, "cpu"), total(rs, STATS_LOOP, "cpu"))),
        (f"(c) unchanged re-run wall / first wall (target < {RERUN_TARGET:.0%})",
         lambda r: ratio(r[RERUN].wall, r[W2].wall), wall_total(RERUN, W2)),
        ("(c) same, json wall_seconds",
         lambda r: ratio(ingest(r, RERUN).json_wall, ingest(r, W2).json_wall), wall_total(RERUN, W2, "json_wall")),
        ("(e) ingest --workers 0 wall / --workers 2 wall",
         lambda r: ratio(r[W0].wall, r[W2].wall), wall_total(W0, W2)),
    ]


def ratio_table(rounds: list[dict[str, Run]]) -> str:
    """The headline ratios: per round, median of rounds, ratio of totals."""
    header = ["ratio", *(f"r{i + 1}" for i in range(len(rounds))), "median", "of totals"]
    rows = []
    for label, per_round, of_totals in ratio_specs():
        values = [per_round(rnd) for rnd in rounds]
        rows.append([label, *(f"{v:.2f}" for v in values), f"{statistics.median(values):.2f}",
                     f"{of_totals(rounds):.2f}"])
    return format_table(header, rows)


def totals_table(rounds: list[dict[str, Run]]) -> str:
    """Per configuration: the median over the rounds (each round covers all the files once)."""
    header = ["configuration (median of rounds)", "files", "wall s", "json wall s", "CPU s", "notes"]
    rows = []
    for key in (W2, RERUN, W0, STATS_LOOP, PEER_LOOP):
        runs = [rnd[key] for rnd in rounds]
        wall = f"{statistics.median(r.wall for r in runs):.1f}"
        ingest_runs = [r for r in runs if isinstance(r, IngestRun)]
        loop_runs = [r for r in runs if isinstance(r, LoopRun)]
        if ingest_runs:
            counts = ingest_runs[0].counts
            note = " ".join(f"{k}={counts.get(k, 0)}" for k in ("parsed", "skipped", "failed"))
            rows.append([LABELS[key], str(runs[0].files), wall,
                         f"{statistics.median(r.json_wall for r in ingest_runs):.1f}", "-", note])
        else:
            rows.append([LABELS[key], str(runs[0].files), wall, "-",
                         f"{statistics.median(r.cpu for r in loop_runs):.1f}", f"failed={loop_runs[0].failures}"])
    return format_table(header, rows)


def schedule_line(rounds: list[dict[str, Run]]) -> str:
    """The best 2-worker wall the stats loop's per-file CPU allows: sum/2 and the in-order schedule."""
    runs = [loop(rnd, STATS_LOOP) for rnd in rounds]
    half = statistics.median(r.cpu / PARALLEL_WORKERS for r in runs)
    ideal = statistics.median(in_order_makespan(r.per_file_cpu, PARALLEL_WORKERS) for r in runs)
    largest = statistics.median(max(r.per_file_cpu) for r in runs)
    return (f"stats loop per-file CPU (median of rounds): sum/{PARALLEL_WORKERS} = {half:.1f} s; in-order "
            f"{PARALLEL_WORKERS}-worker schedule = {ideal:.1f} s; largest single file = {largest:.2f} s")


def main_process_row(rounds: list[dict[str, Run]], key: str) -> list[str]:
    """One configuration's (f) row: medians over the rounds."""
    runs = [ingest(rnd, key) for rnd in rounds]
    reruns = [ingest(rnd, RERUN) for rnd in rounds]
    parsed = [max(1, r.counts.get("parsed", 0)) for r in runs]
    stored = [max(1, r.counts.get("ok", 0) + r.counts.get("partial", 0)) for r in runs]
    cpu = f"{statistics.median(r.main_cpu for r in runs):.2f}"
    if key == RERUN:  # nothing parsed or stored: its CPU is what every run pays before parsing
        return [LABELS[key], cpu, "-", "-", "-"]
    per_file = statistics.median(1000 * r.main_cpu / n for r, n in zip(runs, parsed))
    beyond = statistics.median(1000 * (r.main_cpu - again.main_cpu) / n for r, again, n in zip(runs, reruns, parsed))
    size = statistics.median(r.db_bytes / n / 1024 for r, n in zip(runs, stored))
    return [LABELS[key], cpu, f"{per_file:.2f}", f"{beyond:.2f}", f"{size:.1f}"]


def main_process_table(rounds: list[dict[str, Run]]) -> str:
    """(f): the CLI main process's own CPU per parsed file, and database bytes per stored replay."""
    header = ["configuration (median of rounds)", "main CPU s", "ms/parsed file", "beyond re-run ms/file",
              "KiB/stored replay"]
    return format_table(header, [main_process_row(rounds, key) for key in (W2, W0, RERUN)])


def mib(kib: float) -> str:
    return f"{kib / KIB_PER_MIB:.1f}"


def rss_table(rounds: list[dict[str, Run]], series: list[IngestRun]) -> str:
    """(d): the CLI main process's VmHWM at 1/4, 1/2 and all of the files."""
    header = ["ingest --workers 2, fresh db", "files", "peak (VmHWM) MiB", "median VmRSS MiB", "wall s", "files/s"]
    labelled = [(f"every {ordinal(stride)} file", run) for stride, run in zip(RSS_STRIDES, series)]
    labelled += [(f"all files (round {i + 1})", ingest(rnd, W2)) for i, rnd in enumerate(rounds)]
    rows = [[label, str(run.files), mib(run.peak_rss_kib), mib(run.median_rss_kib), f"{run.wall:.1f}",
             f"{run.files / run.wall:.1f}"] for label, run in labelled]
    return format_table(header, rows)


def commands_section(rounds: list[dict[str, Run]], series: list[IngestRun]) -> str:
    """Every ingest command exactly as run (temporary paths, removed at the end)."""
    lines = [ingest(rnd, key).command for rnd in rounds for key in (W2, RERUN, W0)]
    lines += [run.command for run in series]
    return "\n".join(f"  {line}" for line in lines)


def report(rounds: list[dict[str, Run]], series: list[IngestRun], args: argparse.Namespace, corpus: Path,
           n_files: int, elapsed: float) -> str:
    """The whole plain-text report."""
    return "\n".join([
        f"replaycli benchmark: ingest at depth {DEPTH} vs in-process parse and a peer-style sc2reader loop",
        f"command: {command_line()}",
        f"corpus: {corpus} ({n_files} files{f', --quick: every {ordinal(QUICK_STRIDE)}' if args.quick else ''})",
        (f"rounds: {len(rounds)}, each over all the files; steps rotate per round; "
         "loops run in this process after a warm-up"),
        "walls: 'wall' = subprocess start to exit; 'json wall' = the CLI's wall_seconds (no interpreter start-up)",
        f"machine: {machine_line()}; elapsed {elapsed:.0f} s wall, {time.process_time():.0f} s CPU in this process",
        "",
        totals_table(rounds),
        schedule_line(rounds),
        "",
        ratio_table(rounds),
        "",
        "(f) main-process CPU (the CLI's own utime + stime; workers not included) and database size",
        main_process_table(rounds),
        "",
        "(d) main-process peak RSS (the CLI's own /proc/<pid>/status VmHWM; workers not included)",
        rss_table(rounds, series),
        "",
        "ingest commands run (stdin = newline-separated paths; temporary files removed afterwards):",
        commands_section(rounds, series),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"every {QUICK_STRIDE}th file and {QUICK_ROUNDS} rounds")
    parser.add_argument("--corpus", help=f"replay folder (default ${CORPUS_ENV} or {DEFAULT_CORPUS})")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULT_ROUNDS}, --quick {QUICK_ROUNDS})")
    args = parser.parse_args(argv)
    args.rounds = max(1, args.rounds or (QUICK_ROUNDS if args.quick else DEFAULT_ROUNDS))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; always 0 (timings are reported, never asserted)."""
    args = parse_args(argv)
    quiet_sc2reader()
    corpus = resolve_corpus(args.corpus)
    paths = [f.path for f in load_corpus(corpus, args.quick)]
    if len(paths) < 2 * args.rounds:
        print(f"need at least {2 * args.rounds} replays under {corpus}, found {len(paths)}")
        return 0

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    started = time.monotonic()
    warm_up(paths[0])
    with tempfile.TemporaryDirectory(prefix="replaycli-bench-") as tmp:
        work = Path(tmp)
        rounds = run_rounds(paths, args.rounds, work, progress)
        series = run_rss_series(paths, work, progress)
    print(report(rounds, series, args, corpus, len(paths), time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
