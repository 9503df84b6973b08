"""Where one request's CPU goes, measured in-process (no load generator), pinned to one core:

  A. the pipeline's stages for each scenario (routing, headers, validation, endpoint, sign)
  B. one access-log line as configured in production (structlog JSON to a file)
  C. the upstream round trip's CPU: the proxy's `Upstream.send` (its own client since
     issue 14; the output keys keep their old "aiohttp" names) vs a bare asyncio keep-alive
     HTTP/1.1 client sending the same bytes (a floor for any client), against the
     benchmark's TLS upstream.

    taskset -c 0 .venv/bin/python benchmarks/stages.py [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads
import procs
from proxyproc import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN
from upstream import make_certificates, start_upstream

from proxy.app import build_proxy
from proxy.aws.credentials import CredentialSnapshot, utc_now
from proxy.aws.signing import FrozenCredentials
from proxy.aws.upstream import Upstream
from proxy.config import load_config
from proxy.pipeline import Exchange, IncomingRequest

WRK_HEADERS = (
    ("Host", "127.0.0.1:8080"),
    ("Content-Type", "application/json"),
    ("User-Agent", "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6 md/arch#x86_64 lang/python#3.11"),
    ("amz-sdk-invocation-id", "4f8a2c8e-3d6b-4a51-9b1e-7c2d5e6f8a90"),
    ("amz-sdk-request", "attempt=1; max=3"),
)


class StaticSource:
    def fetch(self) -> CredentialSnapshot:
        return CredentialSnapshot(FrozenCredentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN),
                                  utc_now() + datetime.timedelta(hours=1), "static-bench")


def per_call_us(fn, number: int) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def stage_costs(upstream_url: str) -> dict[str, dict[str, float]]:
    env = {"AWS_ENDPOINT_URL": upstream_url, "AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    proxy = build_proxy(load_config(None), env, credential_source=StaticSource())
    store = proxy.state.credentials
    asyncio.run(store.refresh())  # what the start-up fetch does
    pipeline = proxy.state.pipeline
    out: dict[str, dict[str, float]] = {}
    for scenario in payloads.SCENARIOS:
        incoming = IncomingRequest("POST", scenario.path, "", WRK_HEADERS, True)

        def fresh(with_body: bool = True, incoming: IncomingRequest = incoming, body: bytes = scenario.body) -> Exchange:
            exchange = Exchange(incoming)
            pipeline.check_head(exchange)
            if with_body:
                pipeline.prepare(exchange, body)
            return exchange

        costs: dict[str, float] = {}
        for stage in pipeline.head_stages:
            exchange = fresh(with_body=False)
            costs[type(stage).__name__] = per_call_us(lambda s=stage, e=exchange: s(e), 5000)
        exchange = fresh()
        for stage in pipeline.body_stages:
            costs[type(stage).__name__] = per_call_us(lambda s=stage, e=exchange: s(e), 3000)
        costs["whole pipeline (Exchange + check_head + prepare)"] = per_call_us(fresh, 3000)
        out[scenario.name] = costs
    return out


def access_log_cost(directory: Path) -> float:
    import structlog

    from proxy.observe.logs import configure_logging

    with open(directory / "access.log", "w") as sink:
        configure_logging("info", "json", sink)
        try:
            log = structlog.get_logger("ivs_proxy.access")
            started = time.perf_counter()

            def line() -> None:
                log.info("request", method="POST", service="ivs", operation="PutMetadata", region="us-west-2",
                         status=204, amzn_request_id=payloads.REQUEST_ID,
                         duration_ms=round((time.perf_counter() - started) * 1000, 3))

            return per_call_us(line, 5000)
        finally:
            configure_logging()


async def client_costs(upstream_url: str, ca_bundle: Path, n: int) -> dict[str, float]:
    from proxy.config import UpstreamConfig

    scenario = payloads.PUT_METADATA
    host = upstream_url.split("://", 1)[1]
    headers = {"host": host, "content-type": "application/json", "Authorization": "AWS4-HMAC-SHA256 x" * 10,
               "X-Amz-Date": "20250101T000000Z", "X-Amz-Security-Token": SESSION_TOKEN}
    upstream = Upstream(UpstreamConfig(), ca_bundle=str(ca_bundle))
    await upstream.start()
    url = upstream_url + scenario.path
    for _ in range(200):
        await upstream.send("POST", url, headers, scenario.body)
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await upstream.send("POST", url, headers, scenario.body)
    aiohttp_cpu = (time.process_time() - cpu) / n * 1e6
    aiohttp_wall = (time.perf_counter() - wall) / n * 1e6
    await upstream.close()

    # The floor: the same request bytes on one keep-alive TLS stream, minimal parsing.
    context = ssl.create_default_context(cafile=str(ca_bundle))
    hostname, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(hostname, int(port), ssl=context, server_hostname=hostname)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (f"POST {scenario.path} HTTP/1.1\r\n{head}Content-Length: {len(scenario.body)}\r\n\r\n").encode() + scenario.body

    async def one() -> None:
        writer.write(request)
        response_head = await reader.readuntil(b"\r\n\r\n")
        for line in response_head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                await reader.readexactly(int(line[15:]))

    for _ in range(200):
        await one()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await one()
    raw_cpu = (time.process_time() - cpu) / n * 1e6
    raw_wall = (time.perf_counter() - wall) / n * 1e6
    writer.close()
    return {"aiohttp Upstream.send cpu_us": aiohttp_cpu, "aiohttp Upstream.send wall_us": aiohttp_wall,
            "bare asyncio streams cpu_us": raw_cpu, "bare asyncio streams wall_us": raw_wall}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", type=Path)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--uvloop", action="store_true", help="run section C on uvloop")
    args = parser.parse_args()
    procs.NICE = procs.default_nice()
    with procs.AutogroupPriority(procs.NICE):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-stages-"))
    certs = make_certificates(tmp)
    upstream = start_upstream(tmp / "upstream", certs, args.load_cpu)
    try:
        results: dict[str, object] = {"pinned_to": sorted(os.sched_getaffinity(0))}
        results["stages_us"] = stage_costs(upstream.url)
        results["access_log_line_us"] = access_log_cost(tmp)
        if args.uvloop:
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        results["upstream_round_trip"] = asyncio.run(client_costs(upstream.url, certs.ca_bundle, args.requests))
    finally:
        upstream.stop()
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
