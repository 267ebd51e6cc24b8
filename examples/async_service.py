"""An asyncio service that parses uploads without ever blocking its event loop.

A heartbeat task ticks every 10 ms while replays parse in worker processes; at the end the
script prints the longest gap between ticks next to the parse times. Run it with replays:

    python examples/async_service.py ~/Replays/*.SC2Replay
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from replay_cli.service import ReplayParser

TICK_S = 0.01


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
    print(f"longest heartbeat gap: {max(gaps) * 1000:.0f} ms (ticks every {TICK_S * 1000:.0f} ms)")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python examples/async_service.py REPLAY...")
    asyncio.run(main(sys.argv[1:]))
