"""Graceful drain of a real `ivs-proxy serve` process: SIGTERM with slow requests in
flight, the drain-timeout cut-off, and the admin endpoint that stops a sidecar."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from tests.support import fault_upstream as fault
from tests.support.fault_upstream import FaultUpstream
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for
from tests.support.proxy_process import ProxyProcess, static_credentials_env

JSON_HEADERS = {"Content-Type": "application/json"}
IN_FLIGHT = 30
DELAY, TIMEOUT = 0.5, 5.0


@pytest.fixture
async def slow_upstream(aiohttp_server) -> tuple[FaultUpstream, TestServer]:  # type: ignore[no-untyped-def]
    upstream = FaultUpstream(secret_key=TEST_CREDENTIALS.secret_key, default=fault.respond(delay=1.0))
    return upstream, await aiohttp_server(upstream.app())


@pytest.fixture
async def started(slow_upstream, tmp_path: Path) -> AsyncIterator[ProxyProcess]:  # type: ignore[no-untyped-def]
    """`serve` with a 0.5 s drain delay and a 5 s drain timeout (override with a config file)."""
    config = tmp_path / "proxy.yaml"
    config.write_text(f"shutdown:\n  drain_delay_seconds: {DELAY}\n  drain_timeout_seconds: {TIMEOUT}\n")
    process = ProxyProcess(static_credentials_env(str(slow_upstream[1].make_url("")).rstrip("/")), args=("--drain-delay", str(DELAY)), config=config)
    await asyncio.to_thread(process.start)
    yield process
    await asyncio.to_thread(process.stop)


async def exit_code(process: ProxyProcess, within: float) -> int:
    assert process.process is not None
    return await asyncio.to_thread(process.process.wait, within)


async def test_sigterm_lets_every_request_in_flight_finish_and_exits_0(slow_upstream, started) -> None:  # type: ignore[no-untyped-def]
    upstream, _ = slow_upstream
    process = started
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        calls = [asyncio.ensure_future(session.post(f"{process.url}/ListChannels", data=b"{}", headers=JSON_HEADERS))
                 for _ in range(IN_FLIGHT)]
        async with asyncio.timeout(10):
            while upstream.paths().count("/ListChannels") < IN_FLIGHT:
                await asyncio.sleep(0.01)

        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        async with asyncio.timeout(DELAY):  # readiness turns 503 at once, well inside the delay
            while True:
                async with session.get(f"{process.admin_url}/readyz") as ready:
                    if ready.status == 503:
                        assert (await ready.json())["reason"] == "draining"
                        break
                await asyncio.sleep(0.02)
        # Still accepting during the delay; the answer says to reconnect elsewhere.
        async with aiohttp.ClientSession() as fresh, fresh.post(
            f"{process.url}/ListChannels", data=b"{}", headers=JSON_HEADERS
        ) as late:
            assert late.status == 200
            assert late.headers["Connection"] == "close"

        responses = await asyncio.gather(*calls)
        assert [r.status for r in responses] == [200] * IN_FLIGHT
        assert all(r.headers.get("Connection") == "close" for r in responses)
        for response in responses:
            response.release()

    assert await exit_code(process, DELAY + TIMEOUT + 1) == 0
    assert time.monotonic() - signalled < DELAY + TIMEOUT + 1
    output = process.output()
    assert "draining" in output and "drained" in output
    assert "Task was destroyed" not in output and "Traceback" not in output


async def test_requests_still_running_at_the_drain_timeout_get_a_503(slow_upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream, server = slow_upstream
    upstream.default = fault.gate(asyncio.Event())  # AWS never answers
    config = tmp_path / "proxy.yaml"
    config.write_text("shutdown:\n  drain_timeout_seconds: 0.3\n")
    process = ProxyProcess(static_credentials_env(str(server.make_url("")).rstrip("/")), config=config)
    await asyncio.to_thread(process.start)
    try:
        async with aiohttp.ClientSession() as session:
            call = asyncio.ensure_future(session.post(f"{process.url}/CreateChannel", data=b"{}", headers=JSON_HEADERS))
            async with asyncio.timeout(10):  # (the start-up STS GetCallerIdentity is POST /)
                while "/CreateChannel" not in upstream.paths():
                    await asyncio.sleep(0.01)
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)
            async with await call as response:
                assert response.status == 503
                assert response.headers["x-ivs-proxy-error"] == "shutting_down"
                assert response.headers["Connection"] == "close"
                body = await response.json()
                assert "may or may not have reached AWS" in body["message"]
        assert await exit_code(process, 0.3 + 1) == 0
    finally:
        output = await asyncio.to_thread(process.stop)
    assert "drain_timeout" in output
    assert "Task was destroyed" not in output and "Traceback" not in output


async def test_quitquitquit_starts_a_drain_without_the_delay_and_only_from_loopback(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for(str(recording[1].make_url("")).rstrip("/"))
    admin = await aiohttp_client(proxy.admin_app)
    assert (await admin.get("/quitquitquit")).status == 405  # a stray GET (a crawler, a prefetch) stops nothing
    assert not proxy.state.drain.stop_requested.is_set()
    response = await admin.post("/quitquitquit")
    assert (response.status, await response.json()) == (200, {"stopping": True})
    assert proxy.state.drain.stop_requested.is_set() and proxy.state.drain.skip_delay


async def test_no_access_line_is_lost_at_a_sigterm_stop(slow_upstream, started) -> None:  # type: ignore[no-untyped-def]
    """Access lines wait a moment before they are written: the last ones, of requests that
    finished just before the process exited, are written too, each once."""
    upstream, _ = slow_upstream
    process = started
    ids = [f"drain-{i}" for i in range(5)]
    async with aiohttp.ClientSession() as session:
        calls = [asyncio.ensure_future(session.post(f"{process.url}/ListChannels", data=b"{}",
                                                    headers={**JSON_HEADERS, "X-Request-Id": i})) for i in ids]
        async with asyncio.timeout(10):
            while upstream.paths().count("/ListChannels") < len(ids):
                await asyncio.sleep(0.01)
        assert process.process is not None
        process.process.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*calls)
        assert [r.status for r in responses] == [200] * len(ids)
        for response in responses:
            response.release()
    assert await exit_code(process, DELAY + TIMEOUT + 1) == 0
    access = [json.loads(line) for line in process.output().splitlines()
              if line.startswith("{") and json.loads(line)["event"] == "request"]
    assert sorted(line["request_id"] for line in access) == ids
