"""The listeners as `serve` runs them, and the drain that ends them.

Every port (data, admin, the workers' supervisor's admin, the dev credential broker) is the
proxy's own HTTP/1.1 server (proxy/serve/http_server.py): head limits, the head timeout
(slowloris), the idle timeout and the rest-json 400 for unparseable requests are its rules.
`serve` and `dev` never load aiohttp's web framework.
"""

from __future__ import annotations

import errno
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import structlog

from proxy.config import LimitsConfig, parse_host_port
from proxy.errors import ConfigError
from proxy.serve.drain import first_of
from proxy.serve.http_server import AnyAnswer, HttpRequest, HttpServer, exit_contexts, run_contexts
from proxy.serve.server import ProxyState, malformed_answer

log = structlog.get_logger("ivs_proxy")

#: After the cut-off: time for the 503s to be written before connections close.
CUT_OFF_GRACE_SECONDS = 1.0

Refused = Callable[[str], None]


@runtime_checkable
class ServedApp(Protocol):
    """What the proxy's own server serves: the data port's app, the admin port's."""

    cleanup_ctx: Any  # a list of async generator functions taking the app
    peer_certificates: bool

    def handle(self, request: HttpRequest) -> Awaitable[AnyAnswer]: ...


class PortRunner:
    """One port running: its app's contexts entered, its server listening."""

    def __init__(self, server: HttpServer, contexts: list[AsyncIterator[None]]) -> None:
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
    app: ServedApp,
    sockets: list[socket.socket],
    limits: LimitsConfig,
    *,
    on_refused: Refused | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> PortRunner:
    """Start `app` (its startup and cleanup contexts included), then listen on `sockets`
    (from `bind_listener`), which it owns from here on, in success and failure alike."""
    contexts: list[AsyncIterator[None]] = []
    try:
        await run_contexts(app.cleanup_ctx, app, contexts)
    except BaseException:
        await exit_contexts(contexts)
        for sock in sockets:
            sock.close()
        raise
    server = HttpServer(app.handle, malformed=malformed_answer, header_timeout=limits.header_timeout_seconds,
                        idle_timeout=limits.idle_timeout_seconds, on_refused=on_refused, ssl_context=ssl_context)
    runner = PortRunner(server, contexts)
    try:
        await server.listen(sockets)
    except BaseException:
        await runner.cleanup()
        for sock in sockets:
            sock.close()
        raise
    return runner


def bound_port(runner: PortRunner) -> int:
    return int(runner.addresses[0][1])


async def drain_and_close(state: ProxyState, data: PortRunner, *, delay: float, timeout: float) -> None:
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
