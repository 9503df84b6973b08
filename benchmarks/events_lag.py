"""IVS event delivery under a burst: lag p50/p99 and events/s per replica (docs/events.md).

Real parts, as tests/e2e/test_events.py: moto in server mode with IAM auth (SQS and an
EventBridge rule targeting it), one redis-server, two gateway replicas (`ivs-proxy serve`
processes) and SSE subscribers on each. The burst is `--events` PutEvents entries, ten per
call from a few threads; each entry's detail carries the wall-clock time it was put, so the
lag measured is the whole path: PutEvents -> rule -> queue -> a replica's long poll ->
Redis stream -> every replica's reader -> each subscriber's socket.

A second burst of `--direct` events skips SQS: they are appended to the Redis stream with
the proxy's own store (the same atomic dedupe-and-append a replica runs once it received a
message), so its lag and rate are the proxy's part alone: stream -> readers -> sockets.

    .venv/bin/python benchmarks/events_lag.py [--events 300] [--direct 5000] [--subscribers 2]

Not a test: it asserts only that every subscriber got every event once. On this machine
moto, Redis, both replicas and the subscribers share two cores; moto, which verifies every
signature and scans its whole queue on each receive, is far slower than SQS, so the first
burst's figures are moto's more than the proxy's.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.config import RedisConfig
from proxy.events.envelope import parse_event
from proxy.events.store import RedisEventStore
from proxy.gateway.shared_state import SharedState
from proxy.observe.metrics import Metrics
from tests.support.gateway import CHAT, gateway_settings, secrets_env
from tests.support.ivs_events import create_queue_and_rule, stage
from tests.support.moto import REGION, MotoServer
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer
from tests.support.sse import SseStream

POLICY = {"chat-team": {"Statement": [
    {"Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents", "Resource": "*"}]},
    "video-team": {"Statement": [{"Effect": "Allow", "Action": "ivs:GetChannel", "Resource": "*"}]}}


def put_burst(events_client, count: int, threads: int = 4) -> float:  # type: ignore[no-untyped-def]
    """Put `count` IVS Stage Update events; returns the seconds it took."""

    def put(start: int) -> None:
        entries = [{"Source": "aws.ivs", "DetailType": "IVS Stage Update", "Resources": [stage(f"Bench{n % 50}")],
                    "Detail": json.dumps({"event_name": "Participant Published", "session_id": "st-BenchBenchBen",
                                          "participant_id": f"p{n}", "sent_at": time.time()})}
                   for n in range(start, min(start + 10, count))]
        answer = events_client.put_events(Entries=entries)
        assert answer["FailedEntryCount"] == 0

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, range(0, count, 10)))
    return time.perf_counter() - started


async def subscribe(session: aiohttp.ClientSession, replica: ProxyProcess) -> SseStream:
    response = await session.get(f"{replica.url}/_ivs-proxy/events", headers={"Authorization": f"Bearer {CHAT.token}"})
    assert response.status == 200, await response.text()
    stream = SseStream(response)
    while "subscribed" not in stream.comments:
        line = (await response.content.readline()).decode()
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
    return stream


async def collect(stream: SseStream, count: int) -> list[tuple[str, float]]:
    """(event id, lag seconds) of the next `count` events."""
    got = []
    while len(got) < count:
        message = await stream.next(timeout=120)
        assert message is not None, "the stream ended"
        if message.event == "message":
            event = message.json()
            got.append((event["id"], time.time() - event["detail"]["sent_at"]))
    return got


async def metric(session: aiohttp.ClientSession, replica: ProxyProcess, name: str) -> float:
    async with session.get(replica.admin_url + "/metrics") as answer:
        text = await answer.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(count: int, direct: int, per_replica: int) -> None:
    moto, redis = MotoServer(), RedisServer()
    moto.start()
    redis.start()
    replicas: list[ProxyProcess] = []
    try:
        url, _, events_client = create_queue_and_rule(moto, visibility_timeout=30)
        settings = gateway_settings(region=REGION, policy={"callers": POLICY}, redis={"url": redis.url},
                                    events={"queue_url": url, "wait_time_seconds": 20,
                                            "subscriber_buffer": max(256, count, direct)})
        config = Path(tempfile.mkdtemp(prefix="events-bench-")) / "gateway.yaml"
        config.write_text(yaml.safe_dump(settings))
        credentials = moto.role_credentials()
        env = {**credentials.env(), "AWS_ENDPOINT_URL": moto.url, "AWS_REGION": REGION, **secrets_env()}
        replicas = [ProxyProcess(env, config=config) for _ in range(2)]
        for replica in replicas:
            replica.start()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=180)) as session:
            streams = [await subscribe(session, r) for r in replicas for _ in range(per_replica)]
            started = time.perf_counter()
            collecting = [asyncio.create_task(collect(s, count)) for s in streams]
            put_seconds = await asyncio.to_thread(put_burst, events_client, count)
            results = await asyncio.gather(*collecting)
            total_seconds = time.perf_counter() - started
            stored = [await metric(session, r, "ivs_proxy_events_received_total") for r in replicas]
            delivered = [await metric(session, r, "ivs_proxy_events_delivered_total") for r in replicas]
            direct_results, direct_seconds = await direct_burst(redis, streams, direct)
            delivered_direct = [await metric(session, r, "ivs_proxy_events_delivered_total") - delivered[i]
                                for i, r in enumerate(replicas)]
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.stop()
        redis.stop()
        moto.stop()
    check(results, count)
    lags = [lag for got in results for _, lag in got] or [0.0]
    print(f"burst: {count} events put in {put_seconds:.2f} s ({count / max(put_seconds, 1e-9):.0f}/s through moto's PutEvents), "
          f"{len(streams)} subscribers ({per_replica} per replica), all delivered in {total_seconds:.2f} s")
    print(f"lag (put -> subscriber): p50 {statistics.median(lags) * 1000:.0f} ms, "
          f"p99 {percentile(lags, 0.99) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms")
    for i, replica_stored in enumerate(stored):
        print(f"replica {i}: stored {replica_stored:.0f} from SQS ({replica_stored / total_seconds:.0f}/s), "
              f"delivered {delivered[i]:.0f} ({delivered[i] / total_seconds:.0f}/s)")
    if direct:
        check(direct_results, direct)
        lags = [lag for got in direct_results for _, lag in got]
        print(f"direct: {direct} events appended to the stream, all delivered to {len(streams)} subscribers in "
              f"{direct_seconds:.2f} s")
        print(f"lag (stream -> subscriber): p50 {statistics.median(lags) * 1000:.1f} ms, "
              f"p99 {percentile(lags, 0.99) * 1000:.1f} ms, max {max(lags) * 1000:.1f} ms")
        for i, count_delivered in enumerate(delivered_direct):
            print(f"replica {i}: delivered {count_delivered:.0f} ({count_delivered / direct_seconds:.0f}/s, "
                  f"{direct / direct_seconds:.0f} events/s to each of {per_replica} subscribers)")


def check(results: list[list[tuple[str, float]]], count: int) -> None:
    for got in results:
        assert len({event_id for event_id, _ in got}) == count, "a subscriber missed or repeated an event"


async def direct_burst(redis: RedisServer, streams: list[SseStream], count: int
                       ) -> tuple[list[list[tuple[str, float]]], float]:
    if not count:
        return [], 0.0
    shared = SharedState(RedisConfig(url=redis.url, timeout_seconds=2.0), Metrics())
    store = RedisEventStore(shared, shared.blocking_client(5.0), max_length=max(10000, count), dedupe_seconds=600)
    try:
        started = time.perf_counter()
        collecting = [asyncio.create_task(collect(s, count)) for s in streams]
        def event(n: int) -> str:
            return json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "IVS Stage Update",
                               "source": "aws.ivs", "account": "123456789012", "time": "2026-12-02T00:00:00Z",
                               "region": REGION, "resources": [stage(f"Direct{n % 50}")],
                               "detail": {"event_name": "Participant Joined", "sent_at": time.time()}})

        for start in range(0, count, 50):  # 50 appends in flight, as many receiving replicas would
            await asyncio.gather(*(store.append(parse_event(event(n))) for n in range(start, min(start + 50, count))))
        results = await asyncio.gather(*collecting)
        return results, time.perf_counter() - started
    finally:
        await store.close()
        await shared.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=300, help="through EventBridge and SQS (moto)")
    parser.add_argument("--direct", type=int, default=5000, help="appended to the Redis stream directly")
    parser.add_argument("--subscribers", type=int, default=2, help="per replica")
    args = parser.parse_args()
    asyncio.run(run(args.events, args.direct, args.subscribers))


if __name__ == "__main__":
    main()
