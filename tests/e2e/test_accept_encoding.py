"""Accept-Encoding through a real proxy: `curl --compressed` works, and IVS sees only its codings."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from aiohttp.test_utils import TestClient

from tests.support.inprocess import proxy_for
from tests.support.recording_upstream import RecordingUpstream

CURL = shutil.which("curl")


async def curl(url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """Run curl against `url`; its status, lower-cased response headers and body."""
    assert CURL is not None
    process = await asyncio.create_subprocess_exec(
        CURL, "-s", "-i", "--max-time", "30", "-X", "POST", "-H", "Content-Type: application/json",
        "--data", "{}", *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode(errors="replace")
    head, _, body = out.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_compressed_reaches_upstream_with_only_the_codings_ivs_sends(
    proxy_client: TestClient, upstream: RecordingUpstream
) -> None:
    status, _, body = await curl(str(proxy_client.make_url("/ListChannels")), "--compressed")
    assert status == 200, body
    assert json.loads(body) == {}
    (received,) = upstream.received
    # curl's own order ("deflate, gzip, br, zstd" in curl 7/8) is kept; br and zstd are gone.
    codings = [item.strip() for item in received.headers["accept-encoding"].split(",")]
    assert sorted(codings) == ["deflate", "gzip"]
    assert received.signature_valid


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_accepting_nothing_ivs_sends_gets_406_and_nothing_reaches_upstream(
    proxy_client: TestClient, upstream: RecordingUpstream
) -> None:
    status, headers, body = await curl(str(proxy_client.make_url("/ListChannels")),
                                       "-H", "Accept-Encoding: br, identity;q=0")
    assert status == 406
    assert headers["x-amzn-errortype"] and headers["content-type"].startswith("application/json")
    message = json.loads(body)["message"]
    assert message.startswith("ivs-proxy refused the request: ") and "gzip, deflate or identity" in message
    assert upstream.received == []


async def test_only_other_codings_send_no_accept_encoding_upstream(
    proxy_client: TestClient, upstream: RecordingUpstream
) -> None:
    response = await proxy_client.post("/ListChannels", data=b"{}",
                                       headers={"Content-Type": "application/json", "Accept-Encoding": "br, zstd"})
    assert response.status == 200, await response.text()
    (received,) = upstream.received
    assert "accept-encoding" not in received.headers  # identity: what IVS sends anyway
    assert received.signature_valid


async def test_strict_accept_encoding_refuses_other_codings(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"headers.strict_accept_encoding": True})
    client = await aiohttp_client(proxy.data_app)
    response = await client.post("/ListChannels", data=b"{}",
                                 headers={"Content-Type": "application/json", "Accept-Encoding": "gzip, br"})
    assert response.status == 400 and response.headers["x-amzn-ErrorType"] == "InvalidHeaderException"
    assert "'br' is not allowed" in (await response.json())["message"]
    assert upstream.received == []
