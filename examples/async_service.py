"""An asyncio service that parses uploads without ever blocking its event loop, and can be scraped.

A heartbeat task ticks every 10 ms while replays parse in worker processes; at the end the
script prints the longest gap between ticks next to the parse times. While it runs, the
parser's metrics() are served as Prometheus text on http://127.0.0.1:9464/metrics, produced by
prometheus_client (`pip install 'replaycli[metrics]'`) and answered from the event loop itself,
so a scrape reads the same state the uploads change, with no thread in between:

    python examples/async_service.py ~/Replays/*.SC2Replay
    curl -s http://127.0.0.1:9464/metrics | grep replaycli_    # from another terminal
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from replay_cli.service import ReplayParser

TICK_S = 0.01
METRICS_HOST, METRICS_PORT = "127.0.0.1", 9464  # 9464: the port OpenTelemetry's Prometheus exporter uses too


class ParserCollector:
    """Turn one ReplayParser.metrics() snapshot into Prometheus metric families at each scrape."""

    def __init__(self, parser: ReplayParser) -> None:
        self.parser = parser

    def collect(self) -> Iterator[Metric]:
        m = self.parser.metrics()
        yield GaugeMetricFamily("replaycli_queued", "Uploads waiting for the window or for a worker.", m["queued"])
        yield GaugeMetricFamily("replaycli_in_flight", "Uploads in the worker pool.", m["in_flight"])
        yield GaugeMetricFamily("replaycli_window", "Most uploads the pool is given at once.", m["window"])
        yield GaugeMetricFamily("replaycli_workers_alive", "Live worker processes.", m["workers_alive"])
        yield CounterMetricFamily("replaycli_workers_started", "Worker processes seen.", m["workers_started"])
        replaced = CounterMetricFamily("replaycli_workers_replaced", "Workers ended by a task, by reason.",
                                       labels=["reason"])
        for reason, count in sorted(m["workers_replaced"].items()):
            replaced.add_metric([reason], count)
        yield replaced
        rss = GaugeMetricFamily("replaycli_worker_rss_bytes", "Resident memory of each worker now.", labels=["pid"])
        for pid, value in sorted(m["worker_rss_bytes"].items()):
            rss.add_metric([str(pid)], value)
        yield rss
        recent = GaugeMetricFamily("replaycli_parse_seconds_recent", "Parse time over the latest uploads.",
                                   labels=["quantile"])
        for quantile, key in (("0.5", "parse_seconds_p50"), ("0.95", "parse_seconds_p95")):
            if m[key] is not None:
                recent.add_metric([quantile], m[key])
        yield recent
        yield CounterMetricFamily("replaycli_parsed", "Uploads answered.", m["parsed"])
        failures = CounterMetricFamily("replaycli_failures", "Failed uploads by error kind.", labels=["kind"])
        for kind, count in sorted(m["failures"].items()):
            failures.add_metric([kind], count)
        yield failures


async def serve_metrics(parser: ReplayParser, host: str = METRICS_HOST, port: int = METRICS_PORT) -> asyncio.Server:
    """Answer GET /metrics with the parser's metrics in Prometheus text; port 0 picks a free one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ParserCollector(parser))  # a collector needs only collect()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readline()).split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):  # skip the headers
            pass
        found = len(request) > 1 and request[1].split(b"?")[0] == b"/metrics"
        body = generate_latest(registry) if found else b"not found\n"
        head = (f"HTTP/1.1 {'200 OK' if found else '404 Not Found'}\r\nContent-Type: {CONTENT_TYPE_LATEST}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(head.encode("ascii") + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, host, port)


async def heartbeat(gaps: list[float], stop: asyncio.Event) -> None:
    """Tick until stopped, recording how late each tick was."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(TICK_S)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def main(paths: list[str]) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()
    async with ReplayParser(depth="full", db_path="service.db", archive_dir="archive") as parser:
        server = await serve_metrics(parser)
        print(f"metrics: http://{METRICS_HOST}:{METRICS_PORT}/metrics", file=sys.stderr)
        ticker = asyncio.create_task(heartbeat(gaps, stop))

        async def handle(path: str) -> None:
            data = Path(path).read_bytes()  # an upload, in a real bot
            result = await parser.parse(data, name=Path(path).name)
            status = await parser.store(result, data)
            players = ", ".join(p["name"] for p in result["players"] if not p["is_observer"])
            print(f"{status:9} {result['parse_seconds']:6.2f} s  {Path(path).name}: {players}")

        await asyncio.gather(*(handle(path) for path in paths))
        stop.set()
        await ticker
        server.close()
        await server.wait_closed()
    print(f"longest heartbeat gap: {max(gaps) * 1000:.0f} ms (ticks every {TICK_S * 1000:.0f} ms)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python examples/async_service.py REPLAY...")
    asyncio.run(main(sys.argv[1:]))
