from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.serve.listener import ServedApp
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for
from tests.support.port_server import PortTestServer
from tests.support.recording_upstream import RecordingUpstream


@pytest.fixture
async def aiohttp_server(aiohttp_server):  # type: ignore[no-untyped-def]
    """pytest-aiohttp's, which also serves the proxy's data port (tests.support.port_server.py)."""
    servers: list[PortTestServer] = []

    async def serve(app, **kwargs):  # type: ignore[no-untyped-def]
        if not isinstance(app, ServedApp):
            return await aiohttp_server(app, **kwargs)
        server = PortTestServer(app, port=kwargs.pop("port", None))
        servers.append(server)
        await server.start_server(**kwargs)
        return server

    yield serve
    for server in reversed(servers):
        await server.close()


@pytest.fixture
def aiohttp_client(aiohttp_client):  # type: ignore[no-untyped-def]
    """pytest-aiohttp's, which also takes the proxy's data port (tests.support.port_server.py)."""

    async def connect(target, **kwargs):  # type: ignore[no-untyped-def]
        if isinstance(target, ServedApp):
            target = PortTestServer(target)
        return await aiohttp_client(target, **kwargs)

    return connect


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
