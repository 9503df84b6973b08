"""The listeners as `serve` runs them, and the drain that ends them.

aiohttp bounds a request head's size (8190-byte request line and fields, 128 headers)
and, with `keepalive_timeout`, how long a connection may sit idle; it has no timeout for
*receiving* a head. A client that sends a byte of headers every few seconds keeps its
connection, and with enough of them the listener (slowloris). `_GuardedHandler` adds that
timer: once the first byte of a request arrives, its whole head must follow within
`limits.header_timeout_seconds`, or the connection is closed. It also answers requests
aiohttp cannot parse in the proxy's rest-json error shape, with a message that names the
rule the request broke (`malformed_http_message`) but none of its bytes (the parser's own
message quotes them).

The subclass relies on three attributes of aiohttp's `RequestHandler` (`_request_count`,
`_request_in_progress`, `_waiter`), checked against aiohttp 3.10-3.14;
tests/e2e/test_resilience_hostile.py fails if a new aiohttp changes them.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, InvalidHeader, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.config import LimitsConfig, parse_host_port
from proxy.errors import ConfigError, MalformedRequest
from proxy.serve.drain import first_of
from proxy.serve.server import ProxyState, error_response

log = structlog.get_logger("ivs_proxy")

#: After the cut-off: time for the 503s to be written before connections close.
CUT_OFF_GRACE_SECONDS = 1.0
#: After refusing a request whose body was not read (413, 408), aiohttp reads and drops the
#: rest for this long, so the client sees the answer rather than a reset; its default (10 s)
#: would let a slow client keep the connection that long.
LINGER_SECONDS = 1.0

#: The head limits, given to aiohttp's parser (these are its defaults) and named in refusals.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128

Refused = Callable[[str], None]

#: (what aiohttp's parser says, lower-cased; what the proxy says), first match wins. The
#: parser's text is matched, never echoed: it quotes the request.
_RULES = (
    ("missing 'host' header", "the Host header is missing; HTTP/1.1 requires exactly one"),
    ("duplicate 'host' header", "the Host header is given more than once; HTTP/1.1 requires exactly one"),
    ("duplicate content-length", "Content-Length is given more than once; send it once"),
    ("duplicate 'content-length'", "Content-Length is given more than once; send it once"),
    ("invalid character in content-length", "Content-Length must be a plain decimal number of bytes"),
    ("transfer-encoding can't be present with content-length",
     "the request has both Content-Length and Transfer-Encoding; send one of them"),
    ("transfer-encoding", "Transfer-Encoding must be exactly `chunked` (HTTP/1.1), or absent"),
    ("too many headers", f"the request has more than {MAX_HEADERS} header fields"),
    ("chunk size", "a chunk size of the chunked body is malformed or too large"),
)
_GENERIC = "the request is not well-formed HTTP/1.1 (framing, line ends or header syntax)"


def malformed_http_message(exc: BaseException | None, *, request_line_bytes: int) -> str:
    """What to tell a client whose request aiohttp could not parse; `request_line_bytes`:
    how much of the request line had arrived (a line over the limit is the request line's,
    or else a header field's)."""
    if isinstance(exc, LineTooLong):
        if request_line_bytes > MAX_LINE_BYTES:
            return f"the request line (method, target and version) is longer than {MAX_LINE_BYTES} bytes"
        return f"a header field is longer than {MAX_FIELD_BYTES} bytes"
    if isinstance(exc, InvalidHeader) and exc.hdr.lower() == "content-length":  # the pure-Python parser's
        return "Content-Length must be given once, as a plain decimal number of bytes"
    said = ""
    if isinstance(exc, HttpProcessingError) and isinstance(exc.message, str):
        said = exc.message.partition(":\n")[0].lower()  # the rule, without the quoted excerpt
    return next((ours for theirs, ours in _RULES if theirs in said), _GENERIC)


class _GuardedHandler(RequestHandler):
    __slots__ = (
        "_head_done",
        "_head_timeout",
        "_head_timer",
        "_on_refused",
        "_request_line_bytes",
        "_request_line_done",
    )

    def __init__(self, manager: web.Server, *, head_timeout: float, on_refused: Refused | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._head_timeout = head_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._on_refused = on_refused
        self._request_line_bytes = 0
        self._request_line_done = False
        self._head_done = False

    def data_received(self, data: bytes) -> None:
        heads = self._request_count
        self._measure_request_line(data)
        super().data_received(data)
        if self._request_count != heads:
            self._stop_head_timer()  # a whole head (or a parse error) arrived
            self._head_done = True  # kept for handle_error, which runs after this returns
        elif data and self._head_timer is None and not self._request_in_progress:
            self._head_timer = self._loop.call_later(self._head_timeout, self._head_timed_out)

    def _measure_request_line(self, data: bytes) -> None:
        """Only to say which line was too long; a pipelined next request is not measured."""
        if self._head_done and not self._request_in_progress:  # the first bytes of the next head
            self._request_line_bytes, self._request_line_done, self._head_done = 0, False, False
        if self._request_line_done or self._request_in_progress:
            return
        end = data.find(b"\n")
        self._request_line_bytes += len(data) if end < 0 else end
        self._request_line_done = end >= 0

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
        message = malformed_http_message(exc, request_line_bytes=self._request_line_bytes)
        log.info("malformed_request", error=type(exc).__name__ if exc is not None else None, rule=message)
        self._refused("malformed_http")
        return error_response(MalformedRequest(message))

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


#: The flag that sets each listener's address, for the message when it is taken.
_FLAGS = {"listen": "--listen", "admin_listen": "--admin-listen"}


def bind_listener(address: str, key: str = "listen", *, reuse_port: bool = False) -> list[socket.socket]:
    """The sockets `address` is served on, bound but not yet listening: one for each address
    HOST resolves to, with the options asyncio's `create_server` sets. `serve` binds them
    before its start-up runs, so a taken port is reported at once, not after a credential
    fetch that may take seconds. `reuse_port`: beside other processes (SO_REUSEPORT, `workers:`).

    Raises ConfigError (exit code 2, as for any address this machine cannot serve): which
    listener, where, why, and for a port in use, what to do."""
    host, port = parse_host_port(address, key)
    sockets: list[socket.socket] = []
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, where in dict.fromkeys(found):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(where)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        reason = (exc.strerror or str(exc)).lower()
        if exc.errno == errno.EADDRINUSE:
            flag = _FLAGS.get(key)
            reason += (": another process listens there; stop it or choose another port "
                       f"({f'{flag} or {key}:' if flag else key})")
        raise ConfigError(key, f"cannot listen on {address}: {reason}") from None
    return sockets


async def start_listener(
    app: web.Application,
    sockets: list[socket.socket],
    limits: LimitsConfig,
    *,
    on_refused: Refused | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Start `app` (its startup and cleanup contexts included), then listen on `sockets`
    (from `bind_listener`), which it owns from here on, in success and failure alike."""
    runner = _GuardedRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_seconds,
        lingering_time=LINGER_SECONDS,
        head_timeout=limits.header_timeout_seconds,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
        max_headers=MAX_HEADERS,
        on_refused=on_refused,
        # Used only after our own drain: handlers still writing their last bytes.
        shutdown_timeout=CUT_OFF_GRACE_SECONDS,
    )
    try:
        await runner.setup()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    try:
        for sock in sockets:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        for sock in sockets:
            sock.close()
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
