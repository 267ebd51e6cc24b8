"""Cluster mode on a real 2-process Dask LocalCluster: results, worker deaths, cancellation, batching."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("distributed")

import dask
from distributed import Client, Scheduler, Worker
from distributed.core import Status
from test_ingest import dump

import replay_cli
from replay_cli.backend import Job
from replay_cli.cluster import (
    LOCAL_CLUSTER_CONFIG,
    DaskExecutor,
    ParseDeadline,
    SoftDeadline,
    check_versions,
    cluster_backend,
    connect,
    local_cluster,
    parse_batch,
    parse_with_deadline,
)
from replay_cli.errors import ReplayCliError
from replay_cli.ingest import IngestOptions, ingest_paths
from replay_cli.parse import parse_file
from replay_cli.result import Result
from replay_cli.store import open_store

SLOW_PER_FILE_S = 0.4
SPIN_LIMIT_S = 30.0  # a broken deadline fails the test instead of hanging the worker forever
DEADLINE_S = 0.5
BROKEN = "testError2"  # the corpus' header-only replay: fails as invalid_replay


# ---- task functions the workers import by reference (as test_cluster.<name>) -----------------

def slow_batch(items: list[tuple[str, bytes | None]], depth: str, max_bytes: int,
               deadline_s: float) -> list[Result]:
    """Sleep per file, then parse: a batch long enough to kill its worker mid-run."""
    time.sleep(SLOW_PER_FILE_S * len(items))
    return parse_batch(items, depth, max_bytes, deadline_s)


def poison_batch(items: list[tuple[str, bytes | None]], depth: str, max_bytes: int,
                 deadline_s: float) -> list[Result]:
    """Kill this worker process whenever a file named 'poison' is parsed, batch or alone."""
    if any("poison" in os.path.basename(path) for path, _ in items):
        os.kill(os.getpid(), signal.SIGKILL)
    return parse_batch(items, depth, max_bytes, deadline_s)


def _spin() -> Result:
    """A runaway pure-Python parse."""
    end = time.monotonic() + SPIN_LIMIT_S
    while time.monotonic() < end:
        pass
    raise AssertionError("the soft deadline never fired")


def spin_batch(items: list[tuple[str, bytes | None]], depth: str, max_bytes: int,
               deadline_s: float) -> list[Result]:
    """Spin forever on files named 'spin'; parse the rest; also report this worker's pid."""
    results = []
    for path, data in items:
        if "spin" in os.path.basename(path):
            results.append(parse_with_deadline(path, _spin, depth, deadline_s))
        else:
            results.extend(parse_batch([(path, data)], depth, max_bytes, deadline_s))
    for result in results:
        result["parser"]["pid"] = str(os.getpid())
    return results


# ---- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A real 2-process LocalCluster from local_cluster; a task fails as KilledWorker after killing 2 workers."""
    # Set before the scheduler exists: it reads allowed-failures once (default 3, so 4 deaths).
    with (dask.config.set({"distributed.scheduler.allowed-failures": 1}),
          local_cluster(2) as local,
          Client(local) as dask_client):
        yield dask_client


@pytest.fixture(scope="module")
def good_paths(replay_folder: Path) -> list[str]:
    """Small replays that parse (real ones when the corpus is there)."""
    paths = sorted(p for p in replay_folder.rglob("*.SC2Replay") if BROKEN not in p.name)
    return [str(p) for p in sorted(paths, key=lambda p: p.stat().st_size)[:10]]


def _run(backend, paths: list[str]) -> list[Result]:
    return [r for r in backend(iter(paths), lambda: False) if r is not None]


def _by_source(results: list[Result]) -> dict[str, Result]:
    sources = [r["source"] for r in results]
    assert len(sources) == len(set(sources)), "a path yielded more than one result"
    return {r["source"]: r for r in results}


# ---- tests -----------------------------------------------------------------------------------

def test_workers_import_the_test_module(client: Client, repo_root: Path):
    # LocalCluster's nannies spawn workers with this process's sys.path (multiprocessing spawn
    # ships it), so test_cluster.<fn> unpickles there, and in restarted workers too.
    paths = client.run(lambda: sys.path)
    assert all(str(repo_root / "tests") in path for path in paths.values())


