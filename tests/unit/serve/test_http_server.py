"""The data port's HTTP/1.1 server on real loopback sockets, with handlers of the test's own:
the wire behaviour aiohttp's server used to give and clients rely on (the proxy's own
refusals on it are tests/e2e/test_resilience_hostile.py's)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from proxy.serve.http_server import Answer, HttpRequest, HttpServer, StreamingAnswer

HEAD = b"POST /echo HTTP/1.1\r\nHost: proxy\r\nContent-Length: %d\r\n\r\n"


async def echo(request: HttpRequest) -> Answer | StreamingAnswer:
    """Answers with the body it read, and the target in a header."""
    chunks = []
    while chunk := await request.content.readany():
        chunks.append(chunk)
    if request.path == "/stream":
        answer = StreamingAnswer(200, {"X-Target": request.raw_path})
        await answer.prepare(request)
        for part in (b"one ", b"two"):
            await answer.write(part)
        await answer.write_eof()
        return answer
    if request.path == "/fail":
        raise RuntimeError("a bug in a handler")
    if request.method == "HEAD":
        return Answer(200, b"a body HEAD must not send", {"X-Target": request.raw_path})
    return Answer(200, b"".join(chunks), {"X-Target": request.raw_path})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    server = HttpServer(echo, malformed=lambda message: Answer(400, message.encode()), header_timeout=2.0,
                        idle_timeout=0.4)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await server.listen([sock])
    yield sock.getsockname()[1]
    await server.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while (size := int((await reader.readuntil(b"\r\n"))[:-2], 16)) > 0:
            body += await reader.readexactly(size)
            await reader.readexactly(2)
        await reader.readexactly(2)
    else:
        body = await reader.read()
    return status_line.encode(), headers, body


async def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(HEAD.replace(b"/echo", b"/echo?n=%d" % n) % 1 + b"%d" % n for n in range(5)))
    answers = [await read_answer(reader) for _ in range(5)]
    writer.close()
    assert [(a[1]["x-target"], a[2]) for a in answers] == [(f"/echo?n={n}", b"%d" % n) for n in range(5)]
    assert all(a[0] == b"HTTP/1.1 200 OK" and "connection" not in a[1] for a in answers)


async def test_http_1_0_closes_unless_asked_to_keep_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi")
    status, headers, body = await read_answer(reader)
    assert (status, headers["connection"], body) == (b"HTTP/1.0 200 OK", "close", b"hi")
    assert await reader.read() == b""  # closed
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(b"POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi")
        status, headers, body = await read_answer(reader)
        assert (status, headers["connection"], body) == (b"HTTP/1.0 200 OK", "keep-alive", b"hi")
    writer.close()


async def test_expect_100_continue_is_answered_when_the_body_is_first_read(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: proxy\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    async with asyncio.timeout(3):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    assert (await read_answer(reader))[2] == b"hello"
    writer.close()


async def test_a_body_larger_than_the_read_buffer_arrives_whole(port: int) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: reading pauses and resumes on the way
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD % len(body) + body)
    async with asyncio.timeout(10):
        assert (await read_answer(reader))[2] == body
    writer.close()


async def test_a_chunked_request_body_is_decoded(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: proxy\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (await read_answer(reader))[2] == b"abcde"
    writer.close()


async def test_a_streamed_answer_is_chunked_on_1_1_and_ended_by_the_close_on_1_0(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nHost: proxy\r\n\r\n" * 2)  # the connection stays usable
    for _ in range(2):
        _, headers, body = await read_answer(reader)
        assert (headers["transfer-encoding"], body) == ("chunked", b"one two")
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.0\r\n\r\n")
    _, headers, body = await read_answer(reader)
    assert ("transfer-encoding" not in headers, headers["connection"], body) == (True, "close", b"one two")


async def test_head_answers_carry_no_body(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"HEAD /echo HTTP/1.1\r\nHost: proxy\r\n\r\nPOST /echo HTTP/1.1\r\nHost: proxy\r\n"
                 b"Content-Length: 2\r\n\r\nok")
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and b"Content-Length: 25" in head  # the GET answer's length
    assert (await read_answer(reader))[0:3:2] == (b"HTTP/1.1 200 OK", b"ok")  # next, with no body between
    writer.close()


async def test_an_idle_connection_is_closed_after_the_idle_timeout(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD % 2 + b"hi")
    await read_answer(reader)
    async with asyncio.timeout(3):  # idle_timeout 0.4 s, checked every 0.1 s
        assert await reader.read() == b""


async def test_a_failing_handler_closes_its_connection_and_the_server_goes_on(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /fail HTTP/1.1\r\nHost: proxy\r\n\r\n")
    async with asyncio.timeout(3):
        assert await reader.read() == b""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HEAD % 2 + b"ok")
    assert (await read_answer(reader))[2] == b"ok"
    writer.close()


async def test_a_client_that_leaves_mid_body_fails_the_read(port: int) -> None:
    failures: list[BaseException] = []

    async def reads(request: HttpRequest) -> Answer:
        try:
            while await request.content.readany():
                pass
        except ConnectionResetError as exc:
            failures.append(exc)
        return Answer(200)

    server = HttpServer(reads, malformed=lambda m: Answer(400), header_timeout=2.0, idle_timeout=5.0)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await server.listen([sock])
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname())
        writer.write(HEAD % 100 + b"only part")
        await writer.drain()
        writer.close()
        for _ in range(100):
            if failures:
                break
            await asyncio.sleep(0.02)
        assert len(failures) == 1
    finally:
        await server.close()
