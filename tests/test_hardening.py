"""`replaycli ingest` under signals, kill -9 and a second writer: real subprocesses, real pool, real SQLite.

Ctrl-C, SIGTERM, kill -9 mid-batch and a locked database, each followed by a resume. Each test starts the real CLI
(`python -m replay_cli`) or tests/fault_cli.py (the same CLI with a fault-injecting parse function,
chosen by file name) in its own session, so the whole process group can be signalled like a
terminal's Ctrl-C. Every child carries a marker in its environment, so leftovers are found by
scanning /proc, whoever their parent is by then. Measured times are printed (pytest -s).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from dbdump import table_rows

MARKER_ENV = "REPLAYCLI_HARDENING_MARKER"
EXIT_DEADLINE_S = 2.0  # a stopped ingest exits with 130/143 within 2 s, whatever its workers are doing
ORPHAN_DEADLINE_S = 2.0  # no tagged process may outlive a kill -9 of the CLI by more than 2 s
N_REAL = 60
N_SLEEP = 12
# Columns that legitimately differ between an interrupted-and-resumed run and a clean one.
VOLATILE = {
    "replays": {"stored_at", "stored_run"},
    "files": {"parse_seconds", "cpu_seconds", "peak_rss_bytes", "peak_rss_scope", "first_run", "last_run"},
}
DUMPED_TABLES = ("replays", "players", "chat", "build_order", "player_stats", "files")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs /proc and pidfd")


# --------------------------------------------------------------------------------------------------
# processes


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    marker: str
    out: Path
    err: Path
    started: float

    def stderr(self) -> str:
        return self.err.read_bytes().decode("utf-8", "replace")

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"ingest did not finish in {timeout} s; stderr:\n{self.stderr()[-3000:]}") from None


def start(replaycli, tmp: Path, args: list[str], *, fault: bool = False, stdin_list: Path | None = None,
          env: dict[str, str] | None = None) -> Run:
    """Start `replaycli ARGS` (or the fault CLI) in a new session with a marker in its environment."""
    marker = uuid.uuid4().hex
    module = "tests.fault_cli" if fault else "replay_cli"
    out, err = tmp / f"{marker}.out", tmp / f"{marker}.err"
    stdin = open(stdin_list, "rb") if stdin_list else subprocess.DEVNULL
    try:
        proc = replaycli.start(*args, module=module, env={MARKER_ENV: marker, "COLUMNS": "400", **(env or {})},
                               stdin=stdin, stdout=open(out, "wb"), stderr=open(err, "wb"), start_new_session=True)
    finally:
        if stdin_list:
            stdin.close()  # type: ignore[union-attr]
    return Run(proc, marker, out, err, time.monotonic())


def _stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, starttime) of a live process, None when it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    state, starttime = fields[0], int(fields[19])
    return None if state in ("Z", "X") else (state, starttime)


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of pid, as pid -> starttime (so a recycled pid is not mistaken for it)."""
    found: dict[int, int] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                info = _stat_fields(child)
                if info and child not in found:
                    found[child] = info[1]
                    todo.append(child)
    return found


