"""Overload protection: a cap on bodies being received, and a cap on requests in flight
with a short bounded queue.

A request takes its in-flight slot only once its whole body is in: a caller that is slow
to send (by accident or on purpose) must not hold what ordinary callers need. A body that
is still arriving holds a slot of `BodyReads` instead, a separate and larger budget that
bounds the memory of bodies in transit (`max_body_reads * limits.max_body_bytes`); when
it is full the request is refused at once (`BodyReadsFull`). Bodies that are whole within
half a second of their headers, as ordinary calls are, take no body-read slot at all. How slow a body
may be is `read_body`'s rule (proxy/serve/server.py).

Past `max_inflight` a request waits in a FIFO queue of at most `max_queued` for at most
`queue_timeout` seconds. When the queue is full it is refused at once, and when its wait
runs out it is refused then, with a 503 and `Retry-After` (`Overloaded`). Refusing early
is the point: a request that waits longer than its caller would has already failed.
Memory in the worst case is about `(max_inflight + max_queued + max_body_reads) * limits.max_body_bytes`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math

from proxy.errors import BodyReadsFull, CallerShareFull, Overloaded

RETRY_AFTER_SECONDS = 1


class Admission:
    """Counts slots; `acquire` waits in line or raises Overloaded, `release` hands a slot on."""

    def __init__(self, max_inflight: int = 100, max_queued: int = 50, queue_timeout: float = 1.0) -> None:
        self.max_inflight = max_inflight
        self.max_queued = max_queued
        self._queue_timeout = queue_timeout
        self._free = max_inflight
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def inflight(self) -> int:
        return self.max_inflight - self._free

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        if len(self._waiters) >= self.max_queued:
            raise self._refusal("and the queue is full")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._queue_timeout):
                await waiter
        except BaseException as exc:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled():
                self.release()  # a slot was handed over just as the wait ended: pass it on
            if isinstance(exc, TimeoutError):
                raise self._refusal(f"and it waited {self._queue_timeout:g} s for a slot") from None
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self._free += 1

    def _refusal(self, detail: str) -> Overloaded:
        return Overloaded(
            f"ivs-proxy is at its limit of {self.max_inflight} requests in flight {detail}; retry shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


class BodyReads:
    """Counts bodies being received; `acquire` refuses at once when all slots are taken.
    No queue: a body waiting to be read is a body already arriving, and already in memory."""

    def __init__(self, max_reads: int = 256) -> None:
        self.max_reads = max_reads
        self.active = 0

    def acquire(self) -> None:
        if self.active >= self.max_reads:
            raise BodyReadsFull(
                f"ivs-proxy is already receiving {self.max_reads} request bodies that did not arrive with "
                "their headers; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.active += 1

    def release(self) -> None:
        self.active -= 1


class CallerShares:
    """At most `share` of a budget's `total` slots per holder (a caller's name, or a client
    address when the caller is not known): in gateway mode one team's bad client cannot take
    the slots another team needs. A share of 1 caps nothing."""

    def __init__(self, total: int, share: float, budget: str) -> None:
        # A share of 1 caps nothing, so that the budget's own refusal (and reason) comes first.
        self.cap = max(1, math.floor(total * share)) if share < 1 else None
        self._budget = budget
        self._held: collections.Counter[str] = collections.Counter()

    def held(self, holder: str) -> int:
        return self._held[holder]

    def take(self, holder: str) -> None:
        if self.cap is not None and self._held[holder] >= self.cap:
            raise CallerShareFull(
                f"this caller already holds {self.cap} of ivs-proxy's {self._budget}, its share; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self._held[holder] += 1

    def give(self, holder: str) -> None:
        self._held[holder] -= 1
        if self._held[holder] <= 0:
            del self._held[holder]
