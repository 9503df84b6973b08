"""Soak: minutes of mixed traffic and upstream faults through a real `ivs-proxy serve`,
reporting its memory (RSS) over time. Not part of `make test`.

    .venv/bin/python benchmarks/soak.py                  # 3 minutes, 32 callers
    .venv/bin/python benchmarks/soak.py --minutes 10 --callers 64 --json soak.json

The upstream is tests/support/fault_upstream.py in this process, misbehaving at random on
a fixed share of requests: 5xx bursts, throttling with and without Retry-After, resets,
stalls past the attempt timeout, truncated small and large answers, malformed answers,
slow chunked bodies, large answers. The callers mix reads and non-idempotent writes
across the three services, a few hostile raw requests (bad framing, slow headers, bodies
over the limit), and every 20 s a burst past the in-flight cap. At the end the proxy gets
SIGTERM and must exit 0.

What to look at: RSS should level off after the first minute (connection pools, caches
and the interpreter's arenas warm up) and not keep growing with the request count; the
status mix shows the faults as 502/504 and overload as 503, never a proxy 500.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import fault_upstream as fault
from tests.support.fault_upstream import FaultUpstream
from tests.support.net import free_port, wait_for_http

SECRET = "soak/secret/key/that/is/not/real/0000000"
CHANNEL = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"
STAGE = "arn:aws:ivs:us-west-2:123456789012:stage/AbCdEfGhIjKl"
ROOM = "arn:aws:ivschat:us-west-2:123456789012:room/AbCdEfGhIjKl"
BIG = json.dumps({"channels": [{"arn": f"{CHANNEL[:-12]}{i:012d}", "name": f"c{i}"} for i in range(4000)]}).encode()
CONFIG = """
upstream:
  attempt_timeout_seconds: 0.5
  read_timeout_seconds: 0.5
  total_timeout_seconds: 3.0
retries:
  backoff_base_seconds: 0.01
  throttling_backoff_base_seconds: 0.05
limits:
  max_inflight_requests: 64
  max_queued_requests: 32
  queue_timeout_seconds: 0.5
  header_timeout_seconds: 1.0
  body_timeout_seconds: 1.0
shutdown:
  drain_delay_seconds: 0.5
  drain_timeout_seconds: 5.0
