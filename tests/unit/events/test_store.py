"""The event stores: the in-process buffer here, the Redis stream against a real
redis-server. Both drop repeats, keep order, resume after an id, and wake a follower."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from proxy.config import RedisConfig
from proxy.events.envelope import parse_event
from proxy.events.store import EventStore, MemoryEventStore, RedisEventStore, StoreDown, id_key
from proxy.gateway.shared_state import SharedState
from proxy.observe.metrics import Metrics
from tests.support.gateway import channel
from tests.support.ivs_events import event_body
from tests.support.redis_server import RedisServer, require_redis


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    if request.param == "memory":
        yield MemoryEventStore(max_length=5, dedupe_seconds=60)
        return
    require_redis()
    with RedisServer() as redis:
        shared = SharedState(RedisConfig(url=redis.url), Metrics())
        found = RedisEventStore(shared, shared.blocking_client(3.0), max_length=5, dedupe_seconds=60)
        yield found
        await found.close()
        await shared.close()


def event(name: str, event_id: str | None = None):  # type: ignore[no-untyped-def]
    return parse_event(event_body([channel(name)], event_id=event_id))


async def test_repeats_are_dropped_and_order_kept(store: EventStore) -> None:
    first = await store.append(event("a", "id-1"))
    assert first is not None
    assert await store.append(event("a", "id-1")) is None  # EventBridge delivered it twice
    second = await store.append(event("b", "id-2"))
    assert second is not None and id_key(second) > id_key(first)
    assert [e.event.id for e in await store.after("0-0", 10)] == ["id-1", "id-2"]
    assert [e.id for e in await store.after(first, 10)] == [second]
    assert await store.bounds() == (first, second)


async def test_the_oldest_are_trimmed(store: EventStore) -> None:
    for i in range(40):
        await store.append(event("c", f"trim-{i}"))
    kept = await store.after("0-0", 100)
    # Redis trims with MAXLEN ~ (whole nodes), so "about": never all 40, always the newest.
    assert 5 <= len(kept) < 40 and kept[-1].event.id == "trim-39"


async def test_a_follower_wakes_for_a_new_event(store: EventStore) -> None:
    start = await store.append(event("d", "f-0"))
    assert start is not None
    waiting = asyncio.create_task(store.follow(start, 3.0))
    await asyncio.sleep(0.05)
    await store.append(event("d", "f-1"))
    assert [e.event.id for e in await asyncio.wait_for(waiting, 5)] == ["f-1"]
    assert await store.follow(start, 0.05) != []  # already there: no wait
    latest = (await store.bounds() or ("", ""))[1]
    assert await store.follow(latest, 0.05) == []  # nothing new within the block


async def test_redis_down_is_store_down() -> None:
    require_redis()
    redis = RedisServer()
    redis.start()
    shared = SharedState(RedisConfig(url=redis.url, retry_seconds=0.1), Metrics())
    store = RedisEventStore(shared, shared.blocking_client(1.0), max_length=5, dedupe_seconds=60)
    assert await store.append(event("e", "down-1")) is not None
    redis.stop()
    with pytest.raises(StoreDown):
        await store.append(event("e", "down-2"))
    with pytest.raises(StoreDown):
        await store.follow("0-0", 0.1)
    await store.close()
    await shared.close()
