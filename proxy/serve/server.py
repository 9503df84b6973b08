"""The two listeners' applications: the data port (the proxy) and the admin port.

The data port (`DataApp`, served by proxy/serve/http_server.py) looks up the proxy's own
operations by method and path; every other request goes to the IVS request path, where
routing is the catalog's job, so that a miss is explained in the rest-json error shape.
`DataApp.handle` wraps every request, outermost first: observing (one access line and the
metrics), refusing (the one place a ProxyError becomes an answer), guarding (the drain's
bookkeeping: a request still running at the cut-off is answered 503 here). The in-flight
cap is taken in `handle_proxy`, once the body is in (proxy/serve/limits.py says why).
The admin port is proxy/serve/admin.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter, Histogram

from proxy.aws.credentials import CredentialStore
from proxy.aws.upstream import Upstream, UpstreamResponse, foreign_answer, is_aws_answer
from proxy.errors import (
    BodyTooLarge,
    ClientDisconnected,
    ClientTimeout,
    MalformedRequest,
    MethodNotAllowed,
    ProxyError,
    RequestInvalid,
    ShuttingDown,
    SlowBody,
    UpstreamError,
)
from proxy.gateway.identity import PEER_CERTIFICATE
from proxy.gateway.own_access import OWN_SERVICE, OwnAccess, OwnOperation
from proxy.observe.logs import ACCESS_LOG
from proxy.observe.metrics import NO_REGION, UNKNOWN, Metrics
from proxy.pipeline import Exchange, IncomingRequest, Pipeline
from proxy.serve.drain import Drain
from proxy.serve.http_server import Answer, AnyAnswer, Body, HttpRequest, StreamingAnswer
from proxy.serve.limits import Admission, BodyReads, CallerShares
from proxy.serve.own_routes import OwnCall, OwnHandler, own_route

#: A caller's X-Request-Id is reused only if it looks like an id: it ends up in logs and
#: in our answer, so it must not carry newlines, markup or a novel.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/=+-]{1,128}")


class MetricChildren:
    """The labelled series a request updates, looked up once per label set: prometheus_client's
    `labels()` validates and locks on every call, and a proxy sees few label sets (operations
    x statuses, refusal reasons), so the children are kept."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._answered: dict[tuple[str, str, str, int], tuple[Counter, Histogram]] = {}
        self._upstream: dict[tuple[str, str, str], Histogram] = {}
        self._rejected: dict[str, Counter] = {}
        self.in_flight_slots = metrics.slots_held.labels("in_flight")

    def answered(self, service: str, operation: str, region: str, status: int) -> tuple[Counter, Histogram]:
        """(requests, request duration) of this operation, region and status."""
        key = (service, operation, region, status)
        children = self._answered.get(key)
        if children is None:
            m = self._metrics
            children = self._answered[key] = (m.requests.labels(service, operation, region, str(status)),
                                              m.request_duration.labels(service, operation))
        return children

    def upstream_duration(self, service: str, operation: str, region: str) -> Histogram:
        # Only once a call reached AWS: a refused request must not create an empty series.
        child = self._upstream.get((service, operation, region))
        if child is None:
            child = self._upstream[service, operation, region] = self._metrics.upstream_duration.labels(
                service, operation, region)
        return child

    def rejected(self, reason: str) -> Counter:
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = self._metrics.rejected.labels(reason)
        return child


@dataclass
class ProxyState:
    pipeline: Pipeline
    upstream: Upstream
    credentials: CredentialStore
    max_body_bytes: int
    metrics: Metrics
    draining: bool = False  # /readyz says 503; answers carry Connection: close
    body_timeout_seconds: float = 10.0
    body_grace_seconds: float = 2.0
    body_min_rate: float = 1024.0  # bytes per second, after the grace
    admission: Admission = field(default_factory=Admission)
    body_reads: BodyReads = field(default_factory=BodyReads)
    inflight_shares: CallerShares = field(default_factory=lambda: CallerShares(150, 1.0, "in-flight slots"))
    body_read_shares: CallerShares = field(default_factory=lambda: CallerShares(256, 1.0, "body-read slots"))
    drain: Drain = field(default_factory=Drain)
    metric_children: MetricChildren = field(init=False)

    def __post_init__(self) -> None:
        self.metric_children = MetricChildren(self.metrics)

    @property
    def body_pace(self) -> BodyPace:
        """The pace bodies must keep; built again only when the three settings change."""
        settings = (self.body_timeout_seconds, self.body_grace_seconds, self.body_min_rate)
        pace = self.__dict__.get("_body_pace")
        if pace is None or (pace.timeout, pace.grace, pace.min_rate) != settings:
            pace = self.__dict__["_body_pace"] = BodyPace(*settings)
        return pace