"""

#: (weight, behaviour) of the upstream per request.
UPSTREAM_MIX = [
    (70, lambda: fault.respond(body=b'{"channel": {}}', delay=random.uniform(0.002, 0.02))),
    (5, lambda: fault.respond(body=BIG)),
    (4, lambda: fault.aws_error(500, "InternalServerException")),
    (4, lambda: fault.aws_error(503, "ServiceUnavailable")),
    (3, lambda: fault.aws_error(429, "ThrottlingException", {"x-amz-retry-after": "50"})),
    (1, lambda: fault.aws_error(429, "ThrottlingException")),
    (3, fault.reset),
    (2, lambda: fault.truncated(declared=200, sent=20)),
    (1, lambda: fault.truncated(declared=300_000, sent=100_000)),
    (2, lambda: fault.stall(1.0)),
    (1, fault.malformed),
    (2, lambda: fault.slow_body([b'{"a": ', b"1}"], interval=0.05)),
]
#: (weight, method, path, body) of what callers send.
CALLS = [
    (30, "POST", "/ListChannels", {}),
    (20, "POST", "/GetChannel", {"arn": CHANNEL}),
    (10, "POST", "/CreateChannel", {"name": "soak"}),
    (10, "POST", "/PutMetadata", {"channelArn": CHANNEL, "metadata": "m" * 200}),
    (10, "POST", "/ivs-realtime/GetStage", {"arn": STAGE}),
    (5, "POST", "/ivs-realtime/CreateParticipantToken", {"stageArn": STAGE}),
    (10, "POST", "/ivschat/SendEvent", {"roomIdentifier": ROOM, "eventName": "e"}),
    (5, "POST", "/ivschat/ListRooms", {}),
]
HOSTILE = [
    b"POST /ListChannels HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /ListChannels HTTP/1.1\r\nHost: p\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
    b"POST /ListChannels HTTP/1.1\r\nHost: p\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n{}",
    b"POST /ListChannels HTTP/1.1\r\nHost: p\r\n",  # and then nothing: the header timeout closes it
]


def pick(choices: list) -> tuple:  # type: ignore[type-arg]
    """One entry of a (weight, ...) list, by weight, without its weight."""
    return random.choices([c[1:] for c in choices], [c[0] for c in choices])[0]  # type: ignore[no-any-return]


def rss_kib(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def caller(session: aiohttp.ClientSession, url: str, until: float, statuses: collections.Counter) -> None:  # type: ignore[type-arg]
    while time.monotonic() < until:
        method, path, body = pick(CALLS)
        try:
            async with session.request(method, url + path, json=body) as response:
                await response.read()
                # "503 overloaded" from the proxy, "500 aws" passed on from the upstream
                statuses[f"{response.status} {response.headers.get('x-ivs-proxy-error', 'aws')}"] += 1
        except aiohttp.ClientError as exc:
            statuses[type(exc).__name__] += 1  # a large answer cut short: the connection breaks
        except TimeoutError:
            statuses["client_timeout"] += 1


async def hostile(port: int, until: float, statuses: collections.Counter) -> None:  # type: ignore[type-arg]
    while time.monotonic() < until:
        await asyncio.sleep(0.2)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(random.choice(HOSTILE))
            async with asyncio.timeout(5):
                answer = await reader.read()
            writer.close()
            statuses["hostile_" + (answer[9:12].decode() if answer else "closed")] += 1
        except (OSError, TimeoutError):
            statuses["hostile_error"] += 1


async def bursts(session: aiohttp.ClientSession, url: str, until: float, statuses: collections.Counter) -> None:  # type: ignore[type-arg]
    while time.monotonic() + 20 < until:
        await asyncio.sleep(20)
        await asyncio.gather(*(caller(session, url, time.monotonic() + 0.5, statuses) for _ in range(200)))


async def soak(minutes: float, callers: int, sample_every: float) -> dict[str, object]:
    upstream = FaultUpstream(secret_key=SECRET)
    upstream.default = lambda request: pick(UPSTREAM_MIX)[0]()(request)
    runner = web.AppRunner(upstream.app(), access_log=None)
    await runner.setup()
    upstream_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream_port).start()

    work = Path(tempfile.mkdtemp(prefix="ivs-proxy-soak-"))
    (work / "proxy.yaml").write_text(CONFIG)
    port, admin = free_port(), free_port()
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "ASIASOAK000000000000", "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_SESSION_TOKEN": "soak-token", "AWS_CREDENTIAL_EXPIRATION": expires.isoformat(timespec="seconds"),
                "AWS_REGION": "us-west-2", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{upstream_port}",
                "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                "AWS_EC2_METADATA_DISABLED": "true"})
    log = (work / "proxy.log").open("w")
    command = [str(Path(sys.executable).with_name("ivs-proxy")), "serve", "--config", str(work / "proxy.yaml"),
               "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin}", "--log-level", "warning"]
    process = await asyncio.to_thread(subprocess.Popen, command, env=env, stdout=log, stderr=log)
    await asyncio.to_thread(wait_for_http, f"http://127.0.0.1:{admin}/readyz")
    url = f"http://127.0.0.1:{port}"
    statuses: collections.Counter = collections.Counter()  # type: ignore[type-arg]
    samples = []
    started = time.monotonic()
    until = started + minutes * 60
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.ensure_future(caller(session, url, until, statuses)) for _ in range(callers)]
        tasks += [asyncio.ensure_future(hostile(port, until, statuses)),
                  asyncio.ensure_future(bursts(session, url, until, statuses))]
        while time.monotonic() < until:
            rss, peak = rss_kib(process.pid)
            done = sum(v for k, v in statuses.items() if k[:1].isdigit())
            samples.append({"t": round(time.monotonic() - started), "rss_mib": round(rss / 1024, 1),
                            "peak_mib": round(peak / 1024, 1), "requests": done})
            print(f"t={samples[-1]['t']:>5}s  rss={samples[-1]['rss_mib']:>6} MiB  peak={samples[-1]['peak_mib']:>6} MiB"
                  f"  requests={done}", flush=True)
            await asyncio.sleep(sample_every)
        await asyncio.gather(*tasks)

    process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    code = await asyncio.to_thread(process.wait, 30)
    stop_seconds = round(time.monotonic() - stopping, 2)
    await runner.cleanup()
    log.close()
    output = (work / "proxy.log").read_text()
    return {
        "minutes": minutes, "callers": callers, "samples": samples,
        "statuses": dict(sorted(statuses.items())),
        "upstream_requests": len(upstream.received),
        "exit_code": code, "stop_seconds": stop_seconds,
        "tracebacks": output.count("Traceback"), "task_destroyed": output.count("Task was destroyed"),
        "log": str(work / "proxy.log"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = asyncio.run(soak(args.minutes, args.callers, args.sample_every))
    samples = result["samples"]
    assert isinstance(samples, list)
    print("\nstatuses:", json.dumps(result["statuses"]))
    print(f"upstream requests: {result['upstream_requests']}; exit code {result['exit_code']} "
          f"after SIGTERM in {result['stop_seconds']} s; tracebacks {result['tracebacks']}, "
          f"'Task was destroyed' {result['task_destroyed']}")
    after_warmup = [s["rss_mib"] for s in samples if s["t"] >= 60] or [s["rss_mib"] for s in samples]
    print(f"RSS after the first minute: min {min(after_warmup)} MiB, max {max(after_warmup)} MiB; "
          f"peak (VmHWM) {samples[-1]['peak_mib']} MiB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    statuses = result["statuses"]
    assert isinstance(statuses, dict)
    proxy_500s = sum(v for k, v in statuses.items() if k.startswith("500 ") and not k.endswith(" aws"))
    return 0 if result["exit_code"] == 0 and not result["tracebacks"] and not proxy_500s else 1


if __name__ == "__main__":
    sys.exit(main())
