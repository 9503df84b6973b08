"""Rotation, a hanging source and an outage, with container credentials that live seconds.

The proxy runs in-process on this event loop, beside a container credentials endpoint
(the real HTTP contract botocore speaks: ECS task roles, EKS Pod Identity) and an upstream
that checks every signature against the key it names. Were a credential fetch to block
the event loop, every request here would stall with it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from proxy.app import Proxy, build_proxy
from proxy.config import load_config
from tests.support.container_credentials import (
    ROLE_ARN,
    ContainerCredentialsServer,
    KeyCheckingUpstream,
)

JSON = {"Content-Type": "application/json"}
TOKEN = "pod-identity-token-0123456789"


@dataclass
class Rig:
    source: ContainerCredentialsServer
    upstream: KeyCheckingUpstream
    proxy: Proxy
    client: TestClient
    admin: TestClient

    async def call(self) -> tuple[int, float, dict[str, str], str]:
        started = time.perf_counter()
        response = await self.client.post("/ListChannels", data=b"{}", headers=JSON)
        text = await response.text()
        return response.status, time.perf_counter() - started, dict(response.headers), text


RigFactory = Callable[[float], Awaitable[Rig]]


@pytest.fixture
async def make_rig(aiohttp_server, aiohttp_client, monkeypatch, tmp_path: Path) -> AsyncIterator[RigFactory]:  # type: ignore[no-untyped-def]
    sources: list[ContainerCredentialsServer] = []

    async def make(lifetime_seconds: float) -> Rig:
        source = ContainerCredentialsServer(TOKEN, lifetime_seconds)
        sources.append(source)
        source_url = str((await aiohttp_server(source.app())).make_url("")).rstrip("/")
        upstream = KeyCheckingUpstream(source.issued)
        upstream_url = str((await aiohttp_server(upstream.app())).make_url("")).rstrip("/")
        token_file = tmp_path / "eks-pod-identity-token"
        token_file.write_text(TOKEN)
        # botocore's chain reads the process environment, as every AWS SDK does.
        for name in [k for k in os.environ if k.startswith("AWS_")]:
            monkeypatch.delenv(name)
        for name, value in {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{source_url}/v1/credentials",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
            "AWS_ENDPOINT_URL_STS": source_url,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        env = {"AWS_ENDPOINT_URL": upstream_url, "AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": os.devnull}
        proxy = build_proxy(load_config(None), env)
        client = await aiohttp_client(proxy.data_app)
        return Rig(source, upstream, proxy, client, await aiohttp_client(proxy.admin_app))

    yield make
    for source in sources:  # before the servers close: a hanging handler would hold them up
        source.release()


async def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def assert_all_signed_with_live_keys(upstream: KeyCheckingUpstream) -> None:
    assert upstream.received
    for record in upstream.received:
        assert record.known_key and record.signature_valid and record.token_matches, record
        assert not record.expired_on_arrival, record


async def test_key_rotates_under_steady_traffic_and_no_request_fails(make_rig: RigFactory) -> None:
    rig = await make_rig(3.0)  # whole-second expiry: each key lives 2-3 s

    async def worker(deadline: float) -> list[int]:
        statuses = []
        while time.monotonic() < deadline:
            statuses.append((await rig.call())[0])
            await asyncio.sleep(0.01)
        return statuses

    deadline = time.monotonic() + 3.5
    results = await asyncio.gather(*(worker(deadline) for _ in range(4)))
    statuses = [status for result in results for status in result]
    assert len(statuses) > 100
    assert set(statuses) == {200}
    assert_all_signed_with_live_keys(rig.upstream)
    keys = list(dict.fromkeys(record.access_key for record in rig.upstream.received))
    assert len(keys) >= 3, keys  # rotated at least twice under traffic
    status = rig.proxy.state.credentials.status
    assert (status.source, status.identity, status.last_outcome) == ("container-role", ROLE_ARN, "success")


async def test_hanging_source_does_not_slow_requests(make_rig: RigFactory) -> None:
    rig = await make_rig(6.0)
    baseline = [(await rig.call())[1] for _ in range(30)]
    rig.source.mode = "hang"  # the next refresh's GET gets no answer (30 s; botocore gives up after 2 s)
    await wait_until(lambda: rig.source.hanging > 0, timeout=8)
    before = rig.proxy.state.credentials.status

    during = []
    window_end = time.monotonic() + 1.0
    while time.monotonic() < window_end:
        status, seconds, _, _ = await rig.call()
        assert status == 200
        during.append(seconds)

    # The refresh was in flight, stuck on the source, for the whole window.
    assert rig.proxy.state.credentials.status.last_refresh_at == before.last_refresh_at
    assert len(during) >= 20
    assert max(during) < 0.5, (max(during), max(baseline))
    assert statistics.median(during) < 3 * statistics.median(baseline) + 0.02
    assert_all_signed_with_live_keys(rig.upstream)


async def test_outage_past_expiry_refuses_fast_then_recovers_by_itself(make_rig: RigFactory) -> None:
    rig = await make_rig(3.0)
    assert (await rig.call())[0] == 200
    rig.source.mode = "fail"
    store = rig.proxy.state.credentials
    # Each failed fetch takes botocore ~3 s (three tries, 1 s apart); the key lives 2-3 s.
    await wait_until(lambda: not store.is_valid() and store.status.last_outcome == "failure", timeout=10)
    forwarded = len(rig.upstream.received)

    status, seconds, headers, text = await rig.call()
    assert status == 503 and seconds < 0.25
    assert headers["x-amzn-ErrorType"] == "ServiceUnavailableException"
    assert headers["x-ivs-proxy-error"] == "credentials_unavailable"
    assert "credentials from container-role" in text and "could not be renewed" in text
    assert "non 200 response 500" in text
    for key in rig.source.issued.values():
        assert key.secret_key not in text and key.token not in text

    ready = await rig.admin.get("/readyz")
    assert ready.status == 503
    body = await ready.json()
    assert body["ready"] is False and "container-role" in body["detail"]
    assert len(rig.upstream.received) == forwarded  # nothing was signed with the expired key

    rig.source.mode = "ok"
    started = time.monotonic()
    await wait_until(store.is_valid, timeout=10)
    assert (await rig.call())[0] == 200
    assert (await rig.admin.get("/readyz")).status == 200
    assert time.monotonic() - started < 5
    assert_all_signed_with_live_keys(rig.upstream)
