"""IVS events end to end, from real parts: moto (server mode, IAM auth on: the proxy's SQS
calls are signed with its role's session and checked) holds the queue and an EventBridge
rule with the queue as its target; `PutEvents` puts IVS-shaped events, which moto delivers
to the queue as EventBridge does. Two gateway processes share one real redis-server, and
apps subscribe over plain HTTP (SSE) with bearer tokens, holding no AWS credentials.

Each subscriber gets exactly the events its policy lets it see, whichever replica read
them from SQS; a reconnect to the other replica with Last-Event-ID misses nothing; an event
SQS delivers twice reaches nobody twice; and killing a replica mid-stream loses nothing.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import proxy_env
from tests.support.gateway import CHAT, POLICY, VIDEO, channel, gateway_settings, secrets_env
from tests.support.ivs_events import (
    create_queue_and_rule,
    event_body,
    stage,
    stage_update_detail,
    stream_state_detail,
)
from tests.support.moto import REGION, MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess
from tests.support.redis_server import RedisServer, require_redis
from tests.support.sse import Message, SseStream

PATH = "/_ivs-proxy/events"
VIDEO_FILTER = f"?resource={channel('Video*')}&resource={stage('Video*')}"


def events_policy() -> dict[str, Any]:
    policy = copy.deepcopy(POLICY)
    policy["video-team"]["Statement"].append({"Sid": "OwnEvents", "Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents",
                                              "Resource": [channel("Video*"), stage("Video*")]})
    policy["chat-team"]["Statement"] += [
        {"Sid": "Events", "Effect": "Allow", "Action": "ivs-proxy:SubscribeEvents", "Resource": "*"},
        {"Sid": "NoVideoEvents", "Effect": "Deny", "Action": "ivs-proxy:SubscribeEvents",
         "Resource": [channel("Video*"), stage("Video*")]},
    ]
    return policy


@dataclass
class Cluster:
    moto: MotoServer
    queue_url: str
    replicas: list[ProxyProcess]
    events: Any  # the admin's EventBridge client
    sqs: Any  # the admin's SQS client

    def put(self, *entries: tuple[list[str], str]) -> list[str]:
        """PutEvents, as IVS would emit them; returns the event ids (those EventBridge assigned)."""
        ids = []
        for start in range(0, len(entries), 10):
            batch = [{"Source": "aws.ivs", "DetailType": detail_type, "Resources": resources,
                      "Detail": json.dumps(stage_update_detail() if detail_type == "IVS Stage Update"
                                           else stream_state_detail(resources[0]))}
                     for resources, detail_type in entries[start:start + 10]]
            answer = self.events.put_events(Entries=batch)
            assert answer["FailedEntryCount"] == 0
            ids += [entry["EventId"] for entry in answer["Entries"]]
        return ids

    def drained(self, timeout: float = 20.0) -> None:
        """Wait until every message was stored and deleted by some replica."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
            if attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0":
                return
            time.sleep(0.1)
        raise TimeoutError("the queue was not drained")


@pytest.fixture(scope="module")
def cluster(moto: MotoServer, role_credentials: SessionCredentials, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    require_redis()
    url, sqs, events = create_queue_and_rule(moto)
    redis = RedisServer()
    redis.start()
    settings = gateway_settings(
        region=REGION, policy={"callers": events_policy()}, redis={"url": redis.url},
        events={"queue_url": url, "wait_time_seconds": 1, "heartbeat_seconds": 1, "max_backoff_seconds": 1},
    )
    config = tmp_path_factory.mktemp("events") / "gateway.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**proxy_env(moto, role_credentials), **secrets_env()}
    replicas = [ProxyProcess(env, config=config) for _ in range(2)]
    try:
        threads = [threading.Thread(target=replica.start) for replica in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(r.process is not None and r.process.poll() is None for r in replicas)
        yield Cluster(moto, url, replicas, events, sqs)
    finally:
        for replica in replicas:
            if replica.process is not None:
                replica.stop()
        redis.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_read=30)) as client:
        yield client


async def subscribe(session: aiohttp.ClientSession, replica: ProxyProcess, token: str, query: str = "",
                    last_id: str | None = None) -> SseStream:
    headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": last_id} if last_id else {})}
    response = await session.get(replica.url + PATH + query, headers=headers)
    assert response.status == 200, await response.text()
    stream = SseStream(response)
    while "subscribed" not in stream.comments:  # registered: events stored from now on reach it
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode()
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
    return stream


