"""An aiohttp application on a listener, as the proxy serves its own: the dev credential
broker and the workers' supervisor's admin port, which are aiohttp applications.

aiohttp bounds a head's size and how long a connection may idle, but has no timeout for
*receiving* a head, so `_GuardedHandler` adds that timer: once the first byte of a request
arrives, its whole head must follow within `limits.header_timeout_seconds` (slowloris). The
subclass relies on three attributes of aiohttp's `RequestHandler` (`_request_count`,
`_request_in_progress`, `_waiter`), checked against aiohttp 3.10-3.14.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.config import LimitsConfig
from proxy.serve.http_server import MAX_FIELD_BYTES, MAX_HEADERS, MAX_LINE_BYTES

#: Used only after the drain: handlers still writing their last bytes.
SHUTDOWN_SECONDS = 1.0

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


async def start_aiohttp_listener(app: web.Application, sockets: list[socket.socket], limits: LimitsConfig, *,
                                 on_refused: Refused | None = None,
                                 ssl_context: ssl.SSLContext | None = None) -> web.AppRunner:
    """Start `app` (its startup and cleanup contexts included), then listen on `sockets`,
    which it owns from here on, in success and failure alike."""
    runner = _GuardedRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.idle_timeout_seconds,
        head_timeout=limits.header_timeout_seconds,
        max_line_size=MAX_LINE_BYTES,
        max_field_size=MAX_FIELD_BYTES,
        max_headers=MAX_HEADERS,
        on_refused=on_refused,
        shutdown_timeout=SHUTDOWN_SECONDS,
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
