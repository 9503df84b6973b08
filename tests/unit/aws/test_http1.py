"""The hot path's HTTP/1.1 client against real loopback servers that answer scripted bytes."""

from __future__ import annotations

import asyncio
import collections
import gc
import ssl
from collections.abc import AsyncIterator, Callable

import pytest
import trustme

from proxy.aws.http1 import (
    ConnectFailed,
    ConnectionBroken,
    ConnectionPool,
    MalformedResponse,
    split_url,
)

Answer = Callable[[bytes], bytes]


class ScriptedServer:
    """Reads each request (head + Content-Length body) and writes what `answer` returns for it;
    an answer ending in `CLOSE` closes the connection after it."""

    CLOSE = b"<close>"

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                out = self.answer(request)
                close = out.endswith(self.CLOSE)
                writer.write(out.removesuffix(self.CLOSE))
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def fixed(data: bytes) -> Answer:
    return lambda _: data


OK_204 = b"HTTP/1.1 204 No Content\r\nx-amzn-RequestId: r1\r\n\r\n"


def ok_json(body: bytes = b'{"ok":true}') -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@pytest.fixture
async def pool() -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(limit=4, ssl_context=ssl.create_default_context(), connect_timeout=2, read_timeout=2)
    yield pool
    await pool.close()


async def serve(answer: Answer) -> tuple[ScriptedServer, str]:
    server = ScriptedServer(answer)
    port = await server.start()
    return server, f"http://127.0.0.1:{port}"


async def test_sends_exactly_the_request_it_is_given_and_reuses_the_connection(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(ok_json()))
    try:
        for _ in range(3):
            response = await pool.request("POST", f"{origin}/a%2Fb?x=%3A", {"host": "example", "x-amz-date": "d"},
                                          b"{}")
            assert (response.status, response.headers["content-type"], await response.read()) == (
                200, "application/json", b'{"ok":true}')
        assert server.connections == 1
        assert server.requests[0] == (b"POST /a%2Fb?x=%3A HTTP/1.1\r\nhost: example\r\nx-amz-date: d\r\n"
                                      b"Content-Length: 2\r\n\r\n{}")
    finally:
        await server.stop()


async def test_a_get_without_body_carries_no_content_length_and_gets_a_host(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(OK_204))
    try:
        response = await pool.request("GET", f"{origin}/", {}, b"")
        assert response.status == 204 and await response.read() == b""
        assert server.requests[0] == f"GET / HTTP/1.1\r\nHost: {origin.removeprefix('http://')}\r\n\r\n".encode()
    finally:
        await server.stop()


async def test_chunked_answers_are_joined(pool: ConnectionPool) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    server, origin = await serve(fixed(answer))
    try:
        for _ in range(2):
            response = await pool.request("POST", f"{origin}/", {}, b"")
            assert response.content_length is None
            chunks = []
            while chunk := await response.next_chunk():
                chunks.append(chunk)
            assert b"".join(chunks) == b"abcde"
        assert server.connections == 1
    finally:
        await server.stop()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",  # both framings
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",  # two lengths
    b"HTTP/1.1 two hundred OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
])
async def test_ambiguous_or_broken_framing_is_refused(pool: ConnectionPool, answer: bytes) -> None:
    server, origin = await serve(fixed(answer))
    try:
        with pytest.raises(MalformedResponse):
            response = await pool.request("POST", f"{origin}/", {}, b"")
            await response.read()
    finally:
        await server.stop()


async def test_a_truncated_answer_is_a_broken_connection_and_is_not_reused(pool: ConnectionPool) -> None:
    answers = collections.deque([b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort" + ScriptedServer.CLOSE,
                                 ok_json()])
    server, origin = await serve(lambda _: answers.popleft())
    try:
        response = await pool.request("POST", f"{origin}/", {}, b"")
        with pytest.raises(ConnectionBroken):
            await response.read()
        response = await pool.request("POST", f"{origin}/", {}, b"")
        assert await response.read() == b'{"ok":true}'
        assert server.connections == 2
    finally:
        await server.stop()


async def test_a_connection_the_server_closed_is_evicted(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(ok_json() + ScriptedServer.CLOSE))
    try:
        for _ in range(3):
            response = await pool.request("POST", f"{origin}/", {}, b"")
            assert await response.read() == b'{"ok":true}'
            await asyncio.sleep(0.05)  # the close reaches the pool before the next request
        assert server.connections == 3
    finally:
        await server.stop()


