"""Where received events wait for delivery: a Redis Stream shared by every replica, or,
without Redis, a bounded buffer in this process.

Both give each event a stream id ("<ms>-<seq>", Redis's own format, increasing), which is
also its SSE `id:`; a subscriber that reconnects with `Last-Event-ID`, to this replica or
another, is served every event after it that is still kept. `append` drops an event whose
EventBridge `id` was stored within `dedupe_seconds` (EventBridge delivers at least once),
in one atomic step with the append (a Lua script): the id is never marked seen unless the
event is in the stream, so a failure between the two cannot lose it.

`StoreDown` means the event is not stored: the SQS poller then keeps the message in the
queue and stops receiving until the store answers again.
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.events.envelope import IvsEvent, NotAnIvsEvent, parse_event
from proxy.gateway.shared_state import SharedState, SharedStateDown

STREAM_ID = re.compile(r"\d{1,20}-\d{1,20}")


class StoreDown(Exception):
    """The store cannot take or give events now."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str  # stream id
    event: IvsEvent


def id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


class EventStore(Protocol):
    async def append(self, event: IvsEvent) -> str | None:
        """The new stream id; None when the event is a repeat. StoreDown if not stored."""
        ...

    async def after(self, last_id: str, count: int) -> list[StoredEvent]:
        """Up to `count` events with ids above `last_id`, oldest first."""
        ...

    async def follow(self, last_id: str, block_seconds: float) -> list[StoredEvent]:
        """Events above `last_id`, waiting up to `block_seconds` for one to arrive."""
        ...

    async def bounds(self) -> tuple[str, str] | None:
        """(oldest, newest) id kept; None when empty."""
        ...


class MemoryEventStore:
    """One process's buffer: the newest `max_length` events. A restart loses them, and with
    them the resume of subscribers and the memory of which ids were seen (docs/events.md)."""

    def __init__(self, max_length: int, dedupe_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self._entries: collections.deque[StoredEvent] = collections.deque(maxlen=max_length)
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()  # event id -> expiry
        self._max_seen = max(max_length * 4, 1024)
        self._dedupe_seconds = dedupe_seconds
        self._clock = clock
        self._last = (0, 0)
        self._arrived = asyncio.Condition()

    async def append(self, event: IvsEvent) -> str | None:
        now = self._clock()
        while self._seen and (next(iter(self._seen.values())) <= now or len(self._seen) >= self._max_seen):
            self._seen.popitem(last=False)
        if event.id in self._seen:
            return None
        self._seen[event.id] = now + self._dedupe_seconds
        ms = int(now * 1000)
        self._last = (ms, 0) if ms > self._last[0] else (self._last[0], self._last[1] + 1)
        stored = StoredEvent(f"{self._last[0]}-{self._last[1]}", event)
        self._entries.append(stored)
        async with self._arrived:
            self._arrived.notify_all()
        return stored.id

    async def after(self, last_id: str, count: int) -> list[StoredEvent]:
        floor = id_key(last_id)
        found = []
        for entry in self._entries:  # at most max_length; resumes are rare next to deliveries
            if id_key(entry.id) > floor:
                found.append(entry)
                if len(found) >= count:
                    break
        return found

    async def follow(self, last_id: str, block_seconds: float) -> list[StoredEvent]:
        floor = id_key(last_id)
        async with self._arrived:
            if not self._entries or id_key(self._entries[-1].id) <= floor:
                try:
                    await asyncio.wait_for(self._arrived.wait(), block_seconds)
                except TimeoutError:
                    return []
        return await self.after(last_id, len(self._entries))

    async def bounds(self) -> tuple[str, str] | None:
        return (self._entries[0].id, self._entries[-1].id) if self._entries else None


#: Seen-check and append in one step: the id is marked only if the event is stored.
_APPEND = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'event', ARGV[3])
end
return false
"""

class RedisEventStore:
    """A Redis Stream (`<key_prefix>events`), trimmed to about `max_length` (MAXLEN ~), and
    one `<key_prefix>events:seen:<event id>` key per event for `dedupe_seconds`.

    Appends and resume reads go through the gateway's SharedState (its timeout and breaker);
    `follow` blocks (XREAD BLOCK), so it uses a client of its own whose socket timeout
    outlasts the block (`reader`)."""

    def __init__(self, shared: SharedState, reader: Any, max_length: int, dedupe_seconds: int) -> None:
        self._shared = shared
        self._reader = reader
        self._stream = f"{shared.prefix}events"
        self._seen = f"{shared.prefix}events:seen:"
        self._max_length = max_length
        self._dedupe_seconds = dedupe_seconds
        self._append = shared.client.register_script(_APPEND)
        self._read_errors: tuple[type[BaseException], ...] = (*shared.errors, ValueError)

    async def _call(self, operation: str, work: Callable[[Any], Any]) -> Any:
        try:
            return await self._shared.call(operation, work)
        except SharedStateDown:
            raise StoreDown from None

    async def append(self, event: IvsEvent) -> str | None:
        keys = [self._stream, self._seen + event.id]
        args = [self._max_length, self._dedupe_seconds, event.body]
        added = await self._call("events_append", lambda client: self._append(keys=keys, args=args, client=client))
        return _text(added) if added else None

    async def after(self, last_id: str, count: int) -> list[StoredEvent]:
        found = await self._call("events_range",
                                 lambda client: client.xrange(self._stream, f"({last_id}", "+", count=count))
        return _entries(found)

    async def follow(self, last_id: str, block_seconds: float) -> list[StoredEvent]:
        try:
            found = await self._reader.xread({self._stream: last_id}, block=max(1, int(block_seconds * 1000)),
                                             count=1000)
        except self._read_errors as exc:  # its own connection: down, try later
            raise StoreDown(type(exc).__name__) from None
        return [entry for _, items in found or () for entry in _entries(items)]

    async def bounds(self) -> tuple[str, str] | None:
        async def both(client: Any) -> tuple[Any, Any]:
            return (await client.xrange(self._stream, "-", "+", count=1),
                    await client.xrevrange(self._stream, "+", "-", count=1))

        oldest, newest = await self._call("events_bounds", both)
        if not oldest or not newest:
            return None
        return _text(oldest[0][0]), _text(newest[0][0])

    async def close(self) -> None:
        await self._reader.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(items: Any) -> list[StoredEvent]:
    entries = []
    for stream_id, fields in items or ():
        body = fields.get(b"event") if b"event" in fields else fields.get("event")
        try:
            entries.append(StoredEvent(_text(stream_id), parse_event(_text(body), compact=True)))
        except NotAnIvsEvent:
            continue  # only the proxy writes the stream; skip what another writer put there
    return entries
