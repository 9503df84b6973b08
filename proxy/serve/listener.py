"""The listeners as `serve` runs them, and the drain that ends them.

aiohttp bounds a request head's size (8190-byte request line and fields, 128 headers)
and, with `keepalive_timeout`, how long a connection may sit idle; it has no timeout for
*receiving* a head. A client that sends a byte of headers every few seconds keeps its
connection, and with enough of them the listener (slowloris). `_GuardedHandler` adds that
timer: once the first byte of a request arrives, its whole head must follow within
`limits.header_timeout_seconds`, or the connection is closed. It also answers requests
aiohttp cannot parse in the proxy's rest-json error shape, with a fixed message (the
parser's own quotes the offending bytes).

The subclass relies on three attributes of aiohttp's `RequestHandler` (`_request_count`,
`_request_in_progress`, `_waiter`), checked against aiohttp 3.10-3.14;
tests/e2e/test_resilience_hostile.py fails if a new aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.config import LimitsConfig, parse_host_port
from proxy.errors import MalformedRequest
from proxy.serve.drain import first_of
from proxy.serve.server import ProxyState, error_response

log = structlog.get_logger("ivs_proxy")

#: After the cut-off: time for the 503s to be written before connections close.
CUT_OFF_GRACE_SECONDS = 1.0
#: After refusing a request whose body was not read (413, 408), aiohttp reads and drops the
#: rest for this long, so the client sees the answer rather than a reset; its default (10 s)
#: would let a slow client keep the connection that long.
LINGER_SECONDS = 1.0

Refused = Callable[[str], None]


class _GuardedHandler(RequestHandler):
    __slots__ = ("_head_timeout", "_head_timer", "_on_refused")

    def __init__(self, manager: web.Server, *, head_timeout: float, on_refused: Refused | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._on_refused = on_refused

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        super().data_received(data)
        if self._request_count != heads:
            self._stop_head_timer()  # a whole head (or a parse error) arrived
        elif data and self._head_timer is None and not self._request_in_progress:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():  # still no complete head
            self._refused("head_timeout")
            self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status != 400:
            return super().handle_error(request, status, exc, message)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer is already out; cannot send a 400")
        log.info("malformed_request", error=type(exc).__name__ if exc is not None else None)
        self._refused("malformed_http")
        return error_response(MalformedRequest("the request is not well-formed HTTP/1.1"))

    def _refused(self, reason: str) -> None:
        if self._on_refused is not None:
            self._on_refused(reason)


class _GuardedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object; only the protocol factory differs
        return server


async def start_listener(
    app: web.Application,
    address: str,
    limits: LimitsConfig,
    *,
    on_refused: Refused | None = None,
    ssl_context: ssl.SSLContext | None = None,
    key: str = "listen",
    reuse_port: bool = False,
) -> web.AppRunner:
    """Start `app` (its startup and cleanup contexts included) listening on `address`;
    `reuse_port`: beside other processes on the same address (SO_REUSEPORT, `workers:`)."""
    runner = _GuardedRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_seconds,
        lingering_time=LINGER_SECONDS,
        head_timeout=limits.header_timeout_seconds,
        on_refused=on_refused,
        # Used only after our own drain: handlers still writing their last bytes.
        shutdown_timeout=CUT_OFF_GRACE_SECONDS,
    )
    await runner.setup()
    host, port = parse_host_port(address, key)
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port or None).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


async def drain_and_close(state: ProxyState, data: web.AppRunner, *, delay: float, timeout: float) -> None:
    """The shutdown sequence of `proxy/serve/drain.py`, from readiness 503 to closed connections."""
    drain = state.drain
    state.draining = True
    delay = 0.0 if drain.skip_delay else delay
    log.info("draining", reason=drain.stop_reason, delay_seconds=delay, timeout_seconds=timeout,
             inflight=drain.inflight)
    if delay > 0:
        await first_of((drain.hurry,), delay)
    for site in list(data.sites):
        await site.stop()  # no new connections; open ones may still send (Connection: close)
    if not await drain.wait_idle(timeout):
        log.warning("drain_timeout", answered_503=drain.cut())
        await drain.wait_idle(CUT_OFF_GRACE_SECONDS, interruptible=False)
    await data.cleanup()
    log.info("drained")
