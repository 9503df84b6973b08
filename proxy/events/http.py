"""GET /_ivs-proxy/events: IVS events as Server-Sent Events (docs/events.md).

    GET /_ivs-proxy/events?type=IVS%20Stream%20State%20Change&resource=arn:aws:ivs:...:channel/abc
    Last-Event-ID: 1764690849000-0        (optional: resume after this event)

Each event is `id: <stream id>` and `data: <the EventBridge event, one line of JSON>`; an
SSE comment (`: heartbeat`) every `heartbeat_seconds` keeps the connection open. Control
messages are named events, so `EventSource.onmessage` sees only IVS events:
- `fell-behind` (`{"last_event_id": ...}`): the subscriber's buffer filled; the stream ends,
  and a reconnect with that id resumes without loss;
- `gap` (`{"oldest": ...}`): the resume point is older than what the store keeps, so events
  in between may be missing.

Authorisation: subscribing is `ivs-proxy:SubscribeEvents` on the `resource` patterns asked
for (audited, 403 otherwise; with none, on no ARN: only a `Resource: "*"` statement allows
it); then each event goes only to subscribers who may see it (proxy/events/fanout.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

from multidict import MultiMapping

from proxy.errors import Overloaded, RequestInvalid
from proxy.events.fanout import Fanout, Subscriber, Subscription
from proxy.events.store import STREAM_ID, EventStore, StoredEvent, StoreDown, id_key
from proxy.gateway.own_access import OwnAccess, own_operation
from proxy.observe.metrics import Metrics
from proxy.policy import Decision, wildcard
from proxy.serve.http_server import HttpRequest, StreamingAnswer
from proxy.serve.own_routes import OwnRequest

OPERATION = own_operation("SubscribeEvents")
RESUME_PAGE = 500
MAX_FILTERS = 50
#: How long the client may take to read: past it, it is not reading, and is cut off.
MIN_WRITE_TIMEOUT_SECONDS = 10.0
WRITE_CHUNK_BYTES = 64 * 1024
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
               "x-ivs-proxy-source": "ivs-proxy"}


def subscription_of(query: MultiMapping[str]) -> Subscription:
    """The `type` and `resource` parameters (each may repeat); RequestInvalid naming the bad one."""
    unknown = sorted(set(query) - {"type", "resource", "last_event_id"})
    if unknown:
        raise RequestInvalid(f"unknown query parameter {unknown[0][:64]!r}; known: type, resource, last_event_id")
    types, resources = query.getall("type", []), query.getall("resource", [])
    if len(types) + len(resources) > MAX_FILTERS:
        raise RequestInvalid(f"at most {MAX_FILTERS} type and resource filters")
    for detail_type in types:
        if not 0 < len(detail_type) <= 128 or not detail_type.isprintable():
            raise RequestInvalid("a type is 1-128 printable characters, e.g. 'IVS Stream State Change'")
    for pattern in resources:
        if not pattern.startswith("arn:") or not 4 < len(pattern) <= 1024 or not pattern.isascii() \
                or not pattern.isprintable() or " " in pattern:
            raise RequestInvalid("a resource is an ARN or an ARN pattern with * and ?, e.g. "
                                 "arn:aws:ivs:us-west-2:123456789012:channel/*")
        wildcard(pattern, ignore_case=False)
    return Subscription(frozenset(types), tuple(resources))


def resume_point(request: HttpRequest) -> str | None:
    """`Last-Event-ID` (what EventSource sends when it reconnects), or `last_event_id=`."""
    value = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
    if value is None or value == "":
        return None
    if not STREAM_ID.fullmatch(value):
        raise RequestInvalid("Last-Event-ID must be an event id this proxy sent (<digits>-<digits>)")
    return value


def sse_event(entry: StoredEvent) -> bytes:
    return f"id: {entry.id}\ndata: {entry.event.body}\n\n".encode()


def sse_control(name: str, payload: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


class _WriteTimedOut(Exception):
    pass


@dataclass
class EventDelivery:
    """The SSE handler and what it shares with the rest of the process's events."""

    store: EventStore
    fanout: Fanout
    access: OwnAccess
    metrics: Metrics
    buffer: int = 256
    max_subscribers: int = 1000
    heartbeat_seconds: float = 15.0
    retry_ms: int = 2000  # how long EventSource waits before it reconnects
    write_timeout_seconds: float = 0.0  # 0: max(MIN_WRITE_TIMEOUT_SECONDS, two heartbeats)

    def __post_init__(self) -> None:
        if not self.write_timeout_seconds:
            self.write_timeout_seconds = max(MIN_WRITE_TIMEOUT_SECONDS, 2 * self.heartbeat_seconds)

    async def handle(self, request: HttpRequest, own: OwnRequest) -> StreamingAnswer:
        subscription = subscription_of(request.query)
        last_id = resume_point(request)
        self.access.authorize(own.caller, OPERATION, subscription.resources, None)
        if len(self.fanout) >= self.max_subscribers:
            raise Overloaded(f"this replica serves its maximum of {self.max_subscribers} event subscribers",
                             headers={"Retry-After": "5"})
        caller = own.caller

        def decide(resources: Sequence[str], region: str) -> Decision | None:
            return self.access.decision(caller, OPERATION, resources, region)

        subscriber = Subscriber(caller.name, subscription, decide, self.buffer)
        response = StreamingAnswer(200, {**SSE_HEADERS, "X-Request-Id": request.request_id})
        state = request.app.state
        sent = _Sent(last_id)
        # Joined before the resume is read: an event stored meanwhile is queued, not lost
        # (and skipped if the resume already sent it).
        self.fanout.join(subscriber)
        self.metrics.events_subscribers.inc()
        ended = "closed"
        try:
            await response.prepare(request)
            request.started = response
            await self._write(response, f"retry: {self.retry_ms}\n: subscribed\n\n".encode())
            if state.drain.stop_requested.is_set():
                ended = "draining"
            else:
                if last_id is not None:
                    await self._resume(response, subscriber, sent)
                ended = await self._live(response, subscriber, sent)
        except StoreDown:
            ended = "store_unavailable"  # nothing lost: the client reconnects from its last id
        except _WriteTimedOut:
            ended = "write_timeout"
            self.metrics.events_subscribers_cut.labels("write_timeout").inc()
            if request.transport is not None:
                request.transport.close()
        except ConnectionError:
            ended = "client_gone"
        finally:
            self.fanout.leave(subscriber)
            self.metrics.events_subscribers.dec()
            own.call.fields.update(events_sent=sent.count, ended=ended)
        if response.prepared and ended not in ("write_timeout", "client_gone"):
            with contextlib.suppress(ConnectionError):
                await response.write_eof()  # here, not after the access line: so that it counts the bytes
        return response

    async def _resume(self, response: StreamingAnswer, subscriber: Subscriber, sent: _Sent) -> None:
        assert sent.last is not None
        bounds = await self.store.bounds()
        if bounds is None or id_key(bounds[0]) > id_key(sent.last):
            await self._write(response, sse_control("gap", {"oldest": bounds[0] if bounds else None}))
        while True:
            page = await self.store.after(sent.last, RESUME_PAGE)
            for entry in page:
                if not subscriber.subscription.wants(entry.event):
                    self.metrics.events_filtered.labels("subscription").inc()
                elif not subscriber.may_see(entry.event):
                    self.metrics.events_filtered.labels("policy").inc()
                else:
                    await self._send(response, entry)
                    sent.count += 1
                sent.last = entry.id  # filtered ones too: the resume moves past them
            if len(page) < RESUME_PAGE:
                return

    async def _live(self, response: StreamingAnswer, subscriber: Subscriber, sent: _Sent) -> str:
        while True:
            try:
                await asyncio.wait_for(subscriber.wake.wait(), self.heartbeat_seconds)
            except TimeoutError:
                await self._write(response, b": heartbeat\n\n")
                continue
            if subscriber.closing:
                return "draining"
            await self._send_all(response, subscriber.take(sent.last), sent)
            if subscriber.behind:
                self.metrics.events_subscribers_cut.labels("behind").inc()
                await self._write(response, sse_control("fell-behind", {"last_event_id": sent.last}))
                return "behind"

    async def _send_all(self, response: StreamingAnswer, entries: list[StoredEvent], sent: _Sent) -> None:
        """What is queued, in writes of about WRITE_CHUNK_BYTES: under a burst one syscall carries
        many events, and each write's timeout still measures a bounded amount of reading."""
        chunk: list[bytes] = []
        size = 0
        for n, entry in enumerate(entries):
            chunk.append(sse_event(entry))
            size += len(chunk[-1])
            if size >= WRITE_CHUNK_BYTES or n == len(entries) - 1:
                await self._write(response, b"".join(chunk))
                done = entries[n - len(chunk) + 1:n + 1]
                for written in done:
                    self._delivered(written)
                sent.last = entry.id
                sent.count += len(done)
                chunk, size = [], 0

    async def _send(self, response: StreamingAnswer, entry: StoredEvent) -> None:
        await self._write(response, sse_event(entry))
        self._delivered(entry)

    def _delivered(self, entry: StoredEvent) -> None:
        event = entry.event
        self.metrics.events_delivered.labels(event.type_label).inc()
        if event.time is not None:
            self.metrics.events_lag.observe(max(0.0, time.time() - event.time.timestamp()))

    async def _write(self, response: StreamingAnswer, data: bytes) -> None:
        try:
            await asyncio.wait_for(response.write(data), self.write_timeout_seconds)
        except TimeoutError:
            raise _WriteTimedOut from None


@dataclass
class _Sent:
    last: str | None
    count: int = 0

