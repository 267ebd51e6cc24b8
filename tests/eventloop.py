"""An event-loop heartbeat for the service tests: how late each tick came is how long the loop was blocked."""

from __future__ import annotations

import asyncio
import time


async def heartbeat(gaps: list[float], stop: asyncio.Event, tick_s: float) -> None:
    """Tick every tick_s until stopped, appending each measured interval to gaps."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(tick_s)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