def test_cluster_stores_the_same_rows_as_the_local_pool(client: Client, ingest_set, tmp_path: Path):
    paths = ingest_set.paths()
    options = IngestOptions(depth="summary", workers=2)
    with open_store(tmp_path / "local.db") as store:
        local = ingest_paths(store, paths, options)
    with open_store(tmp_path / "cluster.db") as store:
        remote = ingest_paths(store, paths, options,
                              backend=cluster_backend(client, depth="summary", timeout=30, max_bytes=options.max_bytes))
    assert remote.counts == local.counts
    assert remote.counts["parsed"] == len(paths) and remote.counts["failed"] == 1
    assert dump(tmp_path / "cluster.db") == dump(tmp_path / "local.db")


def test_shared_fs_mode_reads_on_the_workers(client: Client, good_paths: list[str], tmp_path: Path):
    missing = str(tmp_path / "gone.SC2Replay")
    backend = cluster_backend(client, depth="summary", timeout=30, shared_fs=True, batch_size=4)
    results = _by_source(_run(backend, [*good_paths, missing]))
    assert {p: r["status"] for p, r in results.items() if p != missing} == dict.fromkeys(good_paths, "ok")
    assert results[missing]["error"]["kind"] == "unreadable"


def test_client_side_read_failures_need_no_task(client: Client, tmp_path: Path):
    big = tmp_path / "big.SC2Replay"
    big.write_bytes(b"x" * 100)
    backend = cluster_backend(client, depth="stats", timeout=30, max_bytes=10,
                              task=poison_batch)  # no task may run: this one would kill a worker
    results = _by_source(_run(backend, [str(big), str(tmp_path)]))
    assert {r["error"]["kind"] for r in results.values()} == {"too_large", "not_regular_file"}
    assert {r["depth_requested"] for r in results.values()} == {"stats"}


def test_a_worker_killed_mid_run_loses_nothing(client: Client, good_paths: list[str]):
    pids = list(client.run(os.getpid).values())
    backend = cluster_backend(client, depth="summary", timeout=30, batch_size=2, task=slow_batch)
    killer = threading.Timer(SLOW_PER_FILE_S, os.kill, (pids[0], signal.SIGKILL))
    killer.start()
    try:
        results = _by_source(_run(backend, good_paths))
    finally:
        killer.cancel()
    assert {p: r["status"] for p, r in results.items()} == dict.fromkeys(good_paths, "ok")
    client.wait_for_workers(2, timeout=30)
    assert pids[0] not in client.run(os.getpid).values()  # it really died and was replaced


def _worker_tick_ms(dask_worker: Worker) -> float:
    return float(dask_worker.periodic_callbacks["tick"].callback_time)


def _scheduler_tick_ms(dask_scheduler: Scheduler) -> float:
    return float(dask_scheduler.periodic_callbacks["tick"].callback_time)


def _profiles(dask_worker: Worker) -> bool:
    return "profile" in dask_worker.periodic_callbacks


def test_local_cluster_settings_reach_its_processes_only(client: Client) -> None:
    # The nanny hands its settings to the worker it starts in place of a killed one too.
    pid = next(iter(client.run(os.getpid).values()))
    os.kill(pid, signal.SIGKILL)
    local = client.cluster
    assert local is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # on_error="return": the killed worker answers with an error until the scheduler drops it.
        pids = {pid for pid in client.run(os.getpid, on_error="return").values() if isinstance(pid, int)}
        # A nanny still starting its worker would not restart it if the next test killed it at once.
        settled = all(nanny.status == Status.running for nanny in local.workers.values())
        if len(pids) == 2 and pid not in pids and settled:
            break
        time.sleep(0.2)
    assert len(pids) == 2 and pid not in pids and settled, "the killed worker was never replaced"
    tick_ms = 1000 * dask.utils.parse_timedelta(str(LOCAL_CLUSTER_CONFIG["distributed.admin.tick.interval"]))
    assert set(client.run(_worker_tick_ms).values()) == {tick_ms}
    assert set(client.run(_profiles).values()) == {False}
    assert client.run_on_scheduler(_scheduler_tick_ms) == tick_ms
    assert all(dask.config.get(key) != value for key, value in LOCAL_CLUSTER_CONFIG.items())


