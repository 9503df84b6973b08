"""`ivs-proxy serve --workers N` as operators run it: one data port served by several
processes, one admin port that speaks for all of them, restarts, and the stop."""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.net import free_port
from tests.support.proxy_process import ProxyProcess
from tests.support.recording_upstream import RecordingUpstream

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
JSON_HEADERS = {"Content-Type": "application/json"}
#: SO_REUSEPORT picks a listener by a hash of each connection's addresses and ports: with
#: this many fresh connections, both of two workers serve some unless the hash is broken
#: (a given worker misses all of them with probability 2**-60).
FRESH_CONNECTIONS = 60


def process_env(upstream: TestServer, *, short_lived: bool = True) -> dict[str, str]:
    env = {
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key,
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
        "AWS_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": str(upstream.make_url("")).rstrip("/"),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if short_lived:
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        env |= {"AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "",
                "AWS_CREDENTIAL_EXPIRATION": expires.isoformat(timespec="seconds")}
    return env


@pytest.fixture
async def upstream(aiohttp_server) -> tuple[RecordingUpstream, TestServer]:  # type: ignore[no-untyped-def]
    recording = RecordingUpstream(secret_key=TEST_CREDENTIALS.secret_key)
    return recording, await aiohttp_server(recording.app())


async def access_lines(process: ProxyProcess, expected: int) -> list[dict[str, Any]]:
    """The access lines written so far, once `expected` are there (or after 10 s): a worker
    writes its lines in batches, at most 50 ms after the answer."""
    for _ in range(200):
        access = [line for line in lines(process.output()) if line["event"] == "request"]
        if len(access) >= expected:
            break
        await asyncio.sleep(0.05)
    return access


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def supervisor_line(output: str) -> dict[str, Any]:
    return next(line for line in lines(output) if line["event"] == "supervising")


def total(exposition: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(exposition)
               for sample in family.samples if sample.name == name)


def monitoring_metric_names() -> set[str]:
    """Every metric family the alert rules and the dashboard query."""
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {re.sub(r"_(total|bucket|count|sum|created)$", "", name)
            for expr in expressions for name in re.findall(r"\bivs_proxy_[a-z_]+", expr)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def get_json_post(session: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with session.post(url) as response:
        return response.status, await response.json()


async def fresh_calls(url: str, count: int, path: str = "/ListChannels") -> list[int]:
    """`count` calls with an empty body, each on a new connection (a new source port)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        statuses = []
        for _ in range(count):
            async with session.post(f"{url}{path}", data=b"{}", headers=JSON_HEADERS) as response:
                statuses.append(response.status)
        return statuses


async def ready_workers(session: aiohttp.ClientSession, admin_url: str, within: float = 15.0) -> dict[int, int]:
    """Wait (bounded) for the supervisor's /readyz 200; worker index -> pid."""
    async with asyncio.timeout(within):
        while True:
            status, body = await get_json(session, f"{admin_url}/readyz")
            if status == 200:
                return {worker["worker"]: worker["pid"] for worker in body["workers"]}
            await asyncio.sleep(0.05)


async def test_two_workers_share_the_port_and_report_as_one(upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    recording, server = upstream
    config = tmp_path / "proxy.yaml"
    config.write_text("workers: 2\n")  # the config key; --workers would do the same
    unreachable = f"http://127.0.0.1:{free_port()}"  # ivschat's AWS: nothing listens there
    process = ProxyProcess(process_env(server) | {"AWS_ENDPOINT_URL_IVSCHAT": unreachable}, config=config)
    await asyncio.to_thread(process.start)
    try:
        async with aiohttp.ClientSession() as admin:
            pids = await ready_workers(admin, process.admin_url)
            assert sorted(pids) == [0, 1] and process.process is not None
            assert process.process.pid not in pids.values()

            assert await fresh_calls(process.url, FRESH_CONNECTIONS) == [200] * FRESH_CONNECTIONS
            # As in test_observability's mix: a refusal and an unreachable AWS, so that every
            # family the monitoring kit queries has samples (a multiprocess scrape shows none
            # for a labelled family nobody has used).
            assert await fresh_calls(process.url, 1, "/listchannels") == [404]
            assert await fresh_calls(process.url, 1, "/ivschat/ListRooms") == [502]
            sent = FRESH_CONNECTIONS + 2
            forwarded = [received for received in recording.received if received.raw_path == "/ListChannels"]
            assert len(forwarded) == FRESH_CONNECTIONS  # (the rest: each worker's STS identity lookup)
            assert all(received.signature_valid for received in forwarded)
            access = await access_lines(process, sent)
            served_by = collections.Counter(line["worker"] for line in access)
            assert sorted(served_by) == [0, 1] and sum(served_by.values()) == sent

            async with admin.get(f"{process.admin_url}/metrics") as response:
                scrape = await response.text()
            assert total(scrape, "ivs_proxy_requests_total") == sent
            assert total(scrape, "ivs_proxy_request_duration_seconds_count") == sent
            assert total(scrape, "ivs_proxy_rejected_total") == 1
            assert total(scrape, "ivs_proxy_upstream_errors_total") == 1
            assert total(scrape, "ivs_proxy_inflight_requests") == 0
            assert total(scrape, "ivs_proxy_credentials_expiry_timestamp_seconds") > 1.7e9
            assert total(scrape, "ivs_proxy_credential_refresh_total") == 2  # one fetch per worker
            assert total(scrape, "ivs_proxy_build_info") == 1  # one series, not one per worker
            assert total(scrape, "ivs_proxy_workers") == 2
            live = {family.name for family in text_string_to_metric_families(scrape)}
            assert monitoring_metric_names() <= live, monitoring_metric_names() - live

            # A worker killed outright: once it is gone (what its listener held then is lost
            # with it), the other serves the port alone until the restarted one joins.
            os.kill(pids[0], signal.SIGKILL)
            async with asyncio.timeout(10):
                while (await get_json(admin, f"{process.admin_url}/readyz"))[1]["workers"][0].get("pid") == pids[0]:
                    await asyncio.sleep(0.01)
            assert await fresh_calls(process.url, 10) == [200] * 10
            restarted = await ready_workers(admin, process.admin_url)
            assert restarted[0] != pids[0] and restarted[1] == pids[1]
            assert await fresh_calls(process.url, 10) == [200] * 10
            async with admin.get(f"{process.admin_url}/metrics") as response:
                scrape = await response.text()
            # The dead worker's counts stay in the sum; its gauges leave it.
            assert total(scrape, "ivs_proxy_requests_total") == sent + 20
            assert total(scrape, "ivs_proxy_worker_restarts_total") == 1
            assert total(scrape, "ivs_proxy_workers") == 2
            assert total(scrape, "ivs_proxy_inflight_requests") == 0

            # The supervisor's /quitquitquit stops the pool, as a single process's stops it.
            async with admin.get(f"{process.admin_url}/quitquitquit") as response:
                assert response.status == 405
            assert await get_json_post(admin, f"{process.admin_url}/quitquitquit") == (200, {"stopping": True})
            assert await asyncio.to_thread(process.process.wait, 15) == 0
    finally:
        output = await asyncio.to_thread(process.stop)
    assert process.process.returncode == 0, output
    assert '"event": "worker_exited"' in output and '"signal": "SIGKILL"' in output
    assert "Traceback" not in output
    assert not Path(supervisor_line(output)["metrics_dir"]).exists()
    assert not any(alive(pid) for pid in (*pids.values(), *restarted.values()))


async def test_sigterm_turns_readiness_503_first_and_exits_0(upstream, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, server = upstream
    config = tmp_path / "proxy.yaml"
    config.write_text("shutdown:\n  drain_delay_seconds: 1.0\n  drain_timeout_seconds: 5.0\n")
    # Port 0: the supervisor picks one port for every worker.
    process = ProxyProcess(process_env(server), config=config,
                           args=("--workers", "2", "--listen", "127.0.0.1:0", "--drain-delay", "1.0"))
    await asyncio.to_thread(process.start)
    assert process.process is not None
    data_url = "http://" + supervisor_line(process.output())["listen"]
    try:
        async with aiohttp.ClientSession() as admin:
            pids = await ready_workers(admin, process.admin_url)
            assert await fresh_calls(data_url, 4) == [200] * 4
            process.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                while (await get_json(admin, f"{process.admin_url}/readyz"))[0] != 503:
                    await asyncio.sleep(0.02)
            # Readiness went first: the workers still accept, in their drain delay.
            async with aiohttp.ClientSession() as fresh, fresh.post(
                f"{data_url}/ListChannels", data=b"{}", headers=JSON_HEADERS
            ) as late:
                assert late.status == 200 and late.headers["Connection"] == "close"
        assert await asyncio.to_thread(process.process.wait, 1.0 + 5.0 + 5) == 0
    finally:
        output = await asyncio.to_thread(process.stop)
    events = [(line["event"], line.get("worker")) for line in lines(output)]
    assert ("stopping", None) in events
    assert {("drained", 0), ("drained", 1), ("worker_stopped", 0), ("worker_stopped", 1)} <= set(events)
    assert "worker_exited" not in output and "Traceback" not in output
    assert not Path(supervisor_line(output)["metrics_dir"]).exists()
    assert not any(alive(pid) for pid in pids.values())


async def test_a_configuration_error_in_a_worker_stops_the_pool_with_exit_2(upstream) -> None:  # type: ignore[no-untyped-def]
    _, server = upstream
    env = {"PATH": "/usr/bin:/bin", **process_env(server, short_lived=False)}  # long-lived keys: refused
    result = await asyncio.to_thread(
        subprocess.run, [IVS_PROXY, "serve", "--workers", "2", "--listen", "127.0.0.1:0",
                         "--admin-listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "configuration error: credentials" in result.stderr
    assert "worker_restarting" not in result.stderr and "Traceback" not in result.stderr
    started = [line["pid"] for line in lines(result.stderr) if line["event"] == "worker_started"]
    assert len(started) == 2 and not any(alive(pid) for pid in started)
    assert not Path(supervisor_line(result.stderr)["metrics_dir"]).exists()


async def test_one_worker_is_the_single_process_of_old(upstream) -> None:  # type: ignore[no-untyped-def]
    _, server = upstream
    process = ProxyProcess(process_env(server), args=("--workers", "1"))
    await asyncio.to_thread(process.start)
    try:
        assert process.process is not None
        children = Path(f"/proc/{process.process.pid}/task/{process.process.pid}/children").read_text().split()
        assert children == []  # no supervisor, no workers
        async with aiohttp.ClientSession() as session:
            status, body = await get_json(session, f"{process.admin_url}/readyz")
            assert (status, body) == (200, {"ready": True})
            assert await fresh_calls(process.url, 2) == [200, 200]
    finally:
        output = await asyncio.to_thread(process.stop)
    assert process.process.returncode == 0
    assert "supervising" not in output and '"worker"' not in output


def test_a_taken_data_port_stops_the_supervisor_before_any_worker_starts() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = subprocess.run(
            [IVS_PROXY, "serve", "--workers", "2", "--listen", f"127.0.0.1:{taken.getsockname()[1]}",
             "--admin-listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, check=False,
            env={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-west-2", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
    assert result.returncode == 2
    assert "listen: cannot listen on 127.0.0.1:" in result.stderr and "address already in use" in result.stderr
    assert "worker_started" not in result.stderr and "Traceback" not in result.stderr