def error_response(error: ProxyError) -> Answer:
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.error_type,
               "x-ivs-proxy-error": error.reason, **error.headers}
    answer = Answer(error.status, json.dumps(error.body()).encode(), headers)
    if error.close_connection:
        answer.force_close()
    return answer


def malformed_answer(message: str) -> Answer:
    """The 400 for a request the data port's parser refused (proxy/serve/http_server.py)."""
    return error_response(MalformedRequest(message))


def _new_request_ids() -> Iterator[str]:
    # A random per-process prefix and a counter: unique across replicas and restarts,
    # and cheaper than uuid4() per request. A generator, so the prefix is drawn at the
    # first request, after any fork.
    prefix = os.urandom(8).hex()
    for n in itertools.count(1):
        yield f"{prefix}{n:016x}"


_request_ids = _new_request_ids()


def request_id_for(request: HttpRequest) -> str:
    offered = request.headers.get("X-Request-Id", "")
    return offered if offered and SANE_REQUEST_ID.fullmatch(offered) else next(_request_ids)


class DataApp:
    """The data port: the proxy's own operations by (method, path), every other request to
    the IVS request path; and the contexts that live as long as it serves (credential
    refresh, the upstream pool, the gateway's and events' background work), each an async
    generator taking this app, entered in order at start and left in reverse at the end."""

    def __init__(self, state: ProxyState, own_routes: Sequence[tuple[OwnOperation, OwnHandler]] = (),
                 own_access: OwnAccess | None = None) -> None:
        self.state = state
        self.cleanup_ctx: list[Callable[[DataApp], AsyncIterator[None]]] = []
        #: The TLS listener asks for client certificates (mTLS callers): each request's is
        #: made known to the gateway's authentication (PEER_CERTIFICATE).
        self.peer_certificates = False
        self._own: dict[tuple[str, str], Callable[[HttpRequest], Awaitable[AnyAnswer]]] = {}
        access = own_access or OwnAccess()

        async def read_own_body(request: HttpRequest) -> bytes:
            return await read_body(request, state.max_body_bytes, pace=state.body_pace, reads=state.body_reads,
                                   metrics=state.metrics, shares=(state.body_read_shares, address_of(request)))

        for operation, handler in own_routes:
            self._own[operation.method, operation.path] = own_route(operation, access, handler, read_own_body)

        async def upstream_session(_: DataApp) -> AsyncIterator[None]:
            await state.upstream.start()
            yield
            await state.upstream.close()

        self.cleanup_ctx.append(upstream_session)

    async def handle(self, request: HttpRequest) -> AnyAnswer:
        """Every request on the data port: observed (one access line and one set of metrics,
        whatever happened), its ProxyError turned into an answer, and known to the drain
        (at the cut-off, a 503 instead of a dropped connection)."""
        state = self.state
        metrics = state.metrics
        request.app = self
        request_id = request.request_id = request_id_for(request)
        started = time.perf_counter()
        metrics.inflight.inc()
        # Other lines logged while handling it carry the id too (bind/reset: cheaper than the
        # generator-based `bound_contextvars`, and this runs for every request).
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        certificate = PEER_CERTIFICATE.set(request.connection.peer_certificate) if self.peer_certificates else None
        try:
            try:
                answer = await self._refusing(request, state)
            finally:
                metrics.inflight.dec()
            if not answer.prepared:
                answer.headers["X-Request-Id"] = request_id
                if state.draining:
                    answer.force_close()  # so that clients reconnect to a replica that stays
            record_request(request, answer, time.perf_counter() - started)
        finally:
            if certificate is not None:
                PEER_CERTIFICATE.reset(certificate)
            structlog.contextvars.reset_contextvars(**bound)
        return answer

    async def _refusing(self, request: HttpRequest, state: ProxyState) -> AnyAnswer:
        try:
            if not request.raw_path.startswith("/") or request.method == "CONNECT":
                refuse_target_form(request.method, request.raw_path)
            task = asyncio.current_task()
            assert task is not None
            state.drain.enter(task)
            try:
                own = self._own.get((request.method, request.path)) if self._own else None
                return await (own(request) if own is not None else handle_proxy(request))
            except asyncio.CancelledError:
                if not state.drain.cut_off:
                    raise
                task.uncancel()  # the cancellation was ours, to answer the caller
                return _cut_off(request)
            finally:
                state.drain.leave(task)
        except ProxyError as error:
            request.error = error
            return error_response(error)


