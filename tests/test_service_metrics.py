"""ReplayParser.metrics() under load: 200 concurrent uploads on a real pool.

What a metrics() call costs the event loop is measured by benchmarks/monitoring.py, not asserted here:
any bound on event-loop delay is a timing threshold that a loaded machine breaks.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter

import pytest

from replay_cli.service import ReplayParser
from replay_cli.synth import describe_game, write_replay

UPLOADS = 200
SEED = 23
METRICS_EVERY_S = 0.1
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def uploads() -> list[bytes]:
    """UPLOADS distinct synthetic replays, with two that cannot parse among them."""
    games = [write_replay(describe_game(SEED, index)) for index in range(UPLOADS - 2)]
    return [*games, b"not a replay", b"\0" * 4096]


async def _sampler(parser: ReplayParser, snapshots: list[dict], stop: asyncio.Event) -> None:
    while not stop.is_set():
        snapshots.append(parser.metrics())
        await asyncio.sleep(METRICS_EVERY_S)


def _load(uploads: list[bytes]) -> tuple[list[dict], list[dict], dict]:
    """Parse every upload at once; return the results, the metrics snapshots and the last snapshot."""

    async def main() -> tuple[list[dict], list[dict], dict]:
        snapshots: list[dict] = []
        stop = asyncio.Event()
        async with ReplayParser(workers=2, depth="summary") as parser:
            sampler = asyncio.create_task(_sampler(parser, snapshots, stop))
            results = await asyncio.gather(*(parser.parse(data, name=f"u{i}.SC2Replay")
                                             for i, data in enumerate(uploads)))
            stop.set()
            await sampler
            return list(results), snapshots, parser.metrics()

    return asyncio.run(main())


def test_metrics_follow_200_concurrent_uploads(uploads: list[bytes]) -> None:
    results, snapshots, last = _load(uploads)

    window = last["window"]
    assert window == 6  # 3 per worker
    queued = [s["queued"] for s in snapshots]
    # The queue rose far above the window (the first snapshot comes after some uploads started).
    assert max(queued) >= UPLOADS // 2, queued
    assert last["queued"] == 0 and last["in_flight"] == 0
    assert all(0 <= s["in_flight"] <= window for s in snapshots), [s["in_flight"] for s in snapshots]
    assert any(s["in_flight"] > 0 for s in snapshots)

    assert last["parsed"] == len(results) == UPLOADS
    failed = Counter(r["error"]["kind"] for r in results if r["status"] == "failed")
    assert last["failures"] == dict(failed) and sum(failed.values()) == 2
    times = sorted(r["parse_seconds"] for r in results)
    assert last["parse_seconds_window"] == UPLOADS
    assert last["parse_seconds_p50"] == times[math.ceil(UPLOADS * 0.5) - 1]
    assert last["parse_seconds_p95"] == times[math.ceil(UPLOADS * 0.95) - 1]

    assert last["workers_alive"] == 2
    assert set(last["worker_rss_bytes"]) and all(rss > 10 * MiB for rss in last["worker_rss_bytes"].values())
    assert last["workers_started"] >= 2
    assert last["workers_replaced"] == {"crash": 0, "memory": 0, "recycle": 0, "timeout": 0}


def _example_module():
    import importlib.util

    from tests.conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("async_service_example", REPO_ROOT / "examples" / "async_service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_serves_prometheus_text_that_parses(uploads: list[bytes]) -> None:
    pytest.importorskip("prometheus_client", reason="the `metrics` extra (in `test`) is not installed")
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    example = _example_module()

    async def main() -> tuple[str, str, dict]:
        async with ReplayParser(workers=2, depth="summary") as parser:
            server = await example.serve_metrics(parser, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            await asyncio.gather(*(parser.parse(data, name=f"u{i}") for i, data in enumerate(uploads[-12:])))

            def fetch(path: str) -> tuple[int, str, str]:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
                        return response.status, response.headers["Content-Type"], response.read().decode()
                except urllib.error.HTTPError as error:
                    return error.code, "", ""

            status, content_type, text = await asyncio.to_thread(fetch, "/metrics")
            missing, _type, _text = await asyncio.to_thread(fetch, "/elsewhere")
            snapshot = parser.metrics()
            server.close()
            await server.wait_closed()
            assert (status, missing) == (200, 404)
            return content_type, text, snapshot

    content_type, text, snapshot = asyncio.run(main())
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == {
        "replaycli_queued", "replaycli_in_flight", "replaycli_window", "replaycli_workers_alive",
        "replaycli_workers_started", "replaycli_workers_replaced", "replaycli_worker_rss_bytes",
        "replaycli_parse_seconds_recent", "replaycli_parsed", "replaycli_failures",
    }
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert value[("replaycli_parsed_total", ())] == snapshot["parsed"] == 12
    assert value[("replaycli_failures_total", (("kind", "parse_error"),))] == 2  # the two unparsable uploads
    assert value[("replaycli_window", ())] == 6 and value[("replaycli_queued", ())] == 0
    assert value[("replaycli_workers_replaced_total", (("reason", "memory"),))] == 0
    rss = families["replaycli_worker_rss_bytes"].samples
    assert len(rss) == 2 and all(s.value > 10 * MiB for s in rss)
    assert {s.labels["quantile"] for s in families["replaycli_parse_seconds_recent"].samples} == {"0.5", "0.95"}


def test_the_service_run_records_its_pool_in_runs(uploads: list[bytes], tmp_path) -> None:
    import sqlite3

    db = tmp_path / "service.db"

    async def main() -> dict:
        async with ReplayParser(workers=2, depth="summary", db_path=str(db)) as parser:
            for index, data in enumerate(uploads[:4]):
                await parser.store(await parser.parse(data, name=f"u{index}"), data)
            return parser.metrics()

    last = asyncio.run(main())
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT command, workers_started, replaced_crash, replaced_memory, replaced_recycle, "
                           "replaced_timeout, max_in_flight, max_worker_rss_bytes FROM runs").fetchone()
    assert row[:6] == ("service", last["workers_started"], 0, 0, 0, 0)
    assert row[6] == 1  # one upload at a time
    assert row[7] > 10 * MiB
