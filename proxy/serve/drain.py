"""Graceful drain: the requests in flight, the stop requests, and the cut-off.

The sequence (`listener.drain_and_close` runs it; docs/resilience.md has the timings):

1. A stop request (SIGTERM, SIGINT, `POST /quitquitquit`): `/readyz` answers 503 at
   once, the data listener keeps accepting for `drain_delay_seconds` so that load
   balancers and endpoint controllers catch up, and every answer carries
   `Connection: close`.
2. The listener stops accepting; requests in flight get up to `drain_timeout_seconds`.
3. Cut-off: each request still running is cancelled and answered with a proxy 503
   (`ShuttingDown`) instead of a dropped connection.
4. Connections, the upstream pool and the background tasks close; the process exits 0.

A second stop request skips whatever waiting is left and goes straight to the cut-off.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class Drain:
    def __init__(self) -> None:
        self._inflight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stop_requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self.skip_delay = False
        self.stop_reason = ""
        #: Set at the cut-off: a cancelled request is ours to answer with a 503.
        self.cut_off = False

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def request_stop(self, reason: str, *, skip_delay: bool = False) -> None:
        """The first request starts the drain; any later one hurries it."""
        if self.stop_requested.is_set():
            self.hurry.set()
            return
        self.stop_reason = reason
        self.skip_delay = skip_delay
        self.stop_requested.set()

    def enter(self, task: asyncio.Task[Any]) -> None:
        self._inflight.add(task)
        self._idle.clear()

    def leave(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not self._inflight:
            self._idle.set()

    async def wait_idle(self, timeout: float, *, interruptible: bool = True) -> bool:
        """True once nothing is in flight; False after `timeout` (or, if `interruptible`,
        when a second stop request hurries the drain)."""
        if self._idle.is_set():
            return True
        await first_of((self._idle, self.hurry) if interruptible else (self._idle,), timeout)
        return self._idle.is_set()

    def cut(self) -> int:
        """Cancel every request still in flight; returns how many there were."""
        self.cut_off = True
        for task in self._inflight:
            task.cancel()
        return len(self._inflight)


async def first_of(events: tuple[asyncio.Event, ...], timeout: float) -> None:
    """Wait until one of `events` is set or `timeout` passes; leaves no task behind."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        for waiter in waiters:
            with contextlib.suppress(asyncio.CancelledError):
                await waiter