def test_batches_close_at_the_byte_limit(client: Client, good_paths: list[str]) -> None:
    sizes = dict(zip(good_paths, (os.path.getsize(p) for p in good_paths), strict=True))
    limit = sum(sizes[p] for p in good_paths[:3])
    executor = DaskExecutor(client, depth="summary", timeout=30, max_bytes=10**8, batch_size=64, shared_fs=False,
                            window=None, task=parse_batch, batch_max_bytes=limit)
    try:
        jobs = list(executor.jobs(iter(good_paths)))
    finally:
        executor.close([])
    batches = [job.sources for job in jobs if isinstance(job, Job)]
    assert len(batches) == len(jobs)  # every file readable: no verdict without a task
    assert [p for batch in batches for p in batch] == good_paths
    assert len(batches[0]) == 3
    for batch in batches[:-1]:  # each closed by its last file, not before
        assert sum(sizes[p] for p in batch) >= limit > sum(sizes[p] for p in batch[:-1])
    backend = cluster_backend(client, depth="summary", timeout=30, batch_size=64, batch_max_bytes=limit)
    assert {p: r["status"] for p, r in _by_source(_run(backend, good_paths)).items()} == dict.fromkeys(good_paths, "ok")


def test_a_poison_file_fails_alone_as_worker_crash(client: Client, good_paths: list[str], tmp_path: Path):
    poison = tmp_path / "poison.SC2Replay"
    shutil.copy(good_paths[0], poison)
    paths = [*good_paths[:5], str(poison), *good_paths[5:]]
    backend = cluster_backend(client, depth="summary", timeout=30, batch_size=4, task=poison_batch)
    results = _by_source(_run(backend, paths))
    assert set(results) == set(paths)
    crash = results.pop(str(poison))
    assert crash["status"] == "failed"
    assert crash["error"]["kind"] == "worker_crash" and crash["error"]["type"] == "KilledWorker"
    assert {r["status"] for r in results.values()} == {"ok"}
    client.wait_for_workers(2, timeout=30)


def test_the_soft_deadline_turns_a_runaway_parse_into_a_timeout(client: Client, good_paths: list[str],
                                                                 tmp_path: Path):
    spin = tmp_path / "spin.SC2Replay"
    shutil.copy(good_paths[0], spin)
    # A worker an earlier test restarted imports sc2reader on its first parse, which alone can take
    # longer than DEADLINE_S on a loaded machine: import it before any deadline runs.
    client.run(parse_file, good_paths[0], "summary")
    pids_before = client.run(os.getpid)
    backend = cluster_backend(client, depth="summary", timeout=DEADLINE_S, batch_size=3, task=spin_batch)
    started = time.monotonic()
    results = _by_source(_run(backend, [str(spin), *good_paths[:5]]))
    assert time.monotonic() - started < SPIN_LIMIT_S / 2
    timed_out = results.pop(str(spin))
    assert timed_out["error"]["kind"] == "timeout" and timed_out["error"]["type"] == "ParseDeadline"
    assert timed_out["source"] == str(spin)
    assert {r["status"] for r in results.values()} == {"ok"}
    # The same worker process keeps parsing: nothing was restarted, no stray exception is pending.
    assert client.run(os.getpid) == pids_before
    again = _by_source(_run(cluster_backend(client, depth="summary", timeout=DEADLINE_S, batch_size=1),
                            good_paths[:4]))
    assert {r["status"] for r in again.values()} == {"ok"}


@pytest.mark.parametrize("shared_guard", [False, True], ids=["guard-per-parse", "guard-per-batch"])
def test_the_deadline_never_leaks_past_a_finished_parse(shared_guard: bool) -> None:
    # Race the watcher against parses that end right around the deadline; a leaked async exception
    # would surface in the busy loop afterwards. parse_batch shares one guard across its files.
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def work(seconds: float) -> Result:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return {"status": "ok"}  # type: ignore[typeddict-item]

    def race() -> None:
        try:
            guard = SoftDeadline(0.004) if shared_guard else None
            for i in range(150):
                seconds = 0.002 + (i % 5) * 0.001
                result = parse_with_deadline("f", lambda s=seconds: work(s), "summary", 0.004, guard)
                outcomes.append(result["status"])
            if guard is not None:
                guard.close()
            work(0.3)
        except BaseException as exc:  # the leak this test looks for
            errors.append(exc)

    thread = threading.Thread(target=race)
    thread.start()
    thread.join()
    assert not errors
    assert set(outcomes) <= {"ok", "failed"} and len(outcomes) == 150


def test_one_guard_times_out_only_the_file_that_overran() -> None:
    # A batch's files share one watcher thread: a runaway file fails as a timeout, and the files
    # after it get a fresh deadline of their own.
    def quick() -> Result:
        return {"status": "ok"}  # type: ignore[typeddict-item]

    guard = SoftDeadline(DEADLINE_S)
    try:
        results = [parse_with_deadline(name, work, "summary", DEADLINE_S, guard)
                   for name, work in (("before", quick), ("spin", _spin), ("after", quick), ("last", quick))]
        watchers = [t for t in threading.enumerate() if t is guard.watcher]
    finally:
        guard.close()
    assert [r["status"] for r in results] == ["ok", "failed", "ok", "ok"]
    assert results[1]["error"]["kind"] == "timeout" and results[1]["source"] == "spin"
    assert len(watchers) == 1
    guard.watcher.join(SPIN_LIMIT_S)
    assert not guard.watcher.is_alive()


