"""Property-based: whatever path, headers and body a caller sends, the answer is either the
upstream's own or a well-formed proxy error in the rest-json shape, never a proxy 5xx for
the caller's input, and never a crash. The proxy runs as `serve` runs it, in a thread of
its own, and is driven over raw sockets so that hypothesis can send what clients refuse to."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from proxy.errors import MESSAGE_PREFIX
from proxy.model.catalog import SERVICE_MOUNTS, Catalog, Operation
from proxy.serve.listener import bind_listener, bound_port, start_listener
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for
from tests.support.recording_upstream import RecordingUpstream

UPSTREAM_BODY = b'{"from": "upstream"}'


@dataclass
class Served:
    port: int
    upstream: RecordingUpstream


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    loop = asyncio.new_event_loop()
    ready: list[Served] = []
    started = threading.Event()
    stop = asyncio.Event()

    async def main() -> None:
        upstream = RecordingUpstream(secret_key=TEST_CREDENTIALS.secret_key, body=UPSTREAM_BODY)
        upstream_runner = web.AppRunner(upstream.app(), access_log=None)
        await upstream_runner.setup()
        site = web.TCPSite(upstream_runner, "127.0.0.1", 0)
        await site.start()
        proxy = proxy_for(f"http://127.0.0.1:{bound_port(upstream_runner)}",
                          {"limits.max_body_bytes": 8192, "limits.header_timeout_seconds": 2.0})
        runner = await start_listener(proxy.data_app, bind_listener("127.0.0.1:0"), proxy.config.limits)
        ready.append(Served(bound_port(runner), upstream))
        started.set()
        await stop.wait()
        await runner.cleanup()
        await upstream_runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30)
    yield ready[0]
    loop.call_soon_threadsafe(stop.set)
    thread.join(10)
    loop.close()


# -- what a caller might send ------------------------------------------------------------

_TCHAR = "!#$&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PATH_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "#?%")
_OPS = sorted({op.name for op in Catalog.load().operations} | {"tags", "createchannel"})
_MOUNTS = ["", *(m.strip("/") for m in SERVICE_MOUNTS.values())]

segment = st.one_of(
    st.sampled_from(_OPS),
    st.text(_PATH_CHARS, max_size=12),
    st.sampled_from(["..", ".", "", "%2F", "%3A", "%zz", "%", "arn%3Aaws%3Aivs%3Aus-west-2%3A123456789012%3Achannel%2FAbCd"]),
)
query = st.sampled_from(["", "", "", "", "?", "?maxResults=2", "?a=%zz&a=1", "?tagKeys=a&tagKeys=b",
                         "?X-Amz-Signature=abc", "?X-Amz-Credential=AKIA%2F20260101%2Fus-west-2%2Fivs%2Faws4_request",
                         "?x-amz-security-token=t&maxResults=2", "?X-Amz-Expires=60"])
random_path = st.builds(
    lambda mount, parts, q: "/" + "/".join(([mount] if mount else []) + parts) + q,
    st.sampled_from(_MOUNTS), st.lists(segment, max_size=3), query,
)
ARN = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"


def _request_line(op: Operation, value: str, q: str) -> tuple[str, str]:
    mount = "" if op.service.name == "ivs" else SERVICE_MOUNTS[op.service.name]
    return op.method, mount + op.render_path(dict.fromkeys(op.uri_members, value)) + q


# Mostly real operations (so that headers and bodies get checked and forwarded), some noise.
operation_line = st.builds(
    _request_line, st.sampled_from(Catalog.load().operations),
    st.sampled_from([ARN, "x", "arn:aws:ivschat:us-west-2:123456789012:room/abc"]) | st.text(max_size=10), query,
)
noise_line = st.tuples(st.sampled_from(["POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"]), random_path)
request_line = st.sampled_from([operation_line] * 3 + [noise_line]).flatmap(lambda chosen: chosen)
header_name = st.one_of(
    st.sampled_from(["Accept", "Accept-Encoding", "Content-Type", "User-Agent", "X-Amz-User-Agent", "amz-sdk-request",
                     "amz-sdk-invocation-id", "X-Amzn-Trace-Id", "Authorization", "X-Amz-Date", "X-Amz-Security-Token",
                     "Cookie", "Forwarded", "X-Forwarded-For", "Content-Encoding", "X-Request-Id", "TE", "Via"]),
    st.text(_TCHAR, min_size=1, max_size=20),
)
# Visible ASCII, spaces and tabs inside, and obs-text bytes (0x80-0xFF) that some clients send.
header_value = st.text(st.characters(codec="latin-1", exclude_categories=("Cc",)) | st.sampled_from(" \t"),
                       max_size=40).map(str.strip)
header_value = st.one_of(
    header_value,
    st.sampled_from(["application/json", "*/*", "gzip", "br", "text/html", "application/json; charset=utf-8",
                     "AWS4-HMAC-SHA256 Credential=x", "attempt=1; max=3", "ttl=20000101T000000Z; attempt=2",
                     "ttl=29991231T235959Z", "identity;q=0", "application/json;q=0"]),
)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "arn", "tags", "latencyMode", "type", "maxResults", "nextToken", "metadata",
                         "recordingConfigurationArn", "x"]) | st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
body = st.sampled_from([
    st.just(b""),
    st.just(b"{}"),
    st.just(b"{}"),
    st.binary(max_size=64),
    json_value.map(lambda v: json.dumps(v).encode()),
    # Past Python's int conversion limit (4300 digits), signed or not, alone or nested.
    st.tuples(st.sampled_from([b'{"name": ', b'{"tags": {"a": -', b'{"x": [']), st.integers(4301, 7000),
              st.sampled_from([b"}", b"}}", b"]}"])).map(lambda t: t[0] + b"7" * t[1] + t[2]),
    st.dictionaries(st.sampled_from(["name", "latencyMode", "type", "authorized"]),
                    st.sampled_from(["a", "LOW", "BASIC", True, 3]), max_size=3).map(lambda d: json.dumps(d).encode()),
]).flatmap(lambda chosen: chosen)


def send(port: int, method: str, target: str, headers: list[tuple[str, str]], payload: bytes) -> http.client.HTTPResponse:
    lines = [f"{method} {target} HTTP/1.1", "Host: proxy", "Connection: close", f"Content-Length: {len(payload)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(raw)
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.body = response.read()  # type: ignore[attr-defined]
    sock.close()
    return response


_FRAMING = {"content-length", "transfer-encoding", "host", "connection", "expect", "upgrade", "keep-alive"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(
    line=request_line,
    json_content=st.sampled_from([True, True, True, False]),
    headers=st.lists(st.tuples(header_name, header_value), max_size=4),
    payload=body,
)
def test_every_answer_is_the_upstreams_or_a_well_formed_proxy_error(
    served: Served, line: tuple[str, str], json_content: bool, headers: list[tuple[str, str]], payload: bytes
) -> None:
    method, target = line
    headers = [(n, v) for n, v in headers if n.lower() not in _FRAMING]
    if json_content:
        headers.insert(0, ("Content-Type", "application/json"))
    before = len(served.upstream.received)
    response = send(served.port, method, target, headers, payload)
    forwarded = len(served.upstream.received) - before
    answer = response.body  # type: ignore[attr-defined]
    refusal = response.getheader("x-ivs-proxy-error")
    event(f"{response.status} {refusal or 'forwarded'}")
    if refusal is None:
        assert (response.status, answer, forwarded) == (200, UPSTREAM_BODY, 1)
        return
    assert forwarded == 0
    assert response.status < 500, (response.status, answer)
    assert response.getheader("x-amzn-ErrorType")
    assert response.getheader("Content-Type", "").startswith("application/json")
    document = json.loads(answer)
    assert document["message"].startswith(MESSAGE_PREFIX)
    assert (document["reason"], document["source"]) == (refusal, "ivs-proxy")


def test_the_process_stays_healthy_after_the_properties(served: Served) -> None:
    # Runs after the property test (file order): the same process still forwards a plain call.
    before = len(served.upstream.received)
    response = send(served.port, "POST", "/ListChannels", [("Content-Type", "application/json")], b"{}")
    assert (response.status, response.body, len(served.upstream.received) - before) == (  # type: ignore[attr-defined]
        200, UPSTREAM_BODY, 1)
