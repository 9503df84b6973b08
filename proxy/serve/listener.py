"""The listeners as `serve` runs them, and the drain that ends them.

The data port is the proxy's own HTTP/1.1 server (proxy/serve/http_server.py): head
limits, the head timeout (slowloris), the idle timeout and the rest-json 400 for
unparseable requests are its rules. The admin port stays an aiohttp application; aiohttp
bounds a head's size and how long a connection may idle, but has no timeout for
*receiving* a head, so `_GuardedHandler` adds that timer there: once the first byte of a
request arrives, its whole head must follow within `limits.header_timeout_seconds`.

The subclass relies on three attributes of aiohttp's `RequestHandler` (`_request_count`,
`_request_in_progress`, `_waiter`), checked against aiohttp 3.10-3.14.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.config import LimitsConfig, parse_host_port
from proxy.errors import ConfigError
from proxy.serve.drain import first_of
from proxy.serve.http_server import (
    MAX_FIELD_BYTES,
    MAX_HEADERS,
    MAX_LINE_BYTES,
    DataServer,
    exit_contexts,
    run_contexts,
)
from proxy.serve.server import DataApp, ProxyState, malformed_answer

log = structlog.get_logger("ivs_proxy")

#: After the cut-off: time for the 503s to be written before connections close.
CUT_OFF_GRACE_SECONDS = 1.0

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
            if self._on_refused is not None:
                self._on_refused("head_timeout")
            self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class _GuardedRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # the same object; only the protocol factory differs
        return server


class DataRunner:
    """The data port running: its app's contexts entered, its server listening."""

    def __init__(self, app: DataApp, server: DataServer, contexts: list[AsyncIterator[None]]) -> None:
        self.app = app
        self.server = server
        self._contexts = contexts

    @property
    def addresses(self) -> list[Any]:
        return self.server.addresses

    def stop_accepting(self) -> None:
        self.server.stop_accepting()

    async def cleanup(self) -> None:
        """Close every connection, then leave the app's contexts (last entered, first left)."""
        await self.server.close()
        await exit_contexts(self._contexts)


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
    app: DataApp | web.Application,
    sockets: list[socket.socket],
    limits: LimitsConfig,
    *,
    on_refused: Refused | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> DataRunner | web.AppRunner:
    """Start `app` (its startup and cleanup contexts included), then listen on `sockets`
    (from `bind_listener`), which it owns from here on, in success and failure alike."""
    if isinstance(app, DataApp):
        return await _start_data_port(app, sockets, limits, on_refused=on_refused, ssl_context=ssl_context)
    runner = _GuardedRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_seconds,
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


async def _start_data_port(app: DataApp, sockets: list[socket.socket], limits: LimitsConfig, *,
                           on_refused: Refused | None, ssl_context: ssl.SSLContext | None) -> DataRunner:
    contexts: list[AsyncIterator[None]] = []
    try:
        await run_contexts(app.cleanup_ctx, app, contexts)
    except BaseException:
        await exit_contexts(contexts)
        for sock in sockets:
            sock.close()
        raise
    server = DataServer(app.handle, malformed=malformed_answer, header_timeout=limits.header_timeout_seconds,
                        idle_timeout=limits.idle_timeout_seconds, on_refused=on_refused, ssl_context=ssl_context)
    runner = DataRunner(app, server, contexts)
    try:
        await server.listen(sockets)
    except BaseException:
        await runner.cleanup()
        for sock in sockets:
            sock.close()
        raise
    return runner


def bound_port(runner: DataRunner | web.AppRunner) -> int:
    return int(runner.addresses[0][1])


async def drain_and_close(state: ProxyState, data: DataRunner, *, delay: float, timeout: float) -> None:
    """The shutdown sequence of `proxy/serve/drain.py`, from readiness 503 to closed connections."""
    drain = state.drain
    state.draining = True
    delay = 0.0 if drain.skip_delay else delay
    log.info("draining", reason=drain.stop_reason, delay_seconds=delay, timeout_seconds=timeout,
             inflight=drain.inflight)
    if delay > 0:
        await first_of((drain.hurry,), delay)
    data.stop_accepting()  # no new connections; open ones may still send (Connection: close)
    if not await drain.wait_idle(timeout):
        log.warning("drain_timeout", answered_503=drain.cut())
        await drain.wait_idle(CUT_OFF_GRACE_SECONDS, interruptible=False)
    await data.cleanup()
    log.info("drained")
