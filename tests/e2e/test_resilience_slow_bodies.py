"""Slow bodies cannot lock ordinary callers out (docs/resilience.md, "Overload and slow or hostile callers").

Against the real `serve` process with its default limits, as a sidecar and as a gateway (where
the slow connections are one team's and the ordinary callers another's): 300 connections send
their headers and then their body a byte at a time, while 20 ordinary boto3 callers keep calling. The
ordinary callers see no refusal; each slow connection is either cut with 408 `slow_body` by
the minimum-rate rule (before `body_timeout_seconds`) or, past `max_body_reads`, refused
503 `body_reads_full`; and the proxy's open file descriptors come back to their baseline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import proxy_env, unsigned_client
from tests.support.gateway import CHAT, VIDEO, Team
from tests.support.moto import MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess

SLOW_CONNECTIONS = 300
ORDINARY_CALLERS = 20
DEFAULT_MAX_BODY_READS = 256
DEFAULT_BODY_TIMEOUT = 10.0
LIVENESS_SECONDS = 30.0  # generous: the rule cuts them after about 2 s


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(proxy: ProxyProcess, name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"{proxy.admin_url}/metrics", timeout=5).read().decode()
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(params=["sidecar", "gateway"])
def subject(request: pytest.FixtureRequest, moto: MotoServer, role_credentials: SessionCredentials,
            tmp_path: Path) -> Iterator[tuple[ProxyProcess, Team | None, Team | None]]:
    """(the proxy, the slow connections' team, the ordinary callers' team); no teams as a sidecar."""
    if request.param == "sidecar":
        process = ProxyProcess(proxy_env(moto, role_credentials))
        slow_team = ordinary_team = None
    else:
        slow_team, ordinary_team = CHAT, VIDEO
        config = tmp_path / "gateway.json"
        config.write_text(json.dumps({  # JSON is YAML; default limits, as the sidecar's
            "mode": "gateway",
            "auth": {"bearer": {"tokens": {t.name: [t.token_digest] for t in (slow_team, ordinary_team)}}},
            "policy": {"callers": {t.name: {"Statement": [
                {"Effect": "Allow", "Action": "ivs:ListChannels", "Resource": "*"}]} for t in (slow_team, ordinary_team)}},
        }))
        process = ProxyProcess(proxy_env(moto, role_credentials), config=config)
    process.start()
    yield process, slow_team, ordinary_team
    process.stop()


def bearer(team: Team | None) -> bytes:
    return f"Authorization: Bearer {team.token}\r\n".encode() if team else b""


async def slow_body(port: int, team: Team | None = None) -> tuple[int, str, float]:
    """Headers at once, then a byte every 0.2 s; (status, reason, seconds until the proxy closed).
    A reset is (0, "reset", ...): the proxy closes with the client's latest bytes unread, and
    the kernel may then answer with RST, which can overtake the 408 or 503 already sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(b"POST /ListChannels HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
                 + bearer(team) + b"Content-Length: 1000\r\n\r\n")

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):
                await writer.drain()
                await asyncio.sleep(0.2)
                writer.write(b" ")

    trickling = asyncio.create_task(trickle())
    try:
        async with asyncio.timeout(LIVENESS_SECONDS):
            try:
                raw = await reader.read()  # to EOF: a cut closes the connection
            except ConnectionResetError:
                raw = b""
        seconds = time.monotonic() - started
    finally:
        trickling.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if not raw:
        return 0, "reset", seconds
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["reason"], seconds


def call_until(stop: threading.Event, url: str, team: Team | None = None) -> list[str]:
    """One ordinary caller: ListChannels in a loop; the outcome of each call."""
    client = unsigned_client("ivs", url)
    if team is not None:
        def authorize(request, **_: object) -> None:  # type: ignore[no-untyped-def]
            request.headers["Authorization"] = f"Bearer {team.token}"

        client.meta.events.register("before-send.ivs.*", authorize)
    outcomes = []
    try:
        while not stop.is_set() or not outcomes:
            try:
                client.list_channels()
                outcomes.append("ok")
            except Exception as exc:  # noqa: BLE001 (every failure is an outcome to report)
                outcomes.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
    return outcomes


async def test_slow_bodies_lock_no_ordinary_caller_out(
        subject: tuple[ProxyProcess, Team | None, Team | None]) -> None:
    proxy, slow_team, ordinary_team = subject
    assert proxy.process is not None
    pid = proxy.process.pid
    one_call = threading.Event()
    one_call.set()
    assert call_until(one_call, proxy.url, ordinary_team) == ["ok"]  # pool and credentials in place
    baseline = open_fds(pid)

    stop = threading.Event()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(ORDINARY_CALLERS) as pool:
        callers = [loop.run_in_executor(pool, call_until, stop, proxy.url, ordinary_team)
                   for _ in range(ORDINARY_CALLERS)]
        try:
            slow = await asyncio.gather(*(slow_body(proxy.port, slow_team) for _ in range(SLOW_CONNECTIONS)))
        finally:
            stop.set()
        outcomes = [outcome for caller in await asyncio.gather(*callers) for outcome in caller]

    refused = [o for o in outcomes if o != "ok"]
    assert refused == [], f"{len(refused)} of {len(outcomes)} ordinary calls failed, e.g. {refused[:3]}"

    kinds = Counter((status, reason) for status, reason, _ in slow)
    assert set(kinds) <= {(408, "slow_body"), (503, "body_reads_full"), (0, "reset")}, kinds
    # Every one was cut by the minimum rate, not left to run into the total body timeout.
    assert max(seconds for _, _, seconds in slow) < DEFAULT_BODY_TIMEOUT

    cut = metric(proxy, "ivs_proxy_slow_bodies_cut_total", rule="min_rate")
    refused = metric(proxy, "ivs_proxy_rejected_total", reason="body_reads_full")
    # At most max_body_reads are held at once; a connection that arrives after another was cut
    # may take its slot (on a loaded machine the 300 take seconds to open), so cuts may pass it.
    assert 0 < cut and (refused == 0 or cut >= DEFAULT_MAX_BODY_READS)
    assert cut + refused == SLOW_CONNECTIONS
    assert kinds[408, "slow_body"] <= cut and kinds[503, "body_reads_full"] <= refused
    assert metric(proxy, "ivs_proxy_rejected_total", reason="slow_body") == cut
    assert metric(proxy, "ivs_proxy_slow_bodies_cut_total", rule="timeout") == 0
    assert metric(proxy, "ivs_proxy_rejected_total", reason="overloaded") == 0
    assert metric(proxy, "ivs_proxy_slots_held", phase="body_read") == 0
    assert metric(proxy, "ivs_proxy_slots_held", phase="in_flight") == 0

    deadline = time.monotonic() + 10
    while open_fds(pid) > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert open_fds(pid) <= baseline, (open_fds(pid), baseline)
