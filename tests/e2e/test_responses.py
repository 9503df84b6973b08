"""What comes back: AWS's answers unchanged, upstream failures as proxy errors."""

from __future__ import annotations

import gzip
import json

from aiohttp.test_utils import TestClient

from tests.support.inprocess import proxy_for
from tests.support.net import free_port
from tests.support.recording_upstream import RecordingUpstream

JSON_HEADERS = {"Content-Type": "application/json"}


async def test_aws_errors_pass_through_untouched(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    upstream.status = 404
    upstream.body = b'{"message":"Channel not found","exceptionMessage":"x"}'
    upstream.headers = {
        "Content-Type": "application/json",
        "x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/",
        "x-amzn-RequestId": "7f2b1b1e-0000-4000-8000-000000000000",
        "Set-Cookie": "aws=1",
    }
    response = await proxy_client.post("/GetChannel", data=json.dumps({"arn": "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"}), headers=JSON_HEADERS)
    assert response.status == 404
    assert await response.read() == upstream.body
    assert response.headers["x-amzn-ErrorType"] == upstream.headers["x-amzn-ErrorType"]
    assert response.headers["x-amzn-RequestId"] == upstream.headers["x-amzn-RequestId"]
    assert "x-ivs-proxy-error" not in response.headers
    assert "Set-Cookie" not in response.headers


async def test_gzip_answers_stay_gzipped_and_labelled(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    payload = json.dumps({"channels": [{"name": f"c{i}"} for i in range(200)]}).encode()
    upstream.body = gzip.compress(payload)
    upstream.headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = await proxy_client.post(
        "/ListChannels", data=b"{}", headers={**JSON_HEADERS, "Accept-Encoding": "gzip"}, auto_decompress=False
    )
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await response.read()) == payload
    assert upstream.received[0].headers["accept-encoding"] == "gzip"


async def test_no_accept_encoding_means_none_is_asked_for(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    await proxy_client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS, skip_auto_headers=["Accept-Encoding"])
    assert "accept-encoding" not in upstream.received[0].headers


async def test_unreachable_upstream_is_a_502_proxy_error(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for(f"http://127.0.0.1:{free_port()}")
    client = await aiohttp_client(proxy.data_app)
    response = await client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)
    assert response.status == 502
    assert response.headers["x-amzn-ErrorType"] == "BadGatewayException"
    assert (await response.json())["reason"] == "upstream_unreachable"


async def test_slow_upstream_is_a_504_proxy_error(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    upstream.delay_seconds = 2.0
    # One attempt: retries of timeouts are tests/e2e/test_resilience_retries.py's subject.
    proxy = proxy_for(str(server.make_url("")).rstrip("/"),
                      {"upstream.read_timeout_seconds": 0.3, "retries.max_attempts": 1})
    client = await aiohttp_client(proxy.data_app)
    response = await client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)
    assert response.status == 504
    assert response.headers["x-amzn-ErrorType"] == "GatewayTimeoutException"
    assert len(upstream.received) == 1
