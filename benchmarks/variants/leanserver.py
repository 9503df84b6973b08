"""Prototype for measurement only: the data listener as a bare asyncio.Protocol instead of
aiohttp's web server, doing the same per-request work as `proxy.serve.server` (request id,
in-flight gauge, pipeline check_head/prepare/send, error responses, the same
`record_request` metrics + access line).

Handles what the benchmark sends: HTTP/1.1 keep-alive, Content-Length bodies (no chunked
requests, no Expect, no limits on header size, no timeouts). It exists to measure what
aiohttp's server layer costs per request; a production version would need those.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from collections import deque
from http import HTTPStatus
from typing import Any

import structlog

REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Request(dict):  # type: ignore[type-arg]
    """Just enough of web.Request for proxy.serve.server.record_request."""

    def __init__(self, app: dict, method: str) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.app = app
        self.method = method


class _Response:
    __slots__ = ("body_length", "content_length", "headers", "status")

    def __init__(self, status: int, content_length: int) -> None:
        self.status = status
        self.content_length = content_length
        self.body_length = content_length  # newer proxy.serve.server.record_request reads this


def install(cli: Any) -> None:
    from aiohttp import web

    from proxy.config import parse_host_port
    from proxy.errors import BodyTooLarge, ProxyError
    from proxy.pipeline import Exchange, IncomingRequest
    from proxy.serve import server

    class LeanProtocol(asyncio.Protocol):
        def __init__(self, app: dict) -> None:  # type: ignore[type-arg]
            self.app = app
            self.state = app[server.STATE]
            self.buffer = bytearray()
            self.queue: deque[tuple[str, str, tuple[tuple[str, str], ...], bytes]] = deque()
            self.busy = False
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while True:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = []
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    value = value.strip()
                    headers.append((name, value))
                    if len(name) == 14 and name.lower() == "content-length":
                        length = int(value)
                total = end + 4 + length
                if len(self.buffer) < total:
                    break
                body = bytes(self.buffer[end + 4:total])
                del self.buffer[:total]
                self.queue.append((method, target, tuple(headers), body))
            if self.queue and not self.busy:
                self.busy = True
                asyncio.get_running_loop().create_task(self.drain())

        async def drain(self) -> None:
            while self.queue:
                response = await self.handle(*self.queue.popleft())
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(response)
            self.busy = False

        async def handle(self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes) -> bytes:
            state = self.state
            request = _Request(self.app, method)
            offered = next((v for n, v in headers if n.lower() == "x-request-id"), "")
            request_id = offered if server.SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex
            started = time.perf_counter()
            state.metrics.inflight.inc()
            with structlog.contextvars.bound_contextvars(request_id=request_id):
                try:
                    try:
                        path, query = server.split_target(target)
                        exchange = Exchange(IncomingRequest(method, path, query, headers, bool(body)))
                        request[server.EXCHANGE] = exchange
                        state.pipeline.check_head(exchange)
                        if len(body) > state.max_body_bytes:
                            raise BodyTooLarge(f"the body is {len(body)} bytes; the limit is {state.max_body_bytes}")
                        state.pipeline.prepare(exchange, body)
                        upstream = await state.pipeline.send(exchange)
                        exchange.upstream_status = upstream.status
                        exchange.amzn_request_id = upstream.headers.get("x-amzn-RequestId")
                        payload = upstream.body
                        if getattr(upstream, "stream", None) is not None:  # newer upstream.py: large answers
                            payload = b"".join([chunk async for chunk in upstream.stream.chunks()])
                        status, out_headers = upstream.status, dict(upstream.headers)
                    except ProxyError as error:
                        request[server.ERROR] = error
                        status = error.status
                        out_headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.error_type,
                                       "x-ivs-proxy-error": error.reason, **error.headers}
                        payload = json.dumps(error.body()).encode()
                finally:
                    state.metrics.inflight.dec()
                out_headers["X-Request-Id"] = request_id
                server.record_request(request, _Response(status, len(payload)), time.perf_counter() - started)  # type: ignore[arg-type]
            head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}"]
            head += [f"{name}: {value}" for name, value in out_headers.items()]
            head.append(f"Content-Length: {len(payload)}")
            return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload

    async def lean_run(data_app: web.Application, admin_app: web.Application, config: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        data_runner = web.AppRunner(data_app, access_log=None)
        await data_runner.setup()  # runs the upstream session + credential refresh contexts
        admin_runner = web.AppRunner(admin_app, access_log=None)
        await admin_runner.setup()
        host, port = parse_host_port(config.admin_listen)
        await web.TCPSite(admin_runner, host, port).start()
        host, port = parse_host_port(config.listen)
        app_view = {server.STATE: data_app[server.STATE]}
        lean = await loop.create_server(lambda: LeanProtocol(app_view), host, port, backlog=1024)
        await stop.wait()
        lean.close()
        await admin_runner.cleanup()
        await data_runner.cleanup()

    cli._run = lean_run
