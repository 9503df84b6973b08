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
