"""Runner tests on real pebble pools and real processes: crashes, hangs, memory caps, broken pools."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Workers unpickle tests.faults.fault_parse by reference: tests/conftest.py puts the repo root on
# sys.path before any fork server starts, because the fork server copies sys.path once.
from replay_cli import runner
from replay_cli.errors import PoolUnrecoverable
from replay_cli.platforms import CAP_RLIMIT, memory_cap_mode
from replay_cli.poolwatch import PoolMonitor
from replay_cli.result import Result
from replay_cli.runner import run_parses
from tests.faults import CRASHED_SUFFIX, PID_SUFFIX, SLEEP_S, fault_parse
from tests.processes import alive, descendants, multiprocessing_helpers

MiB = 1024 * 1024
REAL_REPLAYS = 10
TIMING_FIELDS = ("parse_seconds", "cpu_seconds", "peak_rss_bytes")  # measured, so never equal

Outcome = tuple[str, str, str | None]


def _files(directory: Path, names: list[str]) -> list[str]:
    """Create empty files and return their paths."""
    paths = []
    for name in names:
        path = directory / name
        path.touch()
        paths.append(str(path))
    return paths


def _run(paths: Any, **overrides: Any) -> list[Result]:
    """Run the fault parser over paths and return the Results (ticks dropped)."""
    options: dict[str, Any] = {"depth": "stats", "workers": 2, "timeout": 5.0, "max_memory": 512 * MiB,
                               "max_bytes": 50 * MiB, "parse_fn": fault_parse}
    options.update(overrides)
    return [result for result in run_parses(paths, **options) if result is not None]


def _outcome(result: Result) -> Outcome:
    """Reduce a Result to (path, status, error kind)."""
    assert result["source"] is not None
    return result["source"], result["status"], result["error"]["kind"] if result["error"] else None


def _workers() -> list[int]:
    """Return every live descendant of this process except the multiprocessing helpers."""
    return sorted(descendants() - multiprocessing_helpers())


def _wait_gone(pids: list[int], within_s: float = 3.0) -> list[int]:
    """Wait until none of pids is alive; return the survivors."""
    deadline = time.monotonic() + within_s
    while (survivors := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return survivors


@pytest.mark.parametrize("files_per_task", [1, runner.FILES_PER_TASK])
def test_mixed_fault_batch_attributes_every_file(tmp_path: Path, files_per_task: int) -> None:
    ok = _files(tmp_path, [f"ok{i:02}.SC2Replay" for i in range(20)])
    faults = _files(tmp_path, [f"{name}.SC2Replay" for name in
                               ("hang", "segv", "exit", "selfkill", "memory", "raise", "sleep")])
    started = time.monotonic()
    results = _run(ok[:10] + faults + ok[10:], timeout=2.0, files_per_task=files_per_task)
    elapsed = time.monotonic() - started

    sources = [str(result["source"]) for result in results]
    assert sorted(sources) == sorted(ok + faults)  # each path exactly once
    by_name = {Path(str(result["source"])).stem: result for result in results}
    assert {_outcome(by_name[Path(path).stem])[1] for path in ok} == {"ok"}
    assert by_name["sleep"]["status"] == "ok"
    expected = {"hang": "timeout", "segv": "worker_crash", "exit": "worker_crash", "selfkill": "worker_crash",
                "memory": "memory", "raise": "parse_error"}
    assert {name: by_name[name]["error"]["kind"] for name in expected} == expected  # type: ignore[index]
    messages = {name: by_name[name]["error"]["message"] for name in expected}  # type: ignore[index]
    assert "SIGSEGV" in messages["segv"] and "SIGKILL" in messages["selfkill"]
    assert "code 3" in messages["exit"]
    for name in ("hang", "segv", "exit", "selfkill"):
        assert "confirmed alone" in messages[name]
    assert by_name["raise"]["error"]["type"] == "ValueError"  # type: ignore[index]
    assert all("\n" not in message for message in messages.values())
    assert elapsed < 30
    assert _wait_gone(_workers()) == []


def test_inline_and_pool_agree(tmp_path: Path) -> None:
    paths = _files(tmp_path, [f"ok{i}.SC2Replay" for i in range(8)] + ["raise.SC2Replay", "sleep.SC2Replay"])
    inline = {_outcome(result) for result in _run(paths, workers=0)}
    pooled = {_outcome(result) for result in _run(paths, workers=2)}
    assert inline == pooled
    assert len(pooled) == len(paths)
    assert (paths[-2], "failed", "parse_error") in pooled


def test_pool_start_failure_falls_back_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("no processes for you")

    monkeypatch.setattr(runner, "ProcessPool", refuse)
    paths = _files(tmp_path, ["a.SC2Replay", "raise.SC2Replay"])
    with caplog.at_level(logging.WARNING, logger="replay_cli.runner"):
        results = _run(paths)
    assert {_outcome(result) for result in results} == {(paths[0], "ok", None),
                                                          (paths[1], "failed", "parse_error")}
    assert "parsing in this process" in caplog.text


def test_idle_worker_sigkill_is_survived(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _files(tmp_path, [f"ok{i}.SC2Replay" for i in range(8)])
    killed: list[int] = []

    def lazily() -> Iterator[str]:
        for index, path in enumerate(paths):
            if index == 3:
                # One task in flight at a time: the pool is idle here. pebble then raises
                # RuntimeError from the next schedule(): pebble refuses all work once broken.
                killed.append(_workers()[0])
                os.kill(killed[0], signal.SIGKILL)
                time.sleep(1.0)  # pebble's manager notices within 0.1 s; leave room for a loaded machine
            yield path

    with caplog.at_level(logging.WARNING, logger="replay_cli.runner"):
        results = _run(lazily(), max_in_flight=1)
    assert sorted(_outcome(result) for result in results) == [(path, "ok", None) for path in paths]
    assert killed and "rebuilding" in caplog.text


def _stop_after(count: int, results: list[Result]) -> Callable[[], bool]:
    """Return a should_stop that turns true once count results were collected."""
    return lambda: len(results) >= count


def test_should_stop_returns_promptly_and_leaves_no_workers(tmp_path: Path) -> None:
    paths = _files(tmp_path, [f"sleep{i:02}.SC2Replay" for i in range(40)])
    results: list[Result] = []
    seen_workers: list[int] = []
    stop_at = 0.0
    for result in run_parses(paths, depth="stats", workers=2, timeout=5.0, max_memory=None,
                             max_bytes=MiB, parse_fn=fault_parse, should_stop=_stop_after(4, results)):
        if result is None:
            continue
        assert len(results) < 4, "a result was yielded after should_stop() turned true"
        results.append(result)
        if len(results) == 4:
            seen_workers = _workers()
            stop_at = time.monotonic()
    stop_latency = time.monotonic() - stop_at
    assert stop_latency < 2.0
    assert len(results) == 4 and len({r["source"] for r in results}) == 4
    assert seen_workers and _wait_gone(seen_workers) == []
    assert _workers() == []


def test_closing_the_generator_kills_the_workers(tmp_path: Path) -> None:
    paths = _files(tmp_path, [f"sleep{i:02}.SC2Replay" for i in range(20)])
    results = run_parses(paths, depth="stats", workers=2, timeout=5.0, max_memory=None, max_bytes=MiB,
                         parse_fn=fault_parse)
    first = next(result for result in results if result is not None)
    assert first["status"] == "ok"
    workers = _workers()
    assert workers
    results.close()
    assert _wait_gone(workers) == []
    assert _workers() == []


@pytest.mark.parametrize("files_per_task", [1, runner.FILES_PER_TASK])
def test_recheck_clears_a_file_that_crashed_beside_others(tmp_path: Path, files_per_task: int) -> None:
    paths = _files(tmp_path, [f"ok{i}.SC2Replay" for i in range(5)] + ["flaky.SC2Replay"])
    outcomes = [_outcome(result) for result in _run(paths, files_per_task=files_per_task)]
    assert sorted(outcomes) == sorted((path, "ok", None) for path in paths)  # each once, all ok
    assert Path(paths[-1] + CRASHED_SUFFIX).exists()  # it did crash once, in the main pass


def test_a_failed_chunk_is_split_and_later_tasks_hold_one_file(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    # The crash comes first, so the chunk that holds it fails before any other chunk settles.
    paths = _files(tmp_path, ["flaky.SC2Replay"] + [f"ok{i:02}pidnote.SC2Replay" for i in range(11)])
    with caplog.at_level(logging.INFO, logger="replay_cli.runner"):
        outcomes = [_outcome(result) for result in _run(paths, workers=1, files_per_task=4)]
    assert sorted(outcomes) == sorted((path, "ok", None) for path in paths)
    assert "a chunk of 4 files failed (worker_crash); parsing one file per task from now on" in caplog.text


def test_a_chunk_slower_than_the_timeout_is_re_run_file_by_file(tmp_path: Path) -> None:
    # Each file takes SLEEP_S, well inside the timeout; the four together do not.
    paths = _files(tmp_path, [f"sleep{i}.SC2Replay" for i in range(4)])
    timeout = 3.5 * SLEEP_S
    monitor = PoolMonitor()
    results = _run(paths, workers=1, files_per_task=4, timeout=timeout, monitor=monitor)
    assert sorted(_outcome(result) for result in results) == sorted((path, "ok", None) for path in paths)
    assert monitor.numbers().workers_replaced["timeout"] == 1  # the chunk, not any file


def test_a_chunk_stops_after_a_file_that_hit_the_memory_cap(tmp_path: Path) -> None:
    names = ["a-pidnote", "b-capped", "c-pidnote", "d-pidnote"]
    paths = _files(tmp_path, [f"{name}.SC2Replay" for name in names])
    monitor = PoolMonitor()
    results = _run(paths, workers=1, files_per_task=4, max_memory=256 * MiB, monitor=monitor)
    assert sorted(_outcome(result) for result in results) == sorted(
        [(paths[0], "ok", None), (paths[1], "failed", "memory"), (paths[2], "ok", None), (paths[3], "ok", None)])
    pids = {name: Path(path + PID_SUFFIX).read_text() for name, path in zip(names, paths) if "pidnote" in name}
    # The two files after the bomb went to a worker that replaced the one the bomb ran in. Under
    # RLIMIT_AS the chunk returns the bomb's memory failure and stops; where the memory watchdog
    # caps workers instead (Windows, macOS), it kills the worker mid-chunk, and the chunk is split.
    assert pids["c-pidnote"] == pids["d-pidnote"] != pids["a-pidnote"]
    assert monitor.numbers().workers_replaced["memory"] == (1 if memory_cap_mode() == CAP_RLIMIT else 2)


def test_chunked_workers_recycle_after_max_tasks_files(tmp_path: Path) -> None:
    paths = _files(tmp_path, [f"ok{i:02}pidnote.SC2Replay" for i in range(16)])
    results = _run(paths, workers=1, files_per_task=4, max_tasks_per_worker=8)
    assert sorted(_outcome(result) for result in results) == sorted((path, "ok", None) for path in paths)
    pids = [Path(path + PID_SUFFIX).read_text() for path in paths]
    assert len(set(pids)) == 2 and len(set(pids[:8])) == 1 and len(set(pids[8:])) == 1


def test_stall_watchdog_rebuilds_then_gives_up_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # Stall after 1 s instead of timeout + 30 s; the 5 s pebble timeout never fires first.
    monkeypatch.setattr(runner, "STALL_GRACE_S", -4.0)
    paths = _files(tmp_path, ["ok1.SC2Replay", "hang.SC2Replay", "ok2.SC2Replay"])
    with caplog.at_level(logging.WARNING, logger="replay_cli.runner"):
        outcomes = {_outcome(result) for result in _run(paths, timeout=5.0)}
    assert outcomes == {(paths[0], "ok", None), (paths[1], "failed", "pool_broken"), (paths[2], "ok", None)}
    assert caplog.text.count("rebuilding") == 2
    assert _wait_gone(_workers()) == []


def test_failing_initializer_raises_pool_unrecoverable(tmp_path: Path) -> None:
    # A 1-byte address-space cap: every worker dies in its initializer.
    paths = _files(tmp_path, [f"ok{i:02}.SC2Replay" for i in range(20)])
    results: list[Result] = []
    started = time.monotonic()
    with pytest.raises(PoolUnrecoverable, match="3 times in a row"):
        for result in run_parses(paths, depth="stats", workers=2, timeout=5.0, max_memory=1, max_bytes=MiB,
                                 parse_fn=fault_parse, max_in_flight=4):
            if result is not None:
                results.append(result)
    assert time.monotonic() - started < 20
    # How many files were in flight at each breakage depends on when the broken pool refused work,
    # so the count varies from run to run: at most one window, each file once, all pool_broken.
    assert len(results) <= 4 and len({result["source"] for result in results}) == len(results)
    assert all(_outcome(result)[1:] == ("failed", "pool_broken") for result in results)
    assert _wait_gone(_workers()) == []




def _comparable(result: Result) -> dict[str, Any]:
    """Drop the fields that differ from run to run."""
    return {key: value for key, value in result.items() if key not in TIMING_FIELDS}


def test_real_replays_pool_matches_inline(replay_folder: Path) -> None:
    # `replay_folder` (conftest.py) is the real-replay corpus when present, else samples/.
    found = sorted(str(path) for path in replay_folder.rglob("*.SC2Replay"))
    paths = found[:: max(1, len(found) // REAL_REPLAYS)][:REAL_REPLAYS]  # spread over the corpus's sources
    options: dict[str, Any] = {"depth": "stats", "timeout": 60.0, "max_memory": 2048 * MiB, "max_bytes": 50 * MiB}
    pooled = [r for r in run_parses(paths, workers=2, **options) if r is not None]
    inline = [r for r in run_parses(paths, workers=0, **options) if r is not None]
    assert sorted(str(r["source"]) for r in pooled) == sorted(paths)

    def key(result: Result) -> str:
        return str(result["source"])

    assert [_comparable(r) for r in sorted(pooled, key=key)] == [_comparable(r) for r in sorted(inline, key=key)]


def test_nothing_to_parse_starts_no_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unchanged re-run skips every file: it must not pay for starting workers."""
    started: list[int] = []
    real_pool = runner.ProcessPool

    def counting_pool(*args: Any, **kwargs: Any) -> Any:
        started.append(1)
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(runner, "ProcessPool", counting_pool)
    results = list(run_parses(iter([]), depth="summary", workers=2, timeout=5, max_memory=None,
                              max_bytes=1024, parse_fn=fault_parse))
    assert results == [] and started == []
