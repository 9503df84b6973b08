"""Hostile HTTP on raw sockets, against the listener exactly as `serve` runs it: requests
whose framing or headers could be read two ways, oversized heads, and clients that send
too slowly. Each is refused (or the connection closed), and nothing reaches the upstream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from proxy.app import Proxy
from proxy.serve.listener import bind_listener, bound_port, start_listener
from tests.support.inprocess import proxy_for
from tests.support.recording_upstream import RecordingUpstream

LIMITS = {"limits.header_timeout_seconds": 0.3, "limits.body_timeout_seconds": 0.3,
          "limits.idle_timeout_seconds": 0.5}
OK = b"POST /ListChannels HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def request(*headers: bytes, body: bytes = b"{}", line: bytes = b"POST /ListChannels HTTP/1.1") -> bytes:
    return line + b"\r\n" + b"".join(h + b"\r\n" for h in (b"Host: proxy", b"Content-Type: application/json",
                                                            *headers)) + b"\r\n" + body


CHUNKED = b"2\r\n{}\r\n0\r\n\r\n"
HOSTILE = {
    "content-length and transfer-encoding": request(b"Content-Length: 2", b"Transfer-Encoding: chunked", body=CHUNKED),
    "transfer-encoding xchunked": request(b"Transfer-Encoding: xchunked", body=CHUNKED),
    "transfer-encoding chunked, identity": request(b"Transfer-Encoding: chunked, identity", body=CHUNKED),
    "transfer-encoding identity, chunked": request(b"Transfer-Encoding: identity, chunked", body=CHUNKED),
    "transfer-encoding twice": request(b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=CHUNKED),
    "transfer-encoding with a space before the colon": request(b"Transfer-Encoding : chunked", body=CHUNKED),
    "transfer-encoding with a vertical tab": request(b"Transfer-Encoding: \x0bchunked", body=CHUNKED),
    "transfer-encoding folded": request(b"Transfer-Encoding:", b" chunked", body=CHUNKED),
    "transfer-encoding on HTTP/1.0": request(b"Transfer-Encoding: chunked", body=CHUNKED,
                                             line=b"POST /ListChannels HTTP/1.0"),
    "two different content-lengths": request(b"Content-Length: 2", b"Content-Length: 3", body=b"{} "),
    "content-length list": request(b"Content-Length: 2, 2"),
    "content-length with a sign": request(b"Content-Length: +2"),
    "duplicate host": request(b"Host: evil.example", b"Content-Length: 2"),
    "missing host": b"POST /ListChannels HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "header injection with a bare CR": request(b"X-Amzn-Trace-Id: a\rAuthorization: x", b"Content-Length: 2"),
    "NUL in a header value": request(b"User-Agent: a\x00b", b"Content-Length: 2"),
    "space in a header name": request(b"User Agent: a", b"Content-Length: 2"),
    "obsolete line folding": request(b"User-Agent: a", b" b", b"Content-Length: 2"),
    "bare LF line ends": OK.replace(b"\r\n", b"\n"),
    "oversized header": request(b"User-Agent: " + b"a" * 9000, b"Content-Length: 2"),
    "too many headers": request(*(b"X-Filler-%d: a" % i for i in range(200)), b"Content-Length: 2"),
    "oversized request line": request(b"Content-Length: 2", line=b"POST /" + b"a" * 9000 + b" HTTP/1.1"),
    "HTTP/0.9": b"POST /ListChannels\r\n\r\n",
    "HTTP/1.2": request(b"Content-Length: 2", line=b"POST /ListChannels HTTP/1.2"),
    "absolute-form target": request(b"Content-Length: 2", line=b"POST http://evil.example/ListChannels HTTP/1.1"),
    "chunk size overflow": request(b"Transfer-Encoding: chunked", body=b"FFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n"),
}

GENERIC = "the request is not well-formed HTTP/1.1"
TRANSFER_ENCODING = "Transfer-Encoding must be exactly `chunked`"
#: The rule each refusal names (both aiohttp parsers: the C one, and AIOHTTP_NO_EXTENSIONS).
RULE = {
    "content-length and transfer-encoding": "both Content-Length and Transfer-Encoding",
    "transfer-encoding xchunked": TRANSFER_ENCODING,
    "transfer-encoding chunked, identity": TRANSFER_ENCODING,
    "transfer-encoding identity, chunked": TRANSFER_ENCODING,
    "transfer-encoding twice": TRANSFER_ENCODING,
    "transfer-encoding with a space before the colon": "",  # the parsers differ; either is right
    "transfer-encoding with a vertical tab": GENERIC,
    "transfer-encoding folded": GENERIC,
    "transfer-encoding on HTTP/1.0": TRANSFER_ENCODING,
    "two different content-lengths": "Content-Length",
    "content-length list": "Content-Length",
    "content-length with a sign": "Content-Length",
    "duplicate host": "the Host header is given more than once",
    "missing host": "the Host header is missing",
    "header injection with a bare CR": GENERIC,
    "NUL in a header value": GENERIC,
    "space in a header name": GENERIC,
    "obsolete line folding": GENERIC,
    "bare LF line ends": GENERIC,
    "oversized header": "a header field is longer than 8190 bytes",
    "too many headers": "more than 128 header fields",
    "oversized request line": "the request line (method, target and version) is longer than 8190 bytes",
    "HTTP/0.9": "",  # the C parser: HTTP/0.9 is not supported; the pure-Python one: not HTTP/1.1
    "HTTP/1.2": "",  # the C parser: not HTTP/1.1; the pure-Python one: HTTP/1.2 is not supported
    "absolute-form target": "the request target must be a path (origin-form), not a URL",
    "chunk size overflow": "",  # the C parser: a chunk size is malformed; the pure-Python one: 408
}


@pytest.fixture
async def served(recording) -> AsyncIterator[tuple[Proxy, int]]:  # type: ignore[no-untyped-def]
    _, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), LIMITS)
    rejected = proxy.state.metrics.rejected
    runner = await start_listener(proxy.data_app, bind_listener("127.0.0.1:0"), proxy.config.limits,
                                  on_refused=lambda reason: rejected.labels(reason).inc())
    yield proxy, bound_port(runner)
    await runner.cleanup()


async def exchange(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    """Send `data`, read until the proxy closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()  # to EOF: a refusal closes the connection
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def rejected(proxy: Proxy, reason: str) -> float:
    return proxy.state.metrics.registry.get_sample_value("ivs_proxy_rejected_total", {"reason": reason}) or 0.0


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_requests_are_refused_and_never_forwarded(served, upstream: RecordingUpstream, name: str) -> None:  # type: ignore[no-untyped-def]
    _, port = served
    status, headers, body = parse(await exchange(port, HOSTILE[name]))
    # 400; aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS) waits out a bad chunk size: 408
    assert status in (400, 408), name
    assert headers["x-amzn-errortype"] in ("BadRequestException", "ValidationException", "RequestTimeoutException")
    message = json.loads(body)["message"]
    assert message.startswith("ivs-proxy refused the request: ")
    assert RULE[name] in message, message
    assert b"evil" not in body and b"aaaa" not in body and b"Filler" not in body and b"\x00" not in body  # nothing of the request is echoed
    assert upstream.received == []


