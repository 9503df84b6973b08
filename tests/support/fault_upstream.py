"""A loopback upstream whose misbehaviour each test scripts, request by request.

`FaultUpstream.script` is a queue of behaviours, one per request received; once it is
empty, `default` answers. Every request is recorded (with its arrival time and whether its
SigV4 signature verifies, as in RecordingUpstream) before the behaviour runs, so a test can
count attempts and measure the waits between them.

Behaviours: `respond` (any status, headers, body, after a delay), `gate` (hold until the
test opens an event), `stall`, `reset` (TCP RST after reading the request), `truncated`
(fewer body bytes than Content-Length, then close), `malformed` (not HTTP), `slow_body`
(chunked, a pause between chunks).
"""

from __future__ import annotations

import asyncio
import collections
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.recording_upstream import RecordingUpstream

Behaviour = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = {"Content-Type": "application/json"}


def respond(status: int = 200, body: bytes = b"{}", headers: dict[str, str] | None = None,
            delay: float = 0.0) -> Behaviour:
    async def behaviour(_: web.Request) -> web.StreamResponse:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, body=body, headers={**JSON, **(headers or {})})
    return behaviour


def aws_error(status: int, code: str, headers: dict[str, str] | None = None) -> Behaviour:
    """An error the way IVS sends it: x-amzn-ErrorType and a JSON message."""
    return respond(status, b'{"message":"scripted"}', {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/",
                                                       **(headers or {})})


def gate(event: asyncio.Event, then: Behaviour | None = None) -> Behaviour:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        await event.wait()
        return await (then or respond())(request)
    return behaviour


def stall(seconds: float = 30.0) -> Behaviour:
    return respond(delay=seconds)


def reset() -> Behaviour:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        _rst(request)
        return web.Response()  # never written: the connection is gone
    return behaviour


def truncated(declared: int, sent: int, status: int = 200) -> Behaviour:
    """Headers promising `declared` body bytes, then `sent` of them, then the connection closes."""
    async def behaviour(request: web.Request) -> web.StreamResponse:
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
        _raw(request, head.encode() + b"x" * sent)
        return web.Response()
    return behaviour


def malformed() -> Behaviour:
    async def behaviour(request: web.Request) -> web.StreamResponse:
        _raw(request, b"HTTP/1.1 two hundred OK\r\nthis is: not\r\n\r\n{}")
        return web.Response()
    return behaviour


def slow_body(chunks: list[bytes], interval: float, status: int = 200) -> Behaviour:
    """A chunked answer (no Content-Length), `interval` seconds between chunks."""
    async def behaviour(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=JSON)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for chunk in chunks:
                await asyncio.sleep(interval)
                await response.write(chunk)
            await response.write_eof()
        except ConnectionError:
            pass  # the proxy gave up on this answer (a retry, a timeout): fine
        return response
    return behaviour


def _raw(request: web.Request, data: bytes) -> None:
    transport = request.transport
    assert transport is not None
    transport.write(data)
    transport.close()


def _rst(request: web.Request) -> None:
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    # SO_LINGER 0: close() sends a RST instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


@dataclass
class FaultUpstream(RecordingUpstream):
    script: collections.deque[Behaviour] = field(default_factory=collections.deque)
    default: Behaviour = field(default_factory=respond)
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each request

    def then(self, *behaviours: Behaviour) -> FaultUpstream:
        self.script.extend(behaviours)
        return self

    def paths(self) -> list[str]:
        return [r.raw_path for r in self.received]

    def gaps(self) -> list[float]:
        """Seconds between consecutive arrivals."""
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.arrivals.append(time.monotonic())
        await self.record(request)
        behaviour = self.script.popleft() if self.script else self.default
        return await behaviour(request)


def amz_dates(upstream: RecordingUpstream) -> list[str]:
    return [r.headers.get("x-amz-date", "") for r in upstream.received]