def test_should_stop_ends_the_run_and_cancels_the_rest(client: Client, good_paths: list[str]):
    backend = cluster_backend(client, depth="summary", timeout=30, batch_size=1, task=slow_batch)
    stop = threading.Event()
    started = time.monotonic()
    results = []
    for result in backend(iter(good_paths), stop.is_set):
        if result is not None:
            results.append(result)
            stop.set()
    assert len(results) == 1
    assert time.monotonic() - started < len(good_paths) * SLOW_PER_FILE_S / 2
    # Cancelling is asynchronous and Dask never interrupts a running task: the two running
    # batches finish, and nothing queued behind them starts.
    deadline = time.monotonic() + 10 * SLOW_PER_FILE_S
    while any(client.processing().values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(client.processing().values())


def test_check_versions_accepts_a_matching_cluster(client: Client):
    check_versions(client)


def test_a_version_mismatch_is_refused(client: Client, monkeypatch: pytest.MonkeyPatch):
    real = replay_cli.__version__
    monkeypatch.setattr(replay_cli, "__version__", "0.0.0-test")
    with pytest.raises(ReplayCliError) as caught:
        check_versions(client)
    message = str(caught.value)
    assert "0.0.0-test" in message and real in message
    assert all(address in message for address in client.scheduler_info()["workers"])


def test_connect_needs_the_cluster_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ReplayCliError, match=r'pip install "replaycli\[cluster\]"'):
        connect("tcp://127.0.0.1:8786")


def test_connect_names_an_unreachable_scheduler():
    with pytest.raises(ReplayCliError, match=r"tcp://127\.0\.0\.1:9 ") as caught:
        connect("tcp://127.0.0.1:9", timeout=1)
    assert "\n" not in str(caught.value)


def test_connect_and_check_a_real_scheduler(client: Client):
    remote = connect(client.scheduler.address)
    try:
        check_versions(remote)
    finally:
        remote.close()


def test_importing_cluster_does_not_import_dask(repo_root: Path):
    code = "import sys, replay_cli.cluster; print(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root)
    assert out.stdout.strip() == "False"


def test_the_deadline_exception_escapes_parse_replay():
    assert not issubclass(ParseDeadline, Exception)


def _wait_for_file(path: Path, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert path.exists(), f"{path} never appeared"


def test_cli_end_to_end_against_dask_scheduler_and_worker_processes(tmp_path: Path, replaycli, samples: Path,
                                                                     corrupt_sample: Path):
    """`dask scheduler` + `dask worker` as real processes; replaycli connects by address."""
    dask_cli = Path(sys.executable).parent / "dask"
    if not dask_cli.exists():
        pytest.skip(f"the dask command is not installed beside {sys.executable}")
    scheduler_file = tmp_path / "scheduler.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
    scheduler = subprocess.Popen([str(dask_cli), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(scheduler_file)], **quiet)
    worker = None
    try:
        _wait_for_file(scheduler_file, 60)
        address = json.loads(scheduler_file.read_text())["address"]
        worker = subprocess.Popen([str(dask_cli), "worker", address, "--nworkers", "2", "--nthreads", "1",
                                   "--no-dashboard", "--host", "127.0.0.1"], **quiet)
        inputs = (str(samples), str(corrupt_sample))  # named explicitly: a walk of samples/ skips it
        proc = replaycli.run("ingest", *inputs, "--db", str(tmp_path / "dask.db"), "--scheduler", address,
                             "--json", "--depth", "summary", text=True, timeout=180)
        local = replaycli.run("ingest", *inputs, "--db", str(tmp_path / "local.db"), "--workers", "1", "--json",
                              "--depth", "summary", text=True, timeout=180)
    finally:
        for process in (worker, scheduler):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    assert proc.returncode == 1, proc.stderr  # the corrupt sample fails, as it does locally
    assert "Traceback" not in proc.stderr
    cluster_counts = json.loads(proc.stdout)["counts"]
    assert cluster_counts == json.loads(local.stdout)["counts"]
    assert cluster_counts["ok"] == 12
