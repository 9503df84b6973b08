"""The SQS poller's faults with real parts: moto (IAM auth on) as SQS, a real redis-server
that goes away and comes back. While Redis is down nothing is deleted from the queue and
nothing more received; when it returns, every event is stored and then deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from proxy.aws.credentials import CredentialStore
from proxy.aws.endpoints import EndpointTable
from proxy.aws.json_api import AwsJsonClient
from proxy.aws.signing import FrozenCredentials
from proxy.aws.upstream import Upstream
from proxy.config import RedisConfig, UpstreamConfig
from proxy.events.source import SqsSource
from proxy.events.store import RedisEventStore
from proxy.gateway.shared_state import SharedState
from proxy.observe.metrics import Metrics
from tests.support.gateway import channel
from tests.support.inprocess import StaticSource
from tests.support.ivs_events import event_body
from tests.support.moto import REGION, MotoServer, SessionCredentials
from tests.support.redis_server import RedisServer, require_redis


@pytest.fixture
async def sqs(moto: MotoServer, role_credentials: SessionCredentials) -> AsyncIterator[AwsJsonClient]:
    c = role_credentials
    store = CredentialStore(StaticSource(FrozenCredentials(c.access_key, c.secret_key, c.token)))
    await store.start()
    upstream = Upstream(UpstreamConfig(read_timeout_seconds=10))
    await upstream.start()
    endpoints = EndpointTable.build(("sqs",), {"sqs": (REGION,)}, {"AWS_ENDPOINT_URL_SQS": moto.url})
    yield AwsJsonClient("sqs", endpoints, store, upstream)
    await upstream.close()


def queue_depth(admin, url: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    attributes = admin.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def test_redis_down_keeps_events_in_the_queue_until_it_returns(moto: MotoServer, sqs: AwsJsonClient) -> None:
    require_redis()
    assert moto.admin is not None
    admin = moto.client("sqs", *moto.admin)
    url = admin.create_queue(QueueName="events-redis-down", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    bodies = [event_body([channel(f"c{n}")]) for n in range(3)]
    for body in bodies:
        admin.send_message(QueueUrl=url, MessageBody=body)
    redis = RedisServer()
    redis.start()
    shared_port, redis_url = redis.port, redis.url
    shared = SharedState(RedisConfig(url=redis.url, retry_seconds=0.2), Metrics())
    store = RedisEventStore(shared, shared.blocking_client(2.0), max_length=100, dedupe_seconds=60)
    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    source = SqsSource(sqs, url, REGION, store, wait_seconds=1, sleep=no_wait)
    try:
        redis.stop()
        await source.poll_once()
        assert source.delayed and slept  # waited before asking again; nothing deleted
        assert sum(queue_depth(admin, url)) == 3
        await asyncio.sleep(1.2)  # the visibility timeout: all three are visible again
        await source.poll_once()  # still down: Redis is asked first, and nothing is received
        assert queue_depth(admin, url) == (3, 0)
        redis = RedisServer()  # a new one on the same port, empty: as after a restart
        redis.port, redis.url = shared_port, redis_url
        redis.start()
        for _ in range(100):  # bounded: each poll waits at most wait_seconds for messages
            if sum(queue_depth(admin, url)) == 0:
                break
            await source.poll_once()
            # A poll while the store still counts as down returns at once (this test's
            # sleep does not wait): give its retry (0.2 s) the time to ask Redis again.
            await asyncio.sleep(0.05)
        assert sum(queue_depth(admin, url)) == 0 and not source.delayed
        stored = await store.after("0-0", 10)
        assert sorted(e.event.id for e in stored) == sorted(json.loads(body)["id"] for body in bodies)
    finally:
        await store.close()
        await shared.close()
        redis.stop()