async def until(stream: SseStream, event_id: str, limit: int = 200) -> list[Message]:
    """The IVS events up to and including the one with `event_id` (bounded)."""
    found: list[Message] = []
    for _ in range(limit):
        message = await stream.next(timeout=20)
        assert message is not None, "the stream ended"
        if message.event != "message":
            continue
        found.append(message)
        if message.json()["id"] == event_id:
            return found
    raise AssertionError(f"{event_id} did not arrive within {limit} events")


def ids(messages: list[Message]) -> list[str]:
    return [m.json()["id"] for m in messages]


async def skip_to_start(cluster: Cluster, video: tuple[SseStream, ...] = (), chat: tuple[SseStream, ...] = ()) -> None:
    """Past what earlier tests left on its way: once the queue is drained, a first event for
    each team, read up to; whatever was stored before it comes before it in the stream."""
    await asyncio.to_thread(cluster.drained)
    video_start, chat_start = await asyncio.to_thread(cluster.put, ([stage("VideoStart")], "IVS Stage Update"),
                                                      ([stage("ChatStart")], "IVS Stage Update"))
    for streams, start in ((video, video_start), (chat, chat_start)):
        for stream in streams:
            await until(stream, start)


async def ends(cluster: Cluster) -> tuple[str, str]:
    """Once every event put so far is stored: one last event for each subscriber, so that
    reading up to it shows everything it got (and that nothing else came)."""
    await asyncio.to_thread(cluster.drained)
    video_end, chat_end = await asyncio.to_thread(cluster.put, ([stage("VideoEnd")], "IVS Stage Update"),
                                                  ([stage("ChatEnd")], "IVS Stage Update"))
    return video_end, chat_end


