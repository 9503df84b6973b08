"""GET /_ivs-proxy/events in process: SSE framing, filters, resume, heartbeats, a subscriber
that falls behind, the policy in gateway mode, and the drain ending streams at once. Events
are put straight into the store (the SQS side is tests/e2e/test_events.py); the queue URL
points nowhere, so the poller backs off and says events are delayed."""

from __future__ import annotations

import asyncio
import copy
import socket
from typing import Any

from prometheus_client import CollectorRegistry

from proxy.app import Proxy
from proxy.events.envelope import parse_event
from tests.support.gateway import (
    CHAT,
    POLICY,
    VIDEO,
    captured_logs,
    channel,
    gateway_for,
    gateway_settings,
)
from tests.support.inprocess import proxy_for
from tests.support.ivs_events import event_body, stage, stage_update_detail
from tests.support.sse import SseStream

PATH = "/_ivs-proxy/events"
EVENTS = {"queue_url": "http://127.0.0.1:9/123456789012/ivs-events", "heartbeat_seconds": 0.2,
          "wait_time_seconds": 1, "max_backoff_seconds": 1.0}


def store_of(proxy: Proxy):  # type: ignore[no-untyped-def]
    assert proxy.events is not None
    return proxy.events.delivery.store


async def put(proxy: Proxy, resources: list[str], detail_type: str = "IVS Stream State Change",
              event_id: str | None = None) -> str | None:
    detail = stage_update_detail() if detail_type == "IVS Stage Update" else None
    return await store_of(proxy).append(parse_event(event_body(resources, detail_type, detail, event_id=event_id)))


async def connect(client: Any, query: str = "", headers: dict[str, str] | None = None) -> SseStream:
    response = await client.get(PATH + query, headers=headers or {})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    stream = SseStream(response)
    # The stream opens with a `retry:` hint and a comment; wait for it so that the
    # subscriber is registered before the test stores events.
    while "subscribed" not in stream.comments:
        line = (await asyncio.wait_for(response.content.readline(), 5)).decode()
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
    return stream


