"""Two gateway processes sharing one real Redis (Debian's redis-server, on a free loopback
port): a caller's rate limit holds across both, a request replayed to the other process is
refused, and when Redis goes away the gateways keep serving with per-process limits
(while authentication still fails closed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.gateway import CHAT, VIDEO, channel, gateway_settings, secrets_env, sign
from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.proxy_process import ProxyProcess
from tests.support.recording_upstream import Received, RecordingUpstream
from tests.support.redis_server import RedisServer, require_redis

PUT = json.dumps({"channelArn": channel("VideoMain001"), "metadata": "m"}).encode()
CHAT_HEADERS = {"Authorization": f"Bearer {CHAT.token}", "Content-Type": "application/json"}


@pytest.fixture
async def replicas(recording, tmp_path: Path) -> AsyncIterator[tuple[RedisServer, ProxyProcess, ProxyProcess]]:  # type: ignore[no-untyped-def]
    require_redis()
    _, upstream_server = recording
    redis = RedisServer()
    redis.start()
    settings = gateway_settings(
        region="us-west-2",
        redis={"url": redis.url, "retry_seconds": 30},
        rate_limits={"rules": [{"action": "ivs:ListChannels", "rate": 0.01, "burst": 3, "callers": ["chat-team"]}]},
    )
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {"AWS_ENDPOINT_URL": str(upstream_server.make_url("")).rstrip("/"), "AWS_REGION": "us-west-2",
           "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key, "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
           "AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "", "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **secrets_env()}
    a, b = (ProxyProcess(env, args=("--drain-delay", "0"), config=config) for _ in range(2))
    try:
        await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
        yield redis, a, b
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in (a, b) if p.process is not None))
        redis.stop()


async def post(session: aiohttp.ClientSession, process: ProxyProcess, path: str, data: bytes,
               headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    async with session.post(f"{process.url}{path}", data=data, headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


def ivs_calls(upstream: RecordingUpstream) -> list[Received]:
    """What reached the upstream, without each process's start-up STS GetCallerIdentity."""
    return [r for r in upstream.received if r.raw_path != "/"]


async def metric(session: aiohttp.ClientSession, process: ProxyProcess, name: str) -> float:
    async with session.get(f"{process.admin_url}/metrics") as response:
        text = await response.text()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


async def test_limits_and_the_replay_window_hold_across_replicas(recording, replicas) -> None:  # type: ignore[no-untyped-def]
    upstream, _ = recording
    redis, a, b = replicas
    async with aiohttp.ClientSession() as session:
        # chat-team's burst of 3 ListChannels is shared: a, b, a pass; then both refuse
        statuses = [(await post(session, p, "/ListChannels", b"{}", CHAT_HEADERS))[0] for p in (a, b, a, b, a)]
        assert statuses == [200, 200, 200, 429, 429]
        assert await metric(session, a, "ivs_proxy_redis_up") == 1

        # a signed request accepted by a is refused when replayed, byte for byte, to b
        headers = sign("POST", f"{a.url}/PutMetadata", PUT, VIDEO)
        headers["Host"] = f"127.0.0.1:{a.port}"  # behind a Service both replicas see one Host
        assert (await post(session, a, "/PutMetadata", PUT, headers))[0] == 200
        status, _, text = await post(session, b, "/PutMetadata", PUT, headers)
        assert status == 401 and "already used" in text
        assert len(ivs_calls(upstream)) == 4

        # Redis goes away: limits fall back to per process (fail open, and said so),
        # SDK-native callers are refused 503 (replay_on_outage: refuse), and
        # authentication still fails closed.
        redis.stop()
        status, _, _ = await post(session, a, "/ListChannels", b"{}", CHAT_HEADERS)
        assert status == 200  # a fresh per-process bucket
        assert await metric(session, a, "ivs_proxy_redis_up") == 0
        fresh = sign("POST", f"{b.url}/PutMetadata", PUT, VIDEO)
        status, response_headers, text = await post(session, b, "/PutMetadata", PUT, fresh)
        assert status == 503 and response_headers["Retry-After"] == "1" and "replay window" in text
        assert (await post(session, a, "/ListChannels", b"{}", {**CHAT_HEADERS, "Authorization": "Bearer nope"}))[0] == 401
    assert len(ivs_calls(upstream)) == 5
    output = a.stop()
    assert '"event": "shared_state_unavailable"' in output and "rate limits are per process" in output
