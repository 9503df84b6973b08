"""Gateway mode: one team's slow client takes at most its share of the body-read budget
(`limits.max_share_per_caller`); the caller is known from the headers, before the body."""

from __future__ import annotations

import asyncio
import json

from proxy.serve.listener import bind_listener, bound_port, start_listener
from tests.support.gateway import CHAT, VIDEO, Team, gateway_for, gateway_settings


def slow_head(team: Team) -> bytes:
    return (b"POST /ListChannels HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + team.token.encode() + b"\r\nContent-Length: 1000\r\n\r\n")


async def test_a_team_cannot_take_more_than_its_share_of_body_reads(recording) -> None:  # type: ignore[no-untyped-def]
    _, server = recording
    settings = gateway_settings(limits={"body_grace_seconds": 3.0, "max_body_reads": 4, "max_share_per_caller": 0.5})
    proxy = gateway_for(str(server.make_url("")).rstrip("/"), settings)
    runner = await start_listener(proxy.data_app, bind_listener("127.0.0.1:0"), proxy.config.limits)
    port = bound_port(runner)
    writers = []
    try:
        for team in (CHAT, CHAT):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(slow_head(team))
            writers.append(writer)
        await asyncio.sleep(0.7)  # past the uncounted half second: both hold a body-read slot
        assert proxy.state.body_reads.active == 2

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(slow_head(CHAT))  # chat-team's third: over its share of 2, from the same address
        async with asyncio.timeout(3):
            raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split()[1] == b"503"
        assert json.loads(body)["reason"] == "caller_share"

        for team in (VIDEO, VIDEO):  # the other team, same client address, keeps its share
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(slow_head(team))
            writers.append(writer)
        await asyncio.sleep(0.7)
        assert proxy.state.body_reads.active == 4
        rejected = proxy.state.metrics.registry.get_sample_value("ivs_proxy_rejected_total", {"reason": "caller_share"})
        assert rejected == 1
    finally:
        for writer in writers:
            writer.close()
        await runner.cleanup()
    assert proxy.state.body_reads.active == 0
