"""Hostile and mistaken requests: each gets its documented 4xx and nothing reaches upstream."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from aiohttp.test_utils import TestClient

from tests.support.inprocess import proxy_for
from tests.support.recording_upstream import RecordingUpstream

JSON_HEADERS = {"Content-Type": "application/json"}
CHANNEL_ARN = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"


async def assert_refused(response, status: int, error_type: str, *fragments: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status == status
    assert response.headers["x-amzn-ErrorType"] == error_type
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert body["message"].startswith("ivs-proxy refused the request: ")
    for fragment in fragments:
        assert fragment in body["message"]
    return body


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type", "hint"),
    [
        ("POST", "/createchannel", 404, "UnknownOperationException", "did you mean /CreateChannel"),
        ("POST", "/CREATECHANNEL", 404, "UnknownOperationException", "did you mean /CreateChannel"),
        ("POST", "/CreateStage", 404, "UnknownOperationException", "/ivs-realtime/CreateStage"),
        ("GET", "/CreateChannel", 405, "MethodNotAllowedException", "use POST"),
        ("PUT", "/tags/arn%3Aaws%3Aivs%3Aus-west-2%3A1%3Achannel%2Fa", 405, "MethodNotAllowedException", "DELETE, GET, POST"),
        ("GET", "/tags/arn:aws:ivs:us-west-2:123456789012:channel/abc", 404, "UnknownOperationException", "percent-encoded"),
        ("POST", "/ivschat/CreateChannel", 404, "UnknownOperationException", "/ivs/CreateChannel"),
    ],
)
async def test_wrong_paths_and_methods(
    proxy_client: TestClient, upstream: RecordingUpstream, method: str, path: str, status: int, error_type: str, hint: str
) -> None:
    response = await proxy_client.request(method, path, data=b"{}", headers=JSON_HEADERS)
    await assert_refused(response, status, error_type, hint)
    assert upstream.received == []


async def test_method_not_allowed_lists_the_allowed_methods(proxy_client: TestClient) -> None:
    response = await proxy_client.get("/CreateChannel")
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "JSON object"),
        (b'"text"', 400, "JSON object"),
        (b'{"name": "a", "name": "b"}', 400, "repeats the member"),
        (b'{"name": NaN}', 400, "NaN"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b"\xef\xbb\xbf{}", 400, "byte order mark"),
        (b"[" * 100000 + b"]" * 100000, 400, ""),
        (b'{"Name": "abc"}', 400, "did you mean `name`"),
        (b'{"latencyMode": "FAST"}', 400, "latencyMode"),
        # Past Python's int conversion limit: a 500 and a traceback, once.
        (b'{"name": ' + b"1" * 5000 + b"}", 400, "5000 digits"),
        (b'{"tags": {"a": [-' + b"9" * 4500 + b"]}}", 400, "4500 digits"),
        (b'{"insecureIngest": 1e999999}', 400, "insecureIngest"),
        (b'{"name": "' + b"\\u0000" * 3000 + b'"}', 400, "name"),
    ],
)
async def test_bad_bodies(
    proxy_client: TestClient, upstream: RecordingUpstream, body: bytes, status: int, fragment: str
) -> None:
    response = await proxy_client.post("/CreateChannel", data=body, headers=JSON_HEADERS)
    refusal = await assert_refused(response, status, "ValidationException", fragment)
    assert len(refusal["message"]) < 400, "a refusal quotes only a short prefix of what it refuses"
    assert upstream.received == []


async def test_oversize_body_is_413(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    body = json.dumps({"arn": CHANNEL_ARN, "metadata": "x" * (1024 * 1024 + 1)}).encode()
    response = await proxy_client.post("/PutMetadata", data=body, headers=JSON_HEADERS)
    await assert_refused(response, 413, "RequestEntityTooLargeException", "limit")

    async def chunks():  # no Content-Length: the limit must hold while streaming too
        for _ in range(20):
            yield b"x" * 65536

    response = await proxy_client.post("/PutMetadata", data=chunks(), headers=JSON_HEADERS)
    await assert_refused(response, 413, "RequestEntityTooLargeException")
    assert upstream.received == []


@pytest.mark.parametrize(
    ("headers", "status", "error_type", "fragment"),
    [
        ({"Authorization": "AWS4-HMAC-SHA256 Credential=AKIA/x"}, 400, "UnexpectedCredentialsException", "Authorization"),
        ({"X-Amz-Date": "20260101T000000Z"}, 400, "UnexpectedCredentialsException", "X-Amz-Date"),
        ({"X-Amz-Security-Token": "tok"}, 400, "UnexpectedCredentialsException", "X-Amz-Security-Token"),
        ({"X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}, 400, "UnexpectedCredentialsException", ""),
        ({"X-Amz-Target": "Foo"}, 400, "UnexpectedCredentialsException", "X-Amz-Target"),
        ({"Accept": "text/html"}, 406, "InvalidHeaderException", "application/json"),
        ({"Accept-Encoding": "br, identity;q=0"}, 406, "InvalidHeaderException", "gzip, deflate or identity"),
        ({"Content-Type": "text/plain"}, 415, "InvalidHeaderException", "application/json"),
        ({"Content-Type": "application/x-amz-json-1.1"}, 415, "InvalidHeaderException", ""),
        ({"Content-Encoding": "gzip"}, 415, "InvalidHeaderException", "Content-Encoding"),
    ],
)
async def test_forbidden_headers(
    proxy_client: TestClient, upstream: RecordingUpstream, headers: dict[str, str], status: int, error_type: str, fragment: str
) -> None:
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, **headers})
    await assert_refused(response, status, error_type, fragment)
    assert upstream.received == []


async def test_routing_headers_cannot_steer_the_upstream(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    steering = {
        "Host": "evil.example.com",
        "X-Forwarded-Host": "evil.example.com",
        "Forwarded": "host=evil.example.com",
        "X-Forwarded-For": "10.0.0.1",
        "Cookie": "session=1",
        "X-Custom": "dropped",
    }
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, **steering})
    assert response.status == 200
    (received,) = upstream.received
    assert received.headers["host"] == f"127.0.0.1:{upstream_port(proxy_client, upstream)}"
    for name in ("x-forwarded-host", "forwarded", "x-forwarded-for", "cookie", "x-custom"):
        assert name not in received.headers
    assert received.signature_valid


def upstream_port(client: TestClient, upstream: RecordingUpstream) -> str:
    return upstream.received[0].headers["host"].rsplit(":", 1)[1]


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("http://evil.example.com/ListChannels", b"400"),  # absolute-form names a host
        ("/ivs/../ListChannels", b"404"),  # no dot-segment normalisation: exact paths only
        ("//ListChannels", b"404"),
        ("/ivs/./ListChannels", b"404"),
        ("/ListChannels%2F", b"404"),
    ],
)
async def test_raw_request_targets_are_matched_exactly(
    proxy_client: TestClient, upstream: RecordingUpstream, target: str, status: bytes
) -> None:
    # Raw sockets: an HTTP client library would normalise these targets before sending.
    host, port = proxy_client.server.host, proxy_client.server.port
    raw = (
        f"POST {target} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    ).encode()
    reply = await _raw_exchange(host, port, raw)
    assert reply.startswith(b"HTTP/1.1 " + status), reply[:100]
    assert b"x-amzn-ErrorType: " in reply
    assert upstream.received == []


async def _raw_exchange(host: str, port: int, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(payload)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    return data


SIGV4_QUERY = ["X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Amz-Algorithm", "X-Amz-Date",
               "X-Amz-SignedHeaders", "X-Amz-Expires", "x-amz-signature"]


@pytest.mark.parametrize("parameter", SIGV4_QUERY)
@pytest.mark.parametrize("allow_unknown", [False, True])
async def test_caller_sigv4_query_parameters_are_refused_in_every_configuration(  # type: ignore[no-untyped-def]
    aiohttp_client, recording, parameter: str, allow_unknown: bool
) -> None:
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"validation.allow_unknown_members": allow_unknown})
    client = await aiohttp_client(proxy.data_app)
    response = await client.post(f"/ListChannels?{parameter}=abc", data=b"{}", headers=JSON_HEADERS)
    await assert_refused(response, 400, "UnexpectedCredentialsException", parameter)
    assert upstream.received == []


async def test_strip_caller_signature_removes_sigv4_query_parameters(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"),
                      {"validation.allow_unknown_members": True, "headers.strip_caller_signature": True})
    client = await aiohttp_client(proxy.data_app)
    query = "&".join(f"{name}=abc" for name in SIGV4_QUERY)
    response = await client.post(f"/ListChannels?{query}&newMember=1", data=b"{}", headers=JSON_HEADERS)
    assert response.status == 200, await response.text()
    (received,) = upstream.received
    assert received.raw_path == "/ListChannels?newMember=1"
    assert received.signature_valid


# The AWS SDK for JavaScript v3 with placeholder keys and its own signer: the obvious attempt.
PLACEHOLDER_KEYS_JS = """
import { IvsClient, ListChannelsCommand } from "@aws-sdk/client-ivs";
const client = new IvsClient({ region: "us-west-2", endpoint: process.env.PROXY_URL, maxAttempts: 1,
                               credentials: { accessKeyId: "placeholder", secretAccessKey: "placeholder" } });