async def test_each_subscriber_gets_exactly_what_it_may_see(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    video = await subscribe(session, a, VIDEO.token, VIDEO_FILTER)
    chat = await subscribe(session, b, CHAT.token)
    await skip_to_start(cluster, (video,), (chat,))
    video_only, chat_only, composition, other_stage = await asyncio.to_thread(
        cluster.put, ([channel("VideoMain001")], "IVS Stream State Change"),
        ([stage("ChatStage")], "IVS Stage Update"),
        ([stage("VideoStage1"), channel("ChatChannel1")], "IVS Composition State Change"),
        ([stage("Other")], "IVS Limit Breach"),
    )
    video_end, chat_end = await ends(cluster)
    # video: its Video* ARNs (one is enough); chat: all but those (its Deny on any ARN withholds the event).
    assert sorted(ids(await until(video, video_end))) == sorted([video_only, composition, video_end])
    assert sorted(ids(await until(chat, chat_end))) == sorted([chat_only, other_stage, chat_end])
    # Unauthenticated, or asking for what its policy does not allow: refused before any stream.
    async with session.get(a.url + PATH) as anonymous:
        assert anonymous.status == 401
    async with session.get(b.url + PATH + f"?resource={channel('ChatChannel1')}",
                           headers={"Authorization": f"Bearer {VIDEO.token}"}) as denied:
        assert denied.status == 403 and denied.headers["x-amzn-ErrorType"] == "AccessDeniedException"


async def test_a_reconnect_to_the_other_replica_misses_nothing(cluster: Cluster,
                                                              session: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    video = await subscribe(session, a, VIDEO.token, VIDEO_FILTER)
    await skip_to_start(cluster, (video,))
    first = await asyncio.to_thread(cluster.put, *[([channel(f"VideoCh{n}")], "IVS Stream State Change")
                                                    for n in range(3)])
    got = []
    for _ in range(3):
        message = await video.next(20)
        assert message is not None
        got.append(message)
    video.response.close()
    # Disconnected: these are stored while nobody of video's is connected.
    missed = await asyncio.to_thread(cluster.put, *[([channel(f"VideoCh{n}")], "IVS Stream State Change")
                                                     for n in range(3, 6)])
    video_end, _ = await ends(cluster)
    again = await subscribe(session, b, VIDEO.token, VIDEO_FILTER, last_id=got[-1].id)
    rest = await until(again, video_end)
    assert sorted(ids(got) + ids(rest)) == sorted([*first, *missed, video_end])


async def test_a_repeated_delivery_reaches_nobody_twice(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    chat_on_a = await subscribe(session, a, CHAT.token)
    chat_on_b = await subscribe(session, b, CHAT.token)
    await skip_to_start(cluster, chat=(chat_on_a, chat_on_b))
    body = event_body([stage("ChatTwice")], "IVS Stage Update", stage_update_detail())
    for _ in range(3):  # at least once: EventBridge, or SQS, delivered it three times
        await asyncio.to_thread(cluster.sqs.send_message, QueueUrl=cluster.queue_url, MessageBody=body)
    _, chat_end = await ends(cluster)
    twice = json.loads(body)["id"]
    for stream in (chat_on_a, chat_on_b):
        assert ids(await until(stream, chat_end)) == [twice, chat_end]
    async with session.get(a.admin_url + "/metrics") as metrics:
        text = await metrics.text()
    assert "ivs_proxy_events_duplicates_total" in text


def doc_block(language: str) -> str:
    """The one fenced `language` block of docs/events.md's worked example."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    section = text.split("### Worked example", 1)[1]
    return section.split(f"```{language}\n", 1)[1].split("```", 1)[0]


async def wait_for_subscribers(session: aiohttp.ClientSession, replica: ProxyProcess, count: int) -> None:
    """Until `replica` has exactly `count` subscribers (those of earlier tests gone: the
    proxy notices a closed connection at its next heartbeat)."""
    for _ in range(200):
        async with session.get(replica.admin_url + "/metrics") as answer:
            text = await answer.text()
        line = next(line for line in text.splitlines() if line.startswith("ivs_proxy_events_subscribers "))
        if float(line.split()[1]) == count:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the subscriber did not connect")


async def test_the_documented_examples_follow_a_channel(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    """docs/events.md's Python block and curl line, run as written against a replica, with
    nothing but the gateway's URL and a bearer token: no AWS credentials anywhere."""
    a, _ = cluster.replicas
    await wait_for_subscribers(session, a, 0)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATEWAY": a.url, "IVS_PROXY_TOKEN": VIDEO.token}
    python = await asyncio.create_subprocess_exec(sys.executable, "-c", doc_block("python"), env=env,
                                                  stdout=asyncio.subprocess.PIPE)
    curl = None
    if shutil.which("curl"):
        command = doc_block("").strip().replace("http://ivs-proxy.ivs-proxy.svc:8080", a.url)
        # exec: the shell becomes curl, so that killing it ends curl (and its pipe) too.
        curl = await asyncio.create_subprocess_shell(f"exec {command} --max-time 30", env=env,
                                                     stdout=asyncio.subprocess.PIPE)
    try:
        await wait_for_subscribers(session, a, 2 if curl else 1)
        own = channel("VideoMain001")
        for name in ("Stream Start", "Stream End"):  # one after the other: EventBridge does not keep order
            await asyncio.to_thread(cluster.events.put_events, Entries=[{
                "Source": "aws.ivs", "DetailType": "IVS Stream State Change", "Resources": [own],
                "Detail": json.dumps(stream_state_detail(own, name))}])
            await asyncio.to_thread(cluster.drained)
        output, _ = await asyncio.wait_for(python.communicate(), 30)
        assert python.returncode == 0
        assert [line.split(" ", 1)[1] for line in output.decode().splitlines()] == ["Stream Start", "Stream End"]
        if curl is not None:
            assert curl.stdout is not None
            data: list[dict[str, Any]] = []
            while len(data) < 2:
                line = await asyncio.wait_for(curl.stdout.readline(), 20)
                assert line, "curl's stream ended"
                if line.startswith(b"data: "):
                    data.append(json.loads(line[6:]))
            assert [event["detail"]["event_name"] for event in data] == ["Stream Start", "Stream End"]
    finally:
        for process in (python, curl):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()


# Last: it leaves one replica.
async def test_killing_a_replica_mid_stream_loses_nothing(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    a, b = cluster.replicas
    on_a = await subscribe(session, a, CHAT.token)
    on_b = await subscribe(session, b, CHAT.token)
    await skip_to_start(cluster, chat=(on_a, on_b))
    burst = await asyncio.to_thread(cluster.put, *[([stage(f"ChatBurst{n}")], "IVS Stage Update") for n in range(30)])
    first = await on_a.next(20)
    assert first is not None and first.event == "message"
    assert a.process is not None
    a.process.kill()  # SIGKILL: no drain, no goodbye; whatever it received and did not store comes back
    a.process.wait(timeout=10)
    # Its subscriber reconnects, to the replica that is left, from its last event.
    again = await subscribe(session, b, CHAT.token, last_id=first.id)
    _, chat_end = await ends(cluster)
    assert sorted(ids(await until(on_b, chat_end))) == sorted([*burst, chat_end])
    assert sorted([first.json()["id"], *ids(await until(again, chat_end))]) == sorted([*burst, chat_end])