def marked(marker: str) -> dict[int, int]:
    """Every live process whose environment carries this run's marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        info = _stat_fields(int(entry.name))
        if info and needle in environ.split(b"\0"):
            found[int(entry.name)] = info[1]
    return found


def leftovers(run: Run, recorded: dict[int, int]) -> dict[int, str]:
    alive = {pid: start for pid, start in recorded.items() if (_stat_fields(pid) or (0, -1))[1] == start}
    alive.update(marked(run.marker))
    result = {}
    for pid in alive:
        try:
            result[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
        except OSError:
            pass
    return result


def wait_for_exit(run, recorded, t0: float) -> tuple[int | None, float, float, list[int]]:
    """Wait for the CLI to exit: (exit code or None, seconds since t0, seconds until its children were gone, survivors)."""
    try:
        code = run.proc.wait(10)
    except subprocess.TimeoutExpired:
        code = None
    exit_s = time.monotonic() - t0
    gone_s, left = time_until_gone(run, recorded, ORPHAN_DEADLINE_S)
    return code, exit_s, gone_s, left


def time_until_gone(run: Run, recorded: dict[int, int], limit: float) -> tuple[float, dict[int, str]]:
    """Seconds until no recorded/marked process is left (polled up to 2 x limit) and what is left."""
    t0 = time.monotonic()
    while True:
        left = leftovers(run, recorded)
        elapsed = time.monotonic() - t0
        if not left or elapsed > 2 * limit:
            return elapsed, left
        time.sleep(0.02)


def wait_for(condition, timeout: float, what: str, run: Run) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if run.proc.poll() is not None:
            raise AssertionError(f"ingest exited ({run.proc.returncode}) before {what}; stderr:\n{run.stderr()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; stderr:\n{run.stderr()}")
        time.sleep(0.02)


def kill_everything(run: Run) -> None:
    """Last-resort cleanup so a failing test leaves nothing behind (our own marked processes only)."""
    for pid in marked(run.marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --------------------------------------------------------------------------------------------------
# database


def committed_files(db: Path) -> int:
    """How many files rows are committed now (0 while the database is not there yet)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def check_db(db: Path) -> dict[str, int]:
    """Integrity ok and no partial replay; return row counts."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        orphans = conn.execute("SELECT count(*) FROM replays r WHERE NOT EXISTS "
                               "(SELECT 1 FROM players p WHERE p.replay_id = r.id)").fetchone()[0]
        assert orphans == 0, f"{orphans} replays without players"
        missing = conn.execute("SELECT count(*) FROM files f WHERE f.status IN ('ok', 'partial', 'duplicate') "
                               "AND NOT EXISTS (SELECT 1 FROM replays r WHERE r.sha256 = f.sha256)").fetchone()[0]
        assert missing == 0, f"{missing} files rows point at no replay"
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("replays", "players", "files")}
    finally:
        conn.close()


def dump(db: Path) -> dict[str, list[tuple]]:
    """Every row of the data tables, minus timing/run columns, sorted."""
    conn = sqlite3.connect(db)
    try:
        return {table: table_rows(conn, table, VOLATILE.get(table, set())) for table in DUMPED_TABLES}
    finally:
        conn.close()


def assert_same_dump(got: dict[str, list[tuple]], want: dict[str, list[tuple]], label: str) -> None:
    for table in DUMPED_TABLES:
        extra = set(got[table]) - set(want[table])
        lost = set(want[table]) - set(got[table])
        assert got[table] == want[table], (
            f"{label}: table {table} differs from the uninterrupted run: {len(got[table])} vs "
            f"{len(want[table])} rows; extra {sorted(extra, key=repr)[:2]}; missing {sorted(lost, key=repr)[:2]}")


def run_info(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id, exit_code, interrupted, started_at, finished_at FROM runs "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# workload: 60 replays (real ones when the corpus is there) + slow fault files, in an order that keeps
# work in flight


def _unique_ok_replays(distinct_replays: list[Path], count: int) -> list[Path]:
    if len(distinct_replays) < count:
        pytest.skip(f"only {len(distinct_replays)} distinct parseable replays, {count} needed")
    return distinct_replays[:count] if count else distinct_replays


@dataclass(frozen=True)
class Workload:
    folder: Path
    paths: list[str]  # in ingest order
    listing: Path  # the paths, one a line, for `ingest -`


@pytest.fixture(scope="module")
def workload(distinct_replays, tmp_path_factory) -> Workload:
    folder = tmp_path_factory.mktemp("workload")
    real = []
    for i, source in enumerate(_unique_ok_replays(distinct_replays, N_REAL)):
        link = folder / f"r{i:03d}.SC2Replay"
        link.symlink_to(source)
        real.append(str(link))
    slow = []
    for i in range(N_SLEEP):
        path = folder / f"FAULT-sleep-{i:02d}.SC2Replay"
        path.write_bytes(b"not a replay %d" % i)
        slow.append(str(path))
    for name in ("FAULT-hang-00.SC2Replay", "FAULT-stubborn-00.SC2Replay"):
        (folder / name).write_bytes(b"not a replay either: " + name.encode())
    # hang and stubborn first: in flight from the start when FAULT_HANG activates them; then one
    # 0.5 s file per five real ones, so committed and uncommitted work alternate all run long.
    order = [str(folder / "FAULT-hang-00.SC2Replay"), str(folder / "FAULT-stubborn-00.SC2Replay")]
    for i, slow_path in enumerate(slow):
        order.append(slow_path)
        order.extend(real[i * 5:(i + 1) * 5])
    order.extend(real[N_SLEEP * 5:])
    listing = folder.parent / "workload.txt"
    listing.write_text("".join(p + "\n" for p in order))
    return Workload(folder, order, listing)


def ingest_args(db: Path, workers: int, depth: str = "stats") -> list[str]:
    return ["ingest", "--db", str(db), "--depth", depth, "--workers", str(workers), "--timeout", "20", "-"]


@pytest.fixture(scope="module")
def baseline(workload, tmp_path_factory, replaycli) -> dict[str, list[tuple]]:
    """The uninterrupted run's rows, which every interrupted-then-resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("baseline")
    db = tmp / "clean.db"
    t0 = time.monotonic()
    run = start(replaycli, tmp, ingest_args(db, 2), fault=True, stdin_list=workload.listing)
    code = run.wait()
    print(f"\n[hardening] uninterrupted run: exit {code} in {time.monotonic() - t0:.2f} s")
    assert code == 1, run.stderr()  # the garbage fault files fail; everything else is stored
    assert "Traceback" not in run.stderr()
    counts = check_db(db)
    assert counts["files"] == len(workload.paths)
    assert counts["replays"] >= N_REAL - 2, counts
    return dump(db)


