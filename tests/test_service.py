"""The asyncio API: real worker processes, real SQLite, an event loop that keeps ticking."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from replay_cli.archive import archive_path
from replay_cli.parse import parse_replay
from replay_cli.service import ReplayParser, default_workers
from tests.eventloop import heartbeat
from tests.faults import fault_parse_bytes
from tests.processes import descendants, multiprocessing_helpers

TIMING_KEYS = ("parse_seconds", "cpu_seconds", "peak_rss_bytes")  # measured, so never equal
HEARTBEAT_S = 0.01
SERVICE_SEED = 47  # the unit-heavy games of the event-loop test
LARGE = ["tests/replays/1v1.SC2Replay", "tests/replays/2v2.SC2Replay", "spawningtool/replays/patch_5_0_16.SC2Replay",
         "tests/replays/1v1_obs.SC2Replay"]


def _without_timings(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def large_uploads(corpus_present: bool, game, request: pytest.FixtureRequest) -> list[bytes]:
    """LARGE from the corpus, else the biggest synthetic games: each parse must outlast several heartbeats."""
    if corpus_present:
        return [game(suffix).read_bytes() for suffix in LARGE]
    # Games with thousands of units: seconds of work each at full depth, so a blocked loop would
    # show a gap far longer than the heartbeat whatever else runs on the machine.
    return [_unit_heavy_game(index) for index in range(len(LARGE))]


def _unit_heavy_game(index: int) -> bytes:
    from replay_cli.synth import describe_game, write_replay
    from replay_cli.synth.game import with_units

    return write_replay(with_units(describe_game(SERVICE_SEED, index), 4000))


def test_parse_returns_what_the_cli_stores(game):
    data = game(LARGE[0]).read_bytes()

    async def main() -> dict:
        async with ReplayParser(workers=1, depth="summary") as parser:
            return await parser.parse(data, name="upload.SC2Replay")

    result = asyncio.run(main())
    assert _without_timings(result) == _without_timings(parse_replay(data, "summary", source="upload.SC2Replay"))


def test_bad_upload_is_a_classified_failure():
    async def main() -> list[dict]:
        async with ReplayParser(workers=1, max_bytes=1024) as parser:
            return [await parser.parse(b"not a replay"), await parser.parse(b"\0" * 2048)]

    garbage, too_big = asyncio.run(main())
    assert (garbage["status"], garbage["error"]["kind"]) == ("failed", "parse_error")
    assert too_big["error"]["kind"] == "too_large"


def test_a_dying_worker_fails_only_its_upload_and_is_replaced(game):
    data = game(LARGE[0]).read_bytes()

    async def main() -> tuple[dict, dict, dict]:
        async with ReplayParser(workers=2, depth="summary", parse_fn=fault_parse_bytes) as parser:
            crashed, neighbour = await asyncio.gather(parser.parse(data, name="selfkill.SC2Replay"),
                                                      parser.parse(data, name="neighbour.SC2Replay"))
            after = await parser.parse(data, name="after.SC2Replay")
            return crashed, neighbour, after

    crashed, neighbour, after = asyncio.run(main())
    assert (crashed["error"]["kind"], crashed["error"]["message"]) == ("worker_crash", "worker killed by SIGKILL")
    assert neighbour["status"] == "ok" and after["status"] == "ok"


def test_a_hanging_upload_times_out_alone(game):
    data = game(LARGE[0]).read_bytes()

    async def main() -> tuple[dict, dict]:
        async with ReplayParser(workers=2, depth="summary", timeout=2, parse_fn=fault_parse_bytes) as parser:
            return await asyncio.gather(parser.parse(data, name="hang.SC2Replay"),
                                        parser.parse(data, name="fine.SC2Replay"))

    hung, fine = asyncio.run(main())
    assert hung["error"]["kind"] == "timeout" and fine["status"] == "ok"


def test_event_loop_keeps_ticking_while_large_replays_parse(large_uploads: list[bytes]):
    uploads = large_uploads

    async def main() -> tuple[float, float]:
        gaps: list[float] = []
        stop = asyncio.Event()
        async with ReplayParser(workers=2, depth="full") as parser:
            ticker = asyncio.create_task(heartbeat(gaps, stop, HEARTBEAT_S))
            results = await asyncio.gather(*(parser.parse(data) for data in uploads))
            stop.set()
            await ticker
        assert all(r["status"] == "ok" for r in results)
        return max(gaps), min(r["parse_seconds"] for r in results)

    max_gap, shortest_parse = asyncio.run(main())
    # Measured against the parses themselves: a loop blocked by one parse would show a gap
    # at least as long as that parse.
    assert max_gap < shortest_parse / 2, (max_gap, shortest_parse)


def test_store_and_archive_share_the_cli_layout(game, tmp_path: Path):
    data = game(LARGE[1]).read_bytes()
    db_path, archive = tmp_path / "svc.db", tmp_path / "archive"

    async def main() -> tuple[str, str, str]:
        async with ReplayParser(workers=1, depth="summary", db_path=str(db_path), archive_dir=str(archive)) as parser:
            result = await parser.parse(data, name="a.SC2Replay")
            first = await parser.store(result, data)
            again = await parser.store(await parser.parse(data, name="b.SC2Replay"), data)
            broken = await parser.store(await parser.parse(b"junk", name="junk"), b"junk")
            return first, again, broken

    assert asyncio.run(main()) == ("ok", "ok", "failed")
    sha = parse_replay(data, "summary")["sha256"]
    stored = archive_path(archive, sha)
    assert stored.read_bytes() == data
    assert [p.name for p in archive.rglob("*") if p.is_file()] == [stored.name]  # never written twice
    conn = sqlite3.connect(db_path)
    assert conn.execute("select count(*) from replays").fetchone()[0] == 1
    assert conn.execute("select count(*) from players p join replays r on r.id = p.replay_id where r.sha256 = ?", (sha,)).fetchone()[0] == 4
    paths = {row[0] for row in conn.execute("select path from files")}
    assert str(stored) in paths
    # the second upload has the same archive path, so it updates the same files row
    assert conn.execute("select command, ok, failed from runs").fetchall() == [("service", 2, 1)]
    assert conn.execute("select count(*) from files").fetchone()[0] == 2


def test_closing_the_parser_leaves_no_worker(game):
    data = game(LARGE[0]).read_bytes()
    before = descendants()

    async def main() -> None:
        async with ReplayParser(workers=2, depth="summary") as parser:
            await parser.parse(data)
            assert descendants() - before, "workers exist while open"

    asyncio.run(main())
    deadline = time.monotonic() + 5
    while (descendants() - before - multiprocessing_helpers()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (descendants() - before - multiprocessing_helpers())



@pytest.mark.parametrize(("env", "expected"), [({"REPLAYCLI_WORKERS": "3"}, 3), ({"WORKER_PROCESSES": "5"}, 5),
                                               ({"REPLAYCLI_WORKERS": "2", "WORKER_PROCESSES": "7"}, 2)])
def test_worker_count_from_the_environment(monkeypatch, env, expected):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert default_workers() == expected