def test_every_hostile_request_names_its_rule() -> None:
    assert sorted(RULE) == sorted(HOSTILE)


@pytest.mark.parametrize(("line", "status", "error_type", "says"), [
    (b"CONNECT evil.example:443 HTTP/1.1", 405, "MethodNotAllowedException", "CONNECT is not supported"),
    (b"OPTIONS * HTTP/1.1", 400, "ValidationException", "the request target `*` (asterisk-form"),
])
async def test_targets_that_are_not_paths_are_refused_in_the_proxys_shape(  # type: ignore[no-untyped-def]
        served, upstream: RecordingUpstream, line: bytes, status: int, error_type: str, says: str) -> None:
    _, port = served
    got, headers, body = parse(await exchange(port, line + b"\r\nHost: proxy\r\nConnection: close\r\n\r\n"))
    assert (got, headers["x-amzn-errortype"]) == (status, error_type)
    answer = json.loads(body)
    assert answer["source"] == "ivs-proxy" and says in answer["message"]
    assert b"evil" not in body
    assert upstream.received == []


async def test_the_well_formed_control_is_forwarded(served, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    _, port = served
    status, _, _ = parse(await exchange(port, OK.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n")))
    assert status == 200
    assert len(upstream.received) == 1


async def test_a_slow_head_is_cut_off_after_the_header_timeout(served, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    proxy, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /ListChannels HTTP/1.1\r\nHost: proxy\r\n")
    closed = asyncio.ensure_future(reader.read())  # completes when the proxy closes the connection
    for i in range(30):  # a header line every 0.1 s: never idle, never done; 3 s if left alone
        done, _ = await asyncio.wait({closed}, timeout=0.1)
        if done:
            break
        writer.write(b"X-Slow-%d: a\r\n" % i)
    assert closed.done() and closed.result() == b""  # closed, with nothing to say
    writer.close()
    assert i < 25  # the 0.3 s header timeout, not the client, ended it
    assert upstream.received == []
    assert rejected(proxy, "head_timeout") == 1


async def test_a_head_that_arrives_in_pieces_within_the_timeout_is_fine(served, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for piece in (OK[:20], OK[20:50], OK[50:]):
        writer.write(piece)
        await asyncio.sleep(0.05)
    status_line = await asyncio.wait_for(reader.readline(), 3)
    assert status_line.startswith(b"HTTP/1.1 200")
    writer.close()
    assert len(upstream.received) == 1


async def test_idle_connections_are_closed(served) -> None:  # type: ignore[no-untyped-def]
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(OK)  # one request, then silence on a keep-alive connection
    async with asyncio.timeout(3):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        await reader.read()  # returns at EOF: the proxy closed the idle connection
    writer.close()


async def test_a_slow_body_gets_408(served, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    proxy, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(b"Content-Length: 100", body=b'{"name": '))
    async with asyncio.timeout(3):
        raw = await reader.read()
    writer.close()
    status, headers, body = parse(raw)
    assert status == 408 and headers["x-amzn-errortype"] == "RequestTimeoutException"
    assert json.loads(body)["reason"] == "client_timeout"
    assert upstream.received == []
    assert rejected(proxy, "client_timeout") == 1


@pytest.fixture
async def paced(recording) -> AsyncIterator[tuple[Proxy, int]]:  # type: ignore[no-untyped-def]
    _, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {
        "limits.body_timeout_seconds": 5.0, "limits.body_grace_seconds": 1.5,
        "limits.body_min_rate_bytes_per_second": 100, "limits.max_body_reads": 1,
    })
    runner = await start_listener(proxy.data_app, bind_listener("127.0.0.1:0"), proxy.config.limits)
    yield proxy, bound_port(runner)
    await runner.cleanup()


async def trickle(writer: asyncio.StreamWriter, pieces: int) -> None:
    for _ in range(pieces):
        await asyncio.sleep(0.1)
        writer.write(b" ")
        await writer.drain()


async def test_a_trickling_body_is_cut_by_the_minimum_rate_after_the_grace(paced, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    proxy, port = paced
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request(b"Content-Length: 1000", body=b""))
    sending = asyncio.ensure_future(trickle(writer, 40))
    async with asyncio.timeout(4):  # well before the 5 s body timeout
        raw = await reader.read()
    sending.cancel()
    writer.close()
    status, _, body = parse(raw)
    assert status == 408 and json.loads(body)["reason"] == "slow_body"
    assert "100 bytes/s" in json.loads(body)["message"]
    registry = proxy.state.metrics.registry
    assert registry.get_sample_value("ivs_proxy_slow_bodies_cut_total", {"rule": "min_rate"}) == 1
    assert registry.get_sample_value("ivs_proxy_slots_held", {"phase": "body_read"}) == 0
    assert proxy.state.body_reads.active == 0
    assert upstream.received == []


async def test_a_body_that_keeps_the_rate_is_forwarded(paced, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    _, port = paced
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b"{}" + b" " * 98  # 100 bytes at about 10 bytes every 0.1 s: the minimum rate
    writer.write(request(b"Content-Length: 100", b"Connection: close", body=b""))
    for i in range(0, 100, 20):
        await asyncio.sleep(0.1)
        writer.write(body[i:i + 20])
    async with asyncio.timeout(4):
        raw = await reader.read()
    writer.close()
    assert parse(raw)[0] == 200
    assert len(upstream.received) == 1


async def test_past_max_body_reads_a_slow_body_gets_503_and_its_connection_closed(paced, upstream: RecordingUpstream) -> None:  # type: ignore[no-untyped-def]
    proxy, port = paced
    _, first = await asyncio.open_connection("127.0.0.1", port)
    first.write(request(b"Content-Length: 1000", body=b""))
    await asyncio.sleep(0.55)  # past the uncounted half second: it holds the one body-read slot
    assert proxy.state.body_reads.active == 1
    raw = await exchange(port, request(b"Content-Length: 1000", body=b""))
    status, headers, body = parse(raw)
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["reason"] == "body_reads_full"
    # An ordinary call, whose body follows its headers at once, needs no body-read slot.
    ok = await exchange(port, OK.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n"))
    assert parse(ok)[0] == 200
    first.close()
    assert rejected(proxy, "body_reads_full") == 1
    assert len(upstream.received) == 1


async def test_one_client_address_cannot_take_more_than_its_share_of_body_reads(recording) -> None:  # type: ignore[no-untyped-def]
    _, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {
        "limits.body_grace_seconds": 3.0, "limits.max_body_reads": 4, "limits.max_share_per_caller": 0.5,
    })
    runner = await start_listener(proxy.data_app, bind_listener("127.0.0.1:0"), proxy.config.limits)
    port = bound_port(runner)
    writers = []
    try:
        for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):
            _, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            writer.write(request(b"Content-Length: 1000", body=b""))
            writers.append(writer)
        await asyncio.sleep(0.7)  # past the uncounted half second: all three hold a body-read slot
        assert proxy.state.body_reads.active == 3
        # 127.0.0.1 holds its share (2 of 4); a third slow body from it is refused...
        raw = await exchange(port, request(b"Content-Length: 1000", body=b""))
        status, headers, body = parse(raw)
        assert status == 503 and headers["retry-after"] == "1"
        assert json.loads(body)["reason"] == "caller_share"
        assert rejected(proxy, "caller_share") == 1
        # ...while another address still gets the slot that is left.
        _, other = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        other.write(request(b"Content-Length: 1000", body=b""))
        writers.append(other)
        await asyncio.sleep(0.7)
        assert proxy.state.body_reads.active == 4
    finally:
        for writer in writers:
            writer.close()
        await runner.cleanup()
    assert proxy.state.body_reads.active == 0


async def test_malformed_requests_are_counted(served) -> None:  # type: ignore[no-untyped-def]
    proxy, port = served
    await exchange(port, HOSTILE["content-length and transfer-encoding"])
    await exchange(port, HOSTILE["oversized header"])
    assert rejected(proxy, "malformed_http") == 2
