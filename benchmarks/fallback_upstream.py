"""Bundled fallback TLS upstream, used when nginx is not installed.

A minimal HTTP/1.1 keep-alive server on asyncio (stdlib only) that answers the benchmark's
three IVS operations with the same canned bytes nginx serves. It is slower than nginx
(one Python process on the upstream core), so "direct" figures from it are a lower bound
of what a real upstream does; the proxy's *added* latency is still measured against it in
the same run. Usage:

    python fallback_upstream.py --port P --cert server.pem --key server.pem --docroot DIR
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from pathlib import Path
from typing import ClassVar

REQUEST_ID = b"8c5bd0b2-6f7e-4c1a-9d3e-2b7f0a1c9e44"


def _response(status: bytes, body: bytes, content_type: bool = True) -> bytes:
    head = [b"HTTP/1.1 " + status, b"Server: bench-fallback", b"Connection: keep-alive"]
    if content_type:
        head.append(b"Content-Type: application/json")
    head.append(b"Content-Length: " + str(len(body)).encode())
    head.append(b"x-amzn-RequestId: " + REQUEST_ID)
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class Upstream(asyncio.Protocol):
    routes: ClassVar[dict[bytes, bytes]] = {}
    not_found = _response(b"404 Not Found", b'{"message":"benchmark upstream: unknown path"}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].split(b"\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            parts = head[0].split(b" ")
            path = parts[1] if len(parts) > 1 else b"/"
            self.transport.write(self.routes.get(path, self.not_found))  # type: ignore[attr-defined]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--docroot", required=True)
    args = parser.parse_args()
    docroot = Path(args.docroot)
    Upstream.routes = {
        b"/PutMetadata": _response(b"204 No Content", b"", content_type=False),
        b"/CreateChannel": _response(b"200 OK", (docroot / "CreateChannel.json").read_bytes()),
        b"/ListChannels": _response(b"200 OK", (docroot / "ListChannels.json").read_bytes()),
    }
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", args.port, ssl=context, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
