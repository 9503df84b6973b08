from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support.inprocess import TEST_CREDENTIALS, proxy_for
from tests.support.recording_upstream import RecordingUpstream


@pytest.fixture
async def recording(aiohttp_server) -> tuple[RecordingUpstream, TestServer]:  # type: ignore[no-untyped-def]
    upstream = RecordingUpstream(secret_key=TEST_CREDENTIALS.secret_key)
    server = await aiohttp_server(upstream.app())
    return upstream, server


@pytest.fixture
async def proxy_client(aiohttp_client, recording) -> TestClient:  # type: ignore[no-untyped-def]
    _, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"))
    return await aiohttp_client(proxy.data_app)


@pytest.fixture
def upstream(recording) -> RecordingUpstream:  # type: ignore[no-untyped-def]
    return recording[0]