def resume_and_compare(replaycli, tmp: Path, db: Path, workload: Workload, baseline, label: str) -> None:
    """Re-run the same ingest to completion and require exactly the uninterrupted run's rows."""
    rerun = start(replaycli, tmp, ingest_args(db, 2), fault=True, stdin_list=workload.listing)
    code = rerun.wait()
    assert code in (0, 1), f"{label}: re-run exited {code}:\n{rerun.stderr()}"
    assert "Traceback" not in rerun.stderr()
    check_db(db)
    assert_same_dump(dump(db), baseline, label)


# --------------------------------------------------------------------------------------------------
# 1-2: Ctrl-C to the group, SIGTERM to the CLI


@pytest.mark.parametrize(("signum", "to_group", "expected"), [
    pytest.param(signal.SIGINT, True, 130, id="ctrl-c-group"),
    pytest.param(signal.SIGTERM, False, 143, id="sigterm-cli"),
])
def test_signal_commits_exits_fast_and_resumes(tmp_path, workload, baseline, signum, to_group, expected,
                                               replaycli):
    db = tmp_path / "x.db"
    # a worker loops on FAULT-hang: stop() must kill a busy worker, not wait for it
    run = start(replaycli, tmp_path, ingest_args(db, 2), fault=True, stdin_list=workload.listing,
                env={"FAULT_HANG": "hang"})
    try:
        wait_for(lambda: committed_files(db) >= 1, 30, "a first committed files row", run)
        recorded = descendants(run.proc.pid)
        assert len(recorded) >= 3, f"expected fork server + 2 workers below the CLI, saw {recorded}"
        t0 = time.monotonic()
        if to_group:
            os.killpg(run.proc.pid, signum)
        else:
            os.kill(run.proc.pid, signum)
        code, exit_s, gone_s, left = wait_for_exit(run, recorded, t0)
        name = signal.Signals(signum).name
        print(f"\n[hardening] {name} ({'group' if to_group else 'CLI only'}): exit {code} in {exit_s:.3f} s; "
              f"children gone {gone_s:.3f} s after exit")
        err = run.stderr()
        assert code == expected, f"{name}: exit {code} after {exit_s:.2f} s (want {expected}):\n{err}"
        assert exit_s < EXIT_DEADLINE_S, f"{name}: exit took {exit_s:.2f} s (limit {EXIT_DEADLINE_S} s)"
        assert "Traceback" not in err, err
        assert "re-run" in err, err
        assert not left, f"{name}: still alive {gone_s:.2f} s after exit: {left}"
    finally:
        kill_everything(run)
    counts = check_db(db)
    assert 1 <= counts["files"] < len(workload.paths), f"the signal did not land mid-run: {counts}"
    last = run_info(db)[-1]
    assert last[1:3] == (expected, 1), f"runs row of the interrupted run: {last}"
    resume_and_compare(replaycli, tmp_path, db, workload, baseline, f"after {signal.Signals(signum).name}")


