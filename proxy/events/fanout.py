"""One process's subscribers, and which of them gets each event.

One reader per process follows the store and hands each event to `Fanout.publish`, which
never waits: an event a subscriber may see goes into that subscriber's bounded buffer, and
a subscriber whose buffer is full is marked behind and woken to be disconnected (it is told
its last delivered id, and resumes from there). So a slow subscriber never slows the
others, the reader, or the API path.

Who sees what: a subscriber's own filters first (event types, ARN patterns), then the
caller's policy for `ivs-proxy:SubscribeEvents`, evaluated on the ARNs the event names
(`resources`) in the event's region. An event is visible when the policy allows at least
one of them and explicitly denies none (a Deny on any ARN the event names withholds it);
an event naming no ARN is visible only through `Resource: "*"`, as for API calls.
"""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from proxy.events.envelope import IvsEvent
from proxy.events.store import EventStore, StoredEvent, StoreDown, id_key
from proxy.policy import Decision, wildcard

#: Events handed to the subscribers at a time (well under events.subscriber_buffer's default).
PUBLISH_SLICE = 32

#: The policy's decision for (resources, region); None: no policy applies (everything visible).
Decide = Callable[[tuple[str, ...], str], Decision | None]


def visible(decision: Decision | None) -> bool:
    if decision is None or decision.allowed:
        return True
    explicit_deny = any(not v.allowed and v.statement for v in decision.verdicts)
    return not explicit_deny and any(v.allowed for v in decision.verdicts)


@dataclass(frozen=True)
class Subscription:
    """What a subscriber asked for: no types / no resources means every one."""

    types: frozenset[str] = frozenset()
    resources: tuple[str, ...] = ()  # ARN patterns, `*` and `?` as in policies
    _patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_patterns", tuple(wildcard(r, ignore_case=False) for r in self.resources))

    def wants(self, event: IvsEvent) -> bool:
        if self.types and event.detail_type not in self.types:
            return False
        return not self._patterns or any(p.fullmatch(r) for p in self._patterns for r in event.resources)


class Subscriber:
    """One SSE connection's buffer. `wake` is set whenever there is something to do: events
    to send, the subscriber fell behind, or the process is stopping."""

    _CACHE_SIZE = 1024

    def __init__(self, caller: str, subscription: Subscription, decide: Decide, buffer: int) -> None:
        self.caller = caller
        self.subscription = subscription
        self._decide = decide
        self._buffer = buffer
        self.pending: collections.deque[StoredEvent] = collections.deque()
        self.wake = asyncio.Event()
        self.behind = False
        self.closing = False
        self._visible: dict[tuple[tuple[str, ...], str], bool] = {}

    def may_see(self, event: IvsEvent) -> bool:
        key = (event.resources, event.region)
        seen = self._visible.get(key)
        if seen is None:
            if len(self._visible) >= self._CACHE_SIZE:
                self._visible.clear()
            seen = self._visible[key] = visible(self._decide(event.resources, event.region))
        return seen

    def offer(self, entry: StoredEvent) -> bool:
        """Queue `entry`; False (and marked behind) when the buffer is full."""
        if len(self.pending) >= self._buffer:
            self.behind = True
            self.wake.set()
            return False
        self.pending.append(entry)
        self.wake.set()
        return True

    def take(self, after: str | None) -> list[StoredEvent]:
        """Everything queued above `after` (entries a resume already sent are skipped)."""
        self.wake.clear()
        entries = list(self.pending)
        self.pending.clear()
        if after is None:
            return entries
        floor = id_key(after)
        return [e for e in entries if id_key(e.id) > floor]


@dataclass
class FanoutCounts:
    """What `publish` did, for the metrics: callbacks so this module needs no registry."""

    filtered: Callable[[str], None] = lambda reason: None
    fell_behind: Callable[[], None] = lambda: None


class Fanout:
    def __init__(self, counts: FanoutCounts | None = None) -> None:
        self._subscribers: set[Subscriber] = set()
        self._counts = counts or FanoutCounts()

    def __len__(self) -> int:
        return len(self._subscribers)

    def join(self, subscriber: Subscriber) -> None:
        self._subscribers.add(subscriber)

    def leave(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)

    def publish(self, entries: Iterable[StoredEvent]) -> None:
        for entry in entries:
            for subscriber in tuple(self._subscribers):
                if subscriber.behind or subscriber.closing:
                    continue
                if not subscriber.subscription.wants(entry.event):
                    self._counts.filtered("subscription")
                elif not subscriber.may_see(entry.event):
                    self._counts.filtered("policy")
                elif not subscriber.offer(entry):
                    self._counts.fell_behind()

    def close_all(self) -> None:
        """The process is stopping: every stream ends (clients reconnect, to another replica)."""
        for subscriber in self._subscribers:
            subscriber.closing = True
            subscriber.wake.set()


async def follow(store: EventStore, fanout: Fanout, *, block_seconds: float = 5.0,
                 on_down: Callable[[bool], None] = lambda down: None,
                 retry_seconds: float = 1.0) -> None:
    """This process's one reader of the store: from the newest event at start, every event
    to `fanout`, in stream order, until cancelled. While the store is down it waits and
    tries again from where it was (subscribers stay connected, on heartbeats)."""
    last: str | None = None
    down = False
    while True:
        try:
            if last is None:
                bounds = await store.bounds()
                last = bounds[1] if bounds else "0-0"
            entries = await store.follow(last, block_seconds)
        except StoreDown:
            if not down:
                down = True
                on_down(True)
            await asyncio.sleep(retry_seconds)
            continue
        if down:
            down = False
            on_down(False)
        if entries:
            last = entries[-1].id
            # In slices, yielding between them: subscribers that keep up drain their buffers
            # as a burst goes, so only one that does not read falls behind.
            for start in range(0, len(entries), PUBLISH_SLICE):
                fanout.publish(entries[start:start + PUBLISH_SLICE])
                await asyncio.sleep(0)