try {
  const answer = await client.send(new ListChannelsCommand({}));
  console.log(JSON.stringify({ ok: true, channels: answer.channels }));
} catch (error) {
  console.log(JSON.stringify({ ok: false, status: error.$metadata?.httpStatusCode, message: error.message }));
}
"""


async def placeholder_keys_js(node: str, url: str) -> dict:  # type: ignore[type-arg]
    from tests.e2e.test_multi_region import JS_TESTS

    # From stdin, an ES module resolves its imports from the working directory: tests/js.
    process = await asyncio.create_subprocess_exec(
        node, "--input-type=module", "-", cwd=JS_TESTS, env={"PATH": os.environ["PATH"], "PROXY_URL": url},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(PLACEHOLDER_KEYS_JS.encode()), 60)
    assert process.returncode == 0, err.decode()[-2000:]
    return json.loads(out.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_a_javascript_sdk_signing_with_placeholder_keys_is_told_both_ways_out(
        aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.test_multi_region import node_with_the_sdk

    node = node_with_the_sdk()
    upstream, server = recording
    upstream_url = str(server.make_url("")).rstrip("/")
    refusing = await aiohttp_client(proxy_for(upstream_url).data_app)
    answer = await placeholder_keys_js(node, str(refusing.make_url("")).rstrip("/"))
    assert (answer["ok"], answer.get("status")) == (False, 400), answer
    message = answer["message"]
    assert "carries signing or credential material; the proxy signs requests itself" in message
    assert "JavaScript SDK v3: a client with signer: { sign: async (request) => request }" in message
    assert "headers.strip_caller_signature: true" in message
    assert "placeholder" not in message.replace("placeholder keys", "")  # nothing of the key echoed
    assert upstream.received == []

    # The second way out: the proxy drops the SDK's signature and signs afresh.
    stripping = await aiohttp_client(proxy_for(upstream_url, {"headers": {"strip_caller_signature": True}}).data_app)
    answer = await placeholder_keys_js(node, str(stripping.make_url("")).rstrip("/"))
    assert answer["ok"] is True, answer
    (received,) = upstream.received
    assert received.signature_valid and "placeholder" not in received.headers["authorization"]