# --------------------------------------------------------------------------------------------------
# 3: a second Ctrl-C leaves at once


def test_second_ctrl_c_exits_at_once(tmp_path, workload, replaycli):
    """A worker ignoring SIGTERM makes the first Ctrl-C's orderly stop take >= 3 s (pebble escalates to
    SIGKILL after 3 s); the second Ctrl-C must cut that short, and the watchdog must still clean up."""
    db = tmp_path / "x.db"
    run = start(replaycli, tmp_path, ingest_args(db, 2), fault=True, stdin_list=workload.listing,
                env={"FAULT_HANG": "stubborn"})
    try:
        wait_for(lambda: committed_files(db) >= 1, 30, "a first committed files row", run)
        recorded = descendants(run.proc.pid)
        t0 = time.monotonic()
        os.killpg(run.proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(run.proc.pid, signal.SIGINT)
        code, exit_s, gone_s, left = wait_for_exit(run, recorded, t0)
        print(f"\n[hardening] SIGINT twice: exit {code} {exit_s:.3f} s after the first; "
              f"children gone {gone_s:.3f} s after exit")
        err = run.stderr()
        assert code == 130, f"exit {code} after {exit_s:.2f} s:\n{err}"
        assert exit_s < 1.5, f"second Ctrl-C: exit took {exit_s:.2f} s after the first signal"
        assert "Traceback" not in err, err
        assert not left, f"still alive {gone_s:.2f} s after exit: {left}"
    finally:
        kill_everything(run)
    check_db(db)


# --------------------------------------------------------------------------------------------------
# 4: kill -9 at random moments


@pytest.mark.parametrize("trial", range(3))
def test_kill_9_leaves_consistent_db_and_no_orphans(tmp_path, workload, baseline, trial, replaycli):
    rng = random.Random(20240 + trial)
    db = tmp_path / "x.db"
    # 3 workers, one of which loops on FAULT-hang: only the watchdog can end it once the CLI is gone
    run = start(replaycli, tmp_path, ingest_args(db, 3), fault=True, stdin_list=workload.listing,
                env={"FAULT_HANG": "hang"})
    try:
        wait_for(lambda: len(descendants(run.proc.pid)) >= 4, 30, "the fork server and 3 workers", run)
        time.sleep(rng.uniform(0.2, 3.0))
        recorded = descendants(run.proc.pid)
        at_kill = committed_files(db)
        run.proc.kill()
        run.proc.wait(10)
        gone_s, left = time_until_gone(run, recorded, ORPHAN_DEADLINE_S)
        print(f"\n[hardening] kill -9 trial {trial}: {at_kill} files committed, {len(recorded)} children; "
              f"all gone {gone_s:.3f} s after the kill")
        assert not left, f"kill -9 trial {trial}: still alive {gone_s:.2f} s after the kill: {left}"
        assert gone_s < ORPHAN_DEADLINE_S, f"kill -9 trial {trial}: children took {gone_s:.2f} s to go"
    finally:
        kill_everything(run)
    if db.exists():
        counts = check_db(db)
        assert counts["files"] < len(workload.paths), f"the kill did not land mid-run: {counts}"
    resume_and_compare(replaycli, tmp_path, db, workload, baseline, f"kill -9 trial {trial}")


# --------------------------------------------------------------------------------------------------
# 5: two ingesters on one database


def test_two_ingesters_same_db(tmp_path, distinct_replays, replaycli):
    replays = [str(p) for p in _unique_ok_replays(distinct_replays, 0)]
    third = len(replays) // 3
    first, second = replays[: 2 * third], replays[third:]  # the middle third is in both
    lists = []
    for i, chunk in enumerate((first, second)):
        listing = tmp_path / f"list{i}.txt"
        listing.write_text("".join(p + "\n" for p in chunk))
        lists.append(listing)
    db = tmp_path / "shared.db"  # new: both also race to create the schema
    runs = [start(replaycli, tmp_path, ["ingest", "--db", str(db), "--depth", "summary", "--workers", "1", "-"],
                  stdin_list=listing) for listing in lists]
    codes = [run.wait() for run in runs]
    errs = [run.stderr() for run in runs]
    print(f"\n[hardening] two ingesters over {len(first)} + {len(second)} paths ({third} shared): exits {codes}")
    for code, err in zip(codes, errs):
        assert code in (0, 1), err
        assert "database is locked" not in err.lower(), err
        assert "Traceback" not in err, err
    check_db(db)
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT path, count(*) FROM files GROUP BY path").fetchall()
        by_sha = conn.execute("SELECT sha256, count(*) FROM replays GROUP BY sha256 HAVING count(*) > 1").fetchall()
        failed = conn.execute("SELECT count(*) FROM files WHERE status = 'failed'").fetchone()[0]
        stored_shas = {s for (s,) in conn.execute("SELECT sha256 FROM replays")}
        ok_shas = {s for (s,) in conn.execute("SELECT sha256 FROM files WHERE status IN ('ok', 'partial')")}
    finally:
        conn.close()
    assert sorted(path for path, _ in rows) == sorted(set(replays)), "the union of both inputs, each once"
    assert all(n == 1 for _, n in rows)
    assert by_sha == []
    assert stored_shas == ok_shas
    if not failed:
        assert codes == [0, 0], codes
    info = run_info(db)
    assert len(info) == 2 and all(row[1] in (0, 1) for row in info), info
    (_, _, _, start_a, end_a), (_, _, _, start_b, end_b) = info
    # runs holds whole seconds: two runs inside the same second may have overlapped, so only a run
    # that started in a later second than the other ended shows they ran one after the other.
    assert start_b <= end_a and start_a <= end_b, f"the two runs did not overlap in time: {info}"


# --------------------------------------------------------------------------------------------------
# 6: hostile file names in the human summary


def test_hostile_file_names_are_shown_inert(tmp_path, distinct_replays, replaycli):
    folder = tmp_path / "hostile"
    folder.mkdir()
    # "/" cannot be in a file name, so no closing tag: an opening tag is just as live as markup
    bad = folder / "FAULT-raise [bold red]x[blink] \x1b[31mred.SC2Replay"
    bad.write_bytes(b"garbage")
    good = folder / "ok [link=file:x]y \x1b]0;title\x07.SC2Replay"
    good.write_bytes(_unique_ok_replays(distinct_replays, 1)[0].read_bytes())
    db = tmp_path / "x.db"
    run = start(replaycli, tmp_path, ["ingest", "--db", str(db), "--depth", "summary", "--workers", "1", "-v",
                                      str(folder)],
                fault=True)
    code = run.wait()
    raw = run.err.read_bytes()
    err = raw.decode("utf-8", "replace")
    print(f"\n[hardening] hostile names: exit {code}")
    assert code == 1, err
    assert b"\x1b" not in raw and b"\x07" not in raw, f"raw control bytes reached stderr: {raw!r}"
    assert "[bold red]x[blink]" in err and "[link=file:x]y" in err, f"markup not shown literally:\n{err}"
    assert "\\x1b[31m" in err, f"ESC not shown as text:\n{err}"
    assert "ValueError" in err and "Traceback" not in err, err
    conn = sqlite3.connect(db)
    try:
        stored = dict(conn.execute("SELECT path, status FROM files").fetchall())
    finally:
        conn.close()
    assert stored == {str(bad): "failed", str(good): "ok"}, "paths must be stored verbatim"
