"""Prototype for measurement only: a minimal keep-alive HTTP/1.1 client pool on asyncio
Protocols, swapped in for aiohttp's ClientSession inside `proxy.aws.upstream.Upstream`.

It sends exactly the bytes the proxy signed (method, encoded path, headers, body) and
reads Content-Length / chunked answers. It has NO timeouts, retries of stale pooled
connections, or error mapping beyond the basics: it exists to measure how much CPU per
request the aiohttp client costs, not to be shipped. A production version would need
those (see the proposal in the benchmark report).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from multidict import CIMultiDict


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, CIMultiDict[str], bytes]] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("upstream closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.add(name.strip(), value.strip())
        start = end + 4
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            pos = start
            while True:
                nl = self.buffer.find(b"\r\n", pos)
                if nl < 0:
                    return
                size = int(bytes(self.buffer[pos:nl]).split(b";")[0], 16)
                if len(self.buffer) < nl + 2 + size + 2:
                    return
                body += self.buffer[nl + 2:nl + 2 + size]
                pos = nl + 2 + size + 2
                if size == 0:
                    break
            del self.buffer[:pos]
            self.waiter.set_result((status, headers, bytes(body)))
            return
        length = int(headers.get("Content-Length", "0"))
        if len(self.buffer) < start + length:
            return
        body_bytes = bytes(self.buffer[start:start + length])
        del self.buffer[:start + length]
        self.waiter.set_result((status, headers, body_bytes))


class LeanPool:
    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.idle: dict[tuple[str, str, int], deque[_Conn]] = {}

    async def request(self, method: str, url: str, headers: Any, body: bytes) -> tuple[int, CIMultiDict[str], bytes]:
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        pool = self.idle.setdefault(key, deque())
        conn = None
        while pool:
            candidate = pool.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            loop = asyncio.get_running_loop()
            _, conn = await loop.create_connection(
                _Conn, key[1], key[2], ssl=self.context if key[0] == "https" else None,
                server_hostname=key[1] if key[0] == "https" else None)
        target = parts.path + ("?" + parts.query if parts.query else "")
        head = [f"{method} {target} HTTP/1.1"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        conn.waiter = asyncio.get_running_loop().create_future()
        assert conn.transport is not None
        conn.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        result = await conn.waiter
        conn.waiter = None
        if result[1].get("Connection", "").lower() != "close":
            pool.append(conn)
        return result


def install(forward: Any) -> None:
    """Replace Upstream.start/send with the lean pool (same UpstreamResponse out)."""
    original_start = forward.Upstream.start

    async def start(self) -> None:  # type: ignore[no-untyped-def]
        await original_start(self)  # keep the aiohttp session for close(); unused on the hot path
        self._lean = LeanPool(forward.ssl_context(self._ca_bundle))

    async def send(self, method: str, url: str, headers: Any, body: bytes, **_: Any) -> Any:  # type: ignore[no-untyped-def]
        # **_: newer Upstream.send signatures add options (e.g. a per-attempt timeout) the
        # prototype does not implement.
        status, response_headers, payload = await self._lean.request(method, url, headers, body)
        return forward.UpstreamResponse(status, forward._returned(response_headers), payload)

    forward.Upstream.start = start
    forward.Upstream.send = send