async def test_events_filters_heartbeats_and_resume(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for("http://127.0.0.1:9", {"events": EVENTS})
    client = await aiohttp_client(proxy.data_app)
    everything = await connect(client)
    stages = await connect(client, "?type=IVS%20Stage%20Update")
    one_channel = await connect(client, "?resource=" + channel("abc*"))
    first = await put(proxy, [channel("abc1")], event_id="ev-1")
    await put(proxy, [stage("s1")], "IVS Stage Update", event_id="ev-2")
    await put(proxy, [channel("zzz")], event_id="ev-3")
    got = await everything.events(3)
    assert [m.json()["id"] for m in got] == ["ev-1", "ev-2", "ev-3"]
    assert got[0].id == first and got[0].event == "message"
    assert [m.json()["id"] for m in await stages.events(1)] == ["ev-2"]
    assert [m.json()["id"] for m in await one_channel.events(1)] == ["ev-1"]
    # Nothing more to send: a heartbeat comment within heartbeat_seconds.
    assert await asyncio.wait_for(everything.response.content.readline(), 2) == b": heartbeat\n"
    # Resume after the first: the two after it, and then live ones.
    resumed = await connect(client, headers={"Last-Event-ID": str(first)})
    await put(proxy, [channel("abc2")], event_id="ev-4")
    assert [m.json()["id"] for m in await resumed.events(3)] == ["ev-2", "ev-3", "ev-4"]


async def test_bad_subscriptions_are_400s(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for("http://127.0.0.1:9", {"events": EVENTS})
    client = await aiohttp_client(proxy.data_app)
    for query, headers, says in [
        ("?resource=channel/abc", {}, "a resource is an ARN"),
        ("?colour=blue", {}, "unknown query parameter 'colour'"),
        ("", {"Last-Event-ID": "yesterday"}, "Last-Event-ID must be"),
    ]:
        answer = await client.get(PATH + query, headers=headers)
        assert answer.status == 400 and answer.headers["x-amzn-ErrorType"] == "ValidationException"
        assert says in (await answer.json())["message"]


async def test_a_subscriber_that_falls_behind_is_told_and_resumes(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    proxy = proxy_for("http://127.0.0.1:9", {"events": {**EVENTS, "subscriber_buffer": 2}}, registry=registry)
    client = await aiohttp_client(proxy.data_app)
    slow = await connect(client)
    for n in range(6):  # one batch for the reader: more than the buffer holds at once
        await put(proxy, [channel("c")], event_id=f"burst-{n}")
    got = await slow.events(6)
    delivered = [m for m in got if m.event == "message"]
    behind = [m for m in got if m.event == "fell-behind"]
    assert behind and behind[0].json()["last_event_id"] == delivered[-1].id and len(delivered) < 6
    assert await slow.next(2) is None  # the stream ends
    again = await connect(client, headers={"Last-Event-ID": delivered[-1].id})
    rest = await again.events(6 - len(delivered))
    assert [m.json()["id"] for m in delivered + rest] == [f"burst-{n}" for n in range(6)]
    assert registry.get_sample_value("ivs_proxy_events_subscribers_cut_total", {"reason": "behind"}) == 1
    assert registry.get_sample_value("ivs_proxy_events_delivered_total", {"type": "IVS Stream State Change"}) == 6


async def test_the_gateway_sends_each_caller_what_its_policy_allows(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    policy = copy.deepcopy(POLICY)
    policy["video-team"]["Statement"].append({"Sid": "OwnEvents", "Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents",
                                              "Resource": [channel("Video*"), stage("Video*")]})
    policy["chat-team"]["Statement"] += [
        {"Sid": "AllEvents", "Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents", "Resource": "*"},
        {"Sid": "NoVideoEvents", "Effect": "Deny", "Action": "ivs-proxy:SubscribeEvents", "Resource": channel("Video*")},
    ]
    registry = CollectorRegistry()
    with captured_logs() as logs:
        proxy = gateway_for("http://127.0.0.1:9", gateway_settings(policy={"callers": policy}, events=EVENTS),
                            registry=registry)
        client = await aiohttp_client(proxy.data_app)
        assert (await client.get(PATH)).status == 401
        video_bearer = {"Authorization": f"Bearer {VIDEO.token}"}
        refused = await client.get(PATH, headers=video_bearer)  # no filter: only Resource "*" allows that
        assert refused.status == 403 and "ivs-proxy:SubscribeEvents" in (await refused.json())["message"]
        video = await connect(client, f"?resource={channel('Video*')}&resource={stage('Video*')}", video_bearer)
        chat = await connect(client, headers={"Authorization": f"Bearer {CHAT.token}"})
        await put(proxy, [channel("VideoMain001")], event_id="v1")
        await put(proxy, [stage("ChatStage")], "IVS Stage Update", event_id="c1")
        await put(proxy, [stage("VideoStage"), channel("ChatChannel")], event_id="both")
        await put(proxy, [channel("VideoBackup01"), stage("Shared")], event_id="denied-for-chat")
        assert [m.json()["id"] for m in await video.events(3)] == ["v1", "both", "denied-for-chat"]
        assert [m.json()["id"] for m in await chat.events(2)] == ["c1", "both"]
    assert registry.get_sample_value("ivs_proxy_events_filtered_total", {"reason": "policy"}) == 2
    assert registry.get_sample_value("ivs_proxy_events_subscribers") == 2
    decisions = [(line["caller"], line["action"], line["decision"]) for line in logs.audit()
                 if line["event"] == "authorization"]
    # One audited decision per subscription; the per-event filtering is counted, not audited.
    assert decisions == [("video-team", "ivs-proxy:SubscribeEvents", "deny"),
                         ("video-team", "ivs-proxy:SubscribeEvents", "allow"),
                         ("chat-team", "ivs-proxy:SubscribeEvents", "allow")]


async def test_the_drain_ends_streams_at_once(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    proxy = proxy_for("http://127.0.0.1:9", {"events": {**EVENTS, "heartbeat_seconds": 30}}, registry=registry)
    client = await aiohttp_client(proxy.data_app)
    stream = await connect(client)
    proxy.state.drain.request_stop("test")
    assert await stream.next(5) is None  # ended, long before a heartbeat or the drain timeout
    assert proxy.state.drain.inflight == 0
    # Meanwhile the queue URL points nowhere: events are delayed, and the metric says so.
    for _ in range(100):
        if registry.get_sample_value("ivs_proxy_events_delayed") == 1:
            break
        await asyncio.sleep(0.05)
    assert registry.get_sample_value("ivs_proxy_events_delayed") == 1
    assert (registry.get_sample_value("ivs_proxy_events_sqs_errors_total", {"kind": "unreachable"}) or 0) >= 1


async def test_delayed_events_leave_the_proxy_ready(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    with captured_logs() as logs:
        proxy = proxy_for("http://127.0.0.1:9", {"events": EVENTS}, registry=registry)
        await aiohttp_client(proxy.data_app)
        admin = await aiohttp_client(proxy.admin_app)
        for _ in range(100):
            if registry.get_sample_value("ivs_proxy_events_delayed") == 1:
                break
            await asyncio.sleep(0.05)
        ready = await admin.get("/readyz")
        assert ready.status == 200 and await ready.json() == {"ready": True}
    delayed = [line for line in logs.lines() if line["event"] == "events_delayed"]
    assert delayed and delayed[0]["reason"] == "unreachable" and "API calls are unaffected" in delayed[0]["effect"]


async def test_a_subscriber_that_stops_reading_slows_nobody(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    """A client that never reads: its socket fills, the proxy cuts it; meanwhile another
    subscriber gets every event and API calls are answered."""
    _, upstream_server = recording
    registry = CollectorRegistry()
    # A buffer that holds the whole flood: here only not reading gets a subscriber cut.
    proxy = proxy_for(str(upstream_server.make_url("")).rstrip("/"), {"events": {**EVENTS, "subscriber_buffer": 4000}},
                      registry=registry)
    assert proxy.events is not None
    proxy.events.delivery.write_timeout_seconds = 2.0
    client = await aiohttp_client(proxy.data_app)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the proxy's writes block soon
    stuck.setblocking(False)
    await asyncio.get_running_loop().sock_connect(stuck, (client.host, client.port))
    _, writer = await asyncio.open_connection(sock=stuck)
    writer.write(f"GET {PATH} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode())  # and never read again
    await writer.drain()
    fast = await connect(client)
    for _ in range(100):
        if registry.get_sample_value("ivs_proxy_events_subscribers") == 2:
            break
        await asyncio.sleep(0.01)
    padding = stage_update_detail() | {"padding": "x" * 8000}
    count = 800  # ~6.5 MB: more than the proxy's socket send buffer and the stuck client's window
    reading = asyncio.create_task(fast.events(count))
    for n in range(count):
        await store_of(proxy).append(parse_event(event_body([stage("S")], "IVS Stage Update", padding,
                                                            event_id=f"flood-{n}")))
        if n % 50 == 0:
            answer = await client.post("/ListChannels", json={})  # the API path, during the flood
            assert answer.status == 200
        await asyncio.sleep(0)  # one loop runs the proxy, the flood and the reader: give the reader its turn
    got = await reading
    assert len([m for m in got if m.event == "message"]) == count
    for _ in range(200):
        cut = registry.get_sample_value("ivs_proxy_events_subscribers_cut_total", {"reason": "write_timeout"})
        if cut and registry.get_sample_value("ivs_proxy_events_subscribers") == 1:
            break
        await asyncio.sleep(0.05)
    assert cut == 1 and registry.get_sample_value("ivs_proxy_events_subscribers") == 1
    writer.close()