def _cut_off(request: HttpRequest) -> AnyAnswer:
    started = request.started
    if started is not None:
        # Its 200 headers are out: only a broken connection tells the caller it is cut short.
        request.error = ShuttingDown("the drain timeout ran out while the answer was being relayed")
        _break_connection(request)
        return started
    raise ShuttingDown(
        "ivs-proxy is shutting down and the drain timeout ran out before this request finished; "
        "it may or may not have reached AWS",
        headers={"Retry-After": "1"},
    )


def _break_connection(request: HttpRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def record_request(request: HttpRequest, response: AnyAnswer, seconds: float) -> None:
    state = request.app.state
    children = state.metric_children
    exchange: Exchange | None = request.exchange
    route = exchange.route if exchange is not None else None
    own: OwnCall | None = request.own_call
    if route is not None:
        service, operation = route.operation.service.name, route.operation.name
    elif own is not None:
        service, operation = OWN_SERVICE, own.operation.name
    else:
        service = operation = UNKNOWN
    error: ProxyError | None = request.error
    status = response.status
    # Only a region the chooser accepted (a fixed, configured set), never what a caller sent.
    region = exchange.region if exchange is not None and exchange.region else NO_REGION
    if own is not None and own.region:
        region = own.region
    answered, duration = children.answered(service, operation, region, status)
    answered.inc()
    duration.observe(seconds)
    line: dict[str, object] = {
        "method": request.method, "caller": None, "service": service, "operation": operation, "region": None,
        "status": status, "duration_ms": round(seconds * 1000, 3), "bytes_in": 0,
        "bytes_out": response.bytes_out,
    }
    if exchange is not None:
        if exchange.caller is not None:
            line["caller"] = exchange.caller.name
        line["region"] = exchange.region or None
        line["bytes_in"] = len(exchange.request.body)
        _record_exchange(exchange, children, state.metrics, line)
    elif own is not None:
        line["caller"] = own.caller.name if own.caller is not None else None
        line["region"] = own.region
        line.update(own.fields)
    if isinstance(error, UpstreamError):
        state.metrics.upstream_errors.labels(error.kind).inc()
        line["upstream_error"] = error.kind
    elif error is not None:
        children.rejected(error.reason).inc()
        line["refused"] = error.reason
    ACCESS_LOG.write(request.request_id, line)


def _record_exchange(exchange: Exchange, children: MetricChildren, metrics: Metrics,
                     line: dict[str, object]) -> None:
    if exchange.attempts:
        line["attempts"] = exchange.attempts
        for reason in exchange.retried:
            metrics.retries.labels(reason).inc()
    if exchange.upstream_seconds:
        operation = exchange.operation
        children.upstream_duration(operation.service.name, operation.name, exchange.region).observe(
            exchange.upstream_seconds)
        line["upstream_ms"] = round(exchange.upstream_seconds * 1000, 3)
    if exchange.signing_seconds:
        metrics.signing_duration.observe(exchange.signing_seconds)
        line["signing_ms"] = round(exchange.signing_seconds * 1000, 3)
    if exchange.upstream_status:
        line["upstream_status"] = exchange.upstream_status
        line["amzn_request_id"] = exchange.amzn_request_id


@dataclass(frozen=True)
class BodyPace:
    """How slowly a body may arrive: all of it within `timeout`, and, once `grace` has passed,
    at least `min_rate` bytes per second on average since the headers (each byte received
    buys 1/min_rate s more, as with Apache's mod_reqtimeout MinRate). A caller trickling a
    few bytes a second is cut after about `grace` seconds instead of holding on for `timeout`."""

    timeout: float = 10.0
    grace: float = 2.0
    min_rate: float = 1024.0

    def deadline(self, received: int) -> float:
        """Seconds after the headers by which more must have arrived."""
        return min(self.timeout, self.grace + received / self.min_rate)


#: A body that follows its headers within this needs no body-read slot: SDKs often send the
#: two in separate writes (botocore does), and an ordinary caller must not be refused for it.
UNCOUNTED_BODY_SECONDS = 0.5


async def read_body(request: HttpRequest, limit: int, timeout: float = 10.0, *,
                    pace: BodyPace | None = None, reads: BodyReads | None = None,
                    metrics: Metrics | None = None, shares: tuple[CallerShares, str] | None = None) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds the limit, and (408) if it arrives
    slower than `pace` allows. A body still arriving after UNCOUNTED_BODY_SECONDS holds a slot
    of `reads` (503 when none is free), never an in-flight slot."""
    pace = pace if pace is not None else BodyPace(timeout, timeout, 1.0)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    content = request.content
    if declared is not None and content.is_eof():
        # The usual small body came in with the head: already whole, nothing to wait for.
        return content.read_nowait()
    receiving = _Receiving(content, limit, pace, reads, metrics, shares)
    try:
        return await receiving.run()
    finally:
        receiving.release()


class _Receiving:
    """One body on its way in, and the body-read slot it takes once it has been slow."""

    def __init__(self, content: Body, limit: int, pace: BodyPace, reads: BodyReads | None,
                 metrics: Metrics | None, shares: tuple[CallerShares, str] | None = None) -> None:
        self._content, self._limit, self._pace, self._reads, self._metrics = content, limit, pace, reads, metrics
        self._shares = shares
        self._counted = False

    async def run(self) -> bytes:
        loop = asyncio.get_running_loop()
        started = loop.time()
        pace = self._pace
        chunks: list[bytes] = []
        size = 0
        while True:
            deadline = started + pace.deadline(size)
            uncounted_until = started + UNCOUNTED_BODY_SECONDS
            counting_first = not self._counted and uncounted_until < deadline
            try:
                async with asyncio.timeout_at(uncounted_until if counting_first else deadline):
                    chunk = await self._content.readany()
            except TimeoutError:
                if counting_first:
                    self._count()
                    continue
                raise self._cut(deadline >= started + pace.timeout, size, loop.time() - started) from None
            except ConnectionResetError:
                raise ClientDisconnected(f"the client closed the connection after {size} bytes of its body") from None
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self._limit:
                raise BodyTooLarge(f"the body exceeds the limit of {self._limit} bytes")
            chunks.append(chunk)

    def _count(self) -> None:
        if self._shares is not None:
            shares, holder = self._shares
            shares.take(holder)
        if self._reads is not None:
            try:
                self._reads.acquire()
            except BaseException:
                if self._shares is not None:
                    shares.give(holder)
                raise
        self._counted = True
        if self._metrics is not None:
            self._metrics.slots_held.labels("body_read").inc()

    def release(self) -> None:
        if not self._counted:
            return
        self._counted = False
        if self._shares is not None:
            shares, holder = self._shares
            shares.give(holder)
        if self._reads is not None:
            self._reads.release()
        if self._metrics is not None:
            self._metrics.slots_held.labels("body_read").dec()

    def _cut(self, total: bool, size: int, seconds: float) -> ClientTimeout:
        pace = self._pace
        if self._metrics is not None:
            self._metrics.slow_bodies_cut.labels("timeout" if total else "min_rate").inc()
        if total:
            return ClientTimeout(f"the request body did not arrive within {pace.timeout:g} s")
        return SlowBody(
            f"the request body arrived too slowly: {size} bytes in {seconds:.1f} s; after "
            f"{pace.grace:g} s it must average at least {pace.min_rate:g} bytes/s"
        )


def refuse_target_form(method: str, target: str) -> None:
    """Refuse a request target that is not a path (RFC 9112 3.2), naming its form."""
    if method == "CONNECT":
        raise MethodNotAllowed("CONNECT is not supported: ivs-proxy signs IVS API calls and is not a "
                               "forward proxy or tunnel; send each call to its path, e.g. POST /ListChannels")
    if target == "*":
        raise RequestInvalid("the request target `*` (asterisk-form, as in `OPTIONS *`) is not an IVS API "
                             "call; send each call to its path, e.g. POST /ListChannels")
    split_target(target)


def split_target(target: str) -> tuple[str, str]:
    if not target.startswith("/"):
        # absolute-form ("GET http://host/...") would name a host; only we choose hosts.
        raise RequestInvalid("the request target must be a path (origin-form), not a URL")
    path, _, query = target.partition("?")
    return path, query


async def handle_proxy(request: HttpRequest) -> AnyAnswer:
    state = request.app.state
    path, query = split_target(request.raw_path)
    exchange = Exchange(IncomingRequest(request.method, path, query, request.headers.items(), request.body_exists))
    request.exchange = exchange
    state.pipeline.check_head(exchange)
    holder = holder_of(request, exchange)
    body = await read_body(request, state.max_body_bytes, pace=state.body_pace, reads=state.body_reads,
                           metrics=state.metrics, shares=(state.body_read_shares, holder))
    state.inflight_shares.take(holder)
    try:
        await state.admission.acquire()
        in_flight = state.metric_children.in_flight_slots
        in_flight.inc()
        try:
            return await _forward(request, exchange, body)
        finally:
            in_flight.dec()
            state.admission.release()
    finally:
        state.inflight_shares.give(holder)


def holder_of(request: HttpRequest, exchange: Exchange) -> str:
    """Whose share a request counts against: its caller once authenticated (gateway mode
    knows it from the headers), else the client's address."""
    if exchange.caller is not None:
        return f"caller:{exchange.caller.name}"
    return address_of(request)


def address_of(request: HttpRequest) -> str:
    peer = request.peer_address()
    return f"address:{peer}" if peer else "address:unknown"


async def _forward(request: HttpRequest, exchange: Exchange, body: bytes) -> AnyAnswer:
    state = request.app.state
    state.pipeline.prepare(exchange, body)
    upstream = await state.pipeline.send(exchange)
    exchange.upstream_status = upstream.status
    exchange.amzn_request_id = upstream.headers.get("x-amzn-RequestId")
    if not is_aws_answer(upstream):
        raise foreign_answer(upstream.status, upstream.headers, await _head_of(upstream))
    if upstream.stream is not None:
        return await relay(request, upstream)
    return Answer(upstream.status, upstream.body, upstream.headers)


async def _head_of(upstream: UpstreamResponse) -> bytes:
    """The first bytes of an answer; a stream is closed after its first chunk."""
    if upstream.stream is None:
        return upstream.body[:4096]
    try:
        async with contextlib.aclosing(upstream.stream.chunks()) as chunks:
            async for chunk in chunks:
                return chunk[:4096]
    except UpstreamError:
        pass
    finally:
        upstream.stream.close()
    return b""


async def relay(request: HttpRequest, upstream: UpstreamResponse) -> AnyAnswer:
    """Pass a large answer on as it arrives. If AWS's body ends early or stalls, the headers
    are already out, so the caller's connection is broken: its client reports an
    incomplete body instead of taking a partial 200 for a whole one."""
    stream = upstream.stream
    assert stream is not None
    response = StreamingAnswer(upstream.status, upstream.headers)
    if stream.content_length is not None:
        response.content_length = stream.content_length
    if request.app.state.draining:
        response.force_close()
    response.headers["X-Request-Id"] = request.request_id
    request.started = response
    try:
        await response.prepare(request)
        async with contextlib.aclosing(stream.chunks()) as chunks:
            async for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
    except UpstreamError as error:
        request.error = error
        _break_connection(request)
    except ConnectionError:
        pass  # the caller left; nothing to tell it
    finally:
        stream.close()
    return response


def create_data_app(state: ProxyState, own_routes: Sequence[tuple[OwnOperation, OwnHandler]] = (),
                    own_access: OwnAccess | None = None) -> DataApp:
    """The data port. `own_routes` are the proxy's own operations that this config turns on
    (proxy/serve/own_routes.py); every other path goes to the IVS request path."""
    return DataApp(state, own_routes, own_access)
