"""The ARNs a request names decide its region; the caller cannot pick a host."""

from __future__ import annotations

import json

import pytest
from aiohttp.test_utils import TestClient

from tests.support.inprocess import proxy_for
from tests.support.recording_upstream import RecordingUpstream

JSON_HEADERS = {"Content-Type": "application/json"}


def channel(region: str, account: str = "123456789012") -> str:
    return f"arn:aws:ivs:{region}:{account}:channel/AbCdEfGhIjKl"


async def test_no_arn_uses_the_default_region(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    await proxy_client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)
    assert upstream.received[0].region == "us-west-2"


async def test_the_arn_region_wins(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    response = await proxy_client.post("/GetChannel", data=json.dumps({"arn": channel("eu-west-1")}), headers=JSON_HEADERS)
    assert response.status == 200
    assert upstream.received[0].region == "eu-west-1"
    assert upstream.received[0].signature_valid


async def test_path_arn_region_wins(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    encoded = channel("ap-northeast-1").replace(":", "%3A").replace("/", "%2F")
    response = await proxy_client.get(f"/tags/{encoded}")
    assert response.status == 200
    assert upstream.received[0].region == "ap-northeast-1"


async def test_a_batch_across_regions_is_refused(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    body = {"arns": [channel("us-west-2"), channel("us-west-2"), channel("eu-west-1")]}
    response = await proxy_client.post("/BatchGetChannel", data=json.dumps(body), headers=JSON_HEADERS)
    assert response.status == 400
    message = (await response.json())["message"]
    assert "arns[2]" in message and "eu-west-1" in message
    assert upstream.received == []


async def test_a_region_without_the_service_is_refused(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    response = await proxy_client.post("/GetChannel", data=json.dumps({"arn": channel("sa-east-1")}), headers=JSON_HEADERS)
    assert response.status == 400
    assert "sa-east-1" in (await response.json())["message"]
    assert upstream.received == []


@pytest.mark.parametrize("region", ["eu-west-1", "us-west-2"])
async def test_config_narrows_the_regions(aiohttp_client, recording, region: str) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"regions": {"ivs": ["us-west-2"]}})
    client = await aiohttp_client(proxy.data_app)
    response = await client.post("/GetChannel", data=json.dumps({"arn": channel(region)}), headers=JSON_HEADERS)
    assert response.status == (200 if region == "us-west-2" else 400)
    assert len(upstream.received) == (1 if region == "us-west-2" else 0)


async def test_a_region_prefix_chooses_the_region_for_every_service(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"regions": {"ivs": ["us-west-2", "eu-west-1"]}})
    client = await aiohttp_client(proxy.data_app)
    for path in ("/eu-west-1/ListChannels", "/eu-west-1/ivs/ListChannels", "/eu-west-1/ivs-realtime/ListStages",
                 "/eu-west-1/ivschat/ListRooms", "/ListChannels"):
        response = await client.post(path, data=b"{}", headers=JSON_HEADERS)
        assert response.status == 200, path
    assert [r.region for r in upstream.received] == ["eu-west-1"] * 4 + ["us-west-2"]
    # the wire path to AWS carries no prefix
    assert [r.raw_path for r in upstream.received] == ["/ListChannels", "/ListChannels", "/ListStages",
                                                        "/ListRooms", "/ListChannels"]
    assert all(r.signature_valid for r in upstream.received)


async def test_a_region_prefix_conflicting_with_the_arn_is_refused(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    response = await proxy_client.post("/eu-west-1/GetChannel", data=json.dumps({"arn": channel("us-west-2")}),
                                       headers=JSON_HEADERS)
    assert response.status == 400
    message = (await response.json())["message"]
    assert "region path prefix" in message and "eu-west-1" in message and "us-west-2" in message
    assert upstream.received == []


async def test_a_region_prefix_outside_the_allowed_ones_is_refused(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    response = await proxy_client.post("/sa-east-1/ListChannels", data=b"{}", headers=JSON_HEADERS)
    assert response.status == 400
    message = (await response.json())["message"]
    assert "sa-east-1" in message and "allowed: " in message and "us-west-2" in message
    assert upstream.received == []


async def test_a_stripped_signature_scope_chooses_the_region(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"headers": {"strip_caller_signature": True}})
    client = await aiohttp_client(proxy.data_app)
    signed_for = {
        **JSON_HEADERS, "X-Amz-Date": "20260101T000000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/ivs/aws4_request, "
                         "SignedHeaders=host;x-amz-date, Signature=0123abcd",
    }
    assert (await client.post("/ListChannels", data=b"{}", headers=signed_for)).status == 200
    assert upstream.received[0].region == "eu-west-1"
    assert "AKIDEXAMPLE" not in upstream.received[0].headers["authorization"]
    response = await client.post("/GetChannel", data=json.dumps({"arn": channel("us-west-2")}), headers=signed_for)
    assert response.status == 400
    assert "credential scope" in (await response.json())["message"]
    assert len(upstream.received) == 1
