"""Overload: past the in-flight cap (and its short queue) a request gets a 503 with
Retry-After at once, and the requests already in flight are unaffected."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.support import fault_upstream as fault
from tests.support.fault_upstream import FaultUpstream
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for

JSON_HEADERS = {"Content-Type": "application/json"}
N, K = 4, 3


@pytest.fixture
async def gated(aiohttp_server) -> tuple[FaultUpstream, TestServer, asyncio.Event]:  # type: ignore[no-untyped-def]
    release = asyncio.Event()
    upstream = FaultUpstream(secret_key=TEST_CREDENTIALS.secret_key, default=fault.gate(release))
    return upstream, await aiohttp_server(upstream.app()), release


async def until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def list_channels(client: TestClient) -> asyncio.Task[aiohttp.ClientResponse]:
    return asyncio.ensure_future(client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS))


async def test_beyond_the_cap_requests_get_503_with_retry_after_at_once(aiohttp_client, gated) -> None:  # type: ignore[no-untyped-def]
    upstream, server, release = gated
    proxy = proxy_for(str(server.make_url("")).rstrip("/"),
                      {"limits.max_inflight_requests": N, "limits.max_queued_requests": 0})
    client = await aiohttp_client(proxy.data_app, connector=aiohttp.TCPConnector(limit=0))
    first = [list_channels(client) for _ in range(N)]
    await until(lambda: len(upstream.received) == N)  # N slow requests hold every slot

    extra = await asyncio.gather(*(list_channels(client) for _ in range(K)))
    assert not any(task.done() for task in first)  # answered while the first N still wait on AWS
    for response in extra:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert response.headers["x-amzn-ErrorType"] == "ThrottlingException"
        body = await response.json()
        assert (body["reason"], body["source"]) == ("overloaded", "ivs-proxy")
    assert len(upstream.received) == N  # none of them was forwarded

    release.set()
    assert [r.status for r in await asyncio.gather(*first)] == [200] * N
    rejected = proxy.state.metrics.registry.get_sample_value("ivs_proxy_rejected_total", {"reason": "overloaded"})
    assert rejected == K
    assert proxy.state.admission.inflight == 0


async def test_a_short_queue_absorbs_a_burst_and_refuses_what_overflows_it(aiohttp_client, gated) -> None:  # type: ignore[no-untyped-def]
    upstream, server, release = gated
    proxy = proxy_for(str(server.make_url("")).rstrip("/"),
                      {"limits.max_inflight_requests": N, "limits.max_queued_requests": 2,
                       "limits.queue_timeout_seconds": 5.0})
    client = await aiohttp_client(proxy.data_app, connector=aiohttp.TCPConnector(limit=0))
    first = [list_channels(client) for _ in range(N)]
    await until(lambda: len(upstream.received) == N)
    queued = [list_channels(client) for _ in range(2)]
    await until(lambda: proxy.state.admission.queued == 2)
    overflow = await list_channels(client)
    assert overflow.status == 503
    release.set()
    assert [r.status for r in await asyncio.gather(*first, *queued)] == [200] * (N + 2)
    assert len(upstream.received) == N + 2


async def test_a_queued_request_that_waits_too_long_is_refused(aiohttp_client, gated) -> None:  # type: ignore[no-untyped-def]
    upstream, server, release = gated
    proxy = proxy_for(str(server.make_url("")).rstrip("/"),
                      {"limits.max_inflight_requests": 1, "limits.max_queued_requests": 5,
                       "limits.queue_timeout_seconds": 0.1})
    client = await aiohttp_client(proxy.data_app)
    holding = list_channels(client)
    await until(lambda: len(upstream.received) == 1)
    waited = await list_channels(client)
    assert waited.status == 503 and "waited" in (await waited.json())["message"]
    release.set()
    assert (await holding).status == 200
    assert (proxy.state.admission.inflight, proxy.state.admission.queued) == (0, 0)