async def test_connection_close_and_eof_framed_answers_are_read_to_the_end(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof" + ScriptedServer.CLOSE))
    try:
        for _ in range(2):
            response = await pool.request("POST", f"{origin}/", {}, b"")
            chunks = []
            while chunk := await response.next_chunk():
                chunks.append(chunk)
            assert b"".join(chunks) == b"until eof"
        assert server.connections == 2
    finally:
        await server.stop()


async def test_bytes_nobody_asked_for_evict_the_connection(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(ok_json() + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    try:
        for _ in range(2):
            response = await pool.request("POST", f"{origin}/", {}, b"")
            assert await response.read() == b'{"ok":true}'
            await asyncio.sleep(0.05)
        assert server.connections == 2
    finally:
        await server.stop()


async def test_an_answer_not_read_to_its_end_does_not_go_back_to_the_pool(pool: ConnectionPool) -> None:
    body = b"x" * 300_000
    server, origin = await serve(fixed(ok_json(body)))
    try:
        response = await pool.request("POST", f"{origin}/", {}, b"")
        assert await response.next_chunk()
        response.close()
        response = await pool.request("POST", f"{origin}/", {}, b"")
        received = b""
        while chunk := await response.next_chunk():
            received += chunk
        assert received == body
        assert server.connections == 2
    finally:
        await server.stop()


async def test_the_pool_is_bounded_and_a_request_waits_for_a_free_connection() -> None:
    server, origin = await serve(fixed(ok_json()))
    pool = ConnectionPool(limit=1, ssl_context=ssl.create_default_context(), connect_timeout=2, read_timeout=2)
    try:
        first = await pool.request("POST", f"{origin}/", {}, b"")
        second = asyncio.create_task(pool.request("POST", f"{origin}/", {}, b""))
        await asyncio.sleep(0.05)
        assert not second.done()  # the only connection is busy until the first answer is read
        assert await first.read() == b'{"ok":true}'
        assert await (await second).read() == b'{"ok":true}'
        assert server.connections == 1
    finally:
        await pool.close()
        await server.stop()


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    server, origin = await serve(fixed(ok_json()))
    pool = ConnectionPool(limit=4, ssl_context=ssl.create_default_context(), connect_timeout=2, read_timeout=2,
                          idle_timeout=0.05)
    try:
        response = await pool.request("POST", f"{origin}/", {}, b"")
        await response.read()
        await asyncio.sleep(0.2)
        response = await pool.request("POST", f"{origin}/", {}, b"")
        await response.read()
        assert server.connections == 2
    finally:
        await pool.close()
        await server.stop()


async def test_silence_is_a_read_timeout() -> None:
    server, origin = await serve(fixed(b""))
    pool = ConnectionPool(limit=4, ssl_context=ssl.create_default_context(), connect_timeout=2, read_timeout=0.1)
    try:
        with pytest.raises(TimeoutError):
            await pool.request("POST", f"{origin}/", {}, b"")
    finally:
        await pool.close()
        await server.stop()


async def test_a_refused_connection_is_a_connect_failure(pool: ConnectionPool) -> None:
    server, origin = await serve(fixed(OK_204))
    await server.stop()
    with pytest.raises(ConnectFailed):
        await pool.request("POST", f"{origin}/", {}, b"")


async def tls_server(ca: trustme.CA, name: str = "127.0.0.1") -> tuple[ScriptedServer, int]:
    """A server answering {"ok": true} over TLS with a certificate of `ca` for `name`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    server = ScriptedServer(fixed(ok_json()))
    return server, await server.start(context)


def ca_bundle(ca: trustme.CA, tmp_path) -> str:  # type: ignore[no-untyped-def]
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    return str(bundle)


async def test_tls_is_verified_against_the_bundle_and_the_host_name(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    server, port = await tls_server(ca)
    misnamed, misnamed_port = await tls_server(ca, "ivs.example")
    bundle = ca_bundle(ca, tmp_path)
    trusted = ConnectionPool(limit=2, ssl_context=ssl.create_default_context(cafile=bundle),
                             connect_timeout=2, read_timeout=2)
    untrusted = ConnectionPool(limit=2, ssl_context=ssl.create_default_context(), connect_timeout=2, read_timeout=2)
    try:
        response = await trusted.request("POST", f"https://127.0.0.1:{port}/", {}, b"")
        assert await response.read() == b'{"ok":true}'
        with pytest.raises(ssl.SSLCertVerificationError):
            await untrusted.request("POST", f"https://127.0.0.1:{port}/", {}, b"")
        with pytest.raises(ssl.SSLCertVerificationError):  # a trusted certificate for another name
            await trusted.request("POST", f"https://127.0.0.1:{misnamed_port}/", {}, b"")
    finally:
        await trusted.close()
        await untrusted.close()
        await server.stop()
        await misnamed.stop()


def _client_tls_objects() -> int:
    return sum(1 for obj in gc.get_objects() if isinstance(obj, ssl.SSLObject) and not obj.server_side)


async def test_a_closed_tls_connection_frees_its_tls_state_without_the_collector(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # asyncio keeps a 256 KiB read buffer per TLS connection: a pool that reopened connections
    # held one for every connection it had closed until the cyclic collector ran (benchmarks/
    # results.md, Memory).
    ca = trustme.CA()
    server, port = await tls_server(ca)
    pool = ConnectionPool(limit=4, ssl_context=ssl.create_default_context(cafile=ca_bundle(ca, tmp_path)),
                          connect_timeout=2, read_timeout=2, idle_timeout=0.05)
    gc.collect()
    gc.disable()
    try:
        before = _client_tls_objects()
        response = await pool.request("POST", f"https://127.0.0.1:{port}/", {}, b"")
        assert await response.read() == b'{"ok":true}'
        assert _client_tls_objects() == before + 1
        await asyncio.sleep(0.3)  # past the idle timeout: the pool closes the connection
        assert _client_tls_objects() == before
    finally:
        gc.enable()
        await pool.close()
        await server.stop()


def test_urls_split_without_decoding() -> None:
    assert split_url("https://ivs.us-west-2.amazonaws.com/a%2Fb?c=%3A") == (
        ("https", "ivs.us-west-2.amazonaws.com", 443), "ivs.us-west-2.amazonaws.com", "/a%2Fb?c=%3A")
    assert split_url("http://[::1]:8080") == (("http", "::1", 8080), "[::1]:8080", "/")
    with pytest.raises(ValueError):
        split_url("ftp://example/")


@pytest.mark.parametrize("headers", [{"x-a": "one\r\nx-b: two"}, {"x-a\n": "one"}, {"x-a": "one\rtwo"}])
async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(pool: ConnectionPool,
                                                                          headers: dict[str, str]) -> None:
    server, origin = await serve(fixed(OK_204))
    try:
        with pytest.raises(ValueError):
            await pool.request("POST", f"{origin}/", headers, b"")
        assert server.connections == 0
    finally:
        await server.stop()
