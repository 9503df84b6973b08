"""Fallback load generator (used when wrk is not installed): closed-loop keep-alive POSTs.

Same model as wrk: `--connections` connections, each sending the next request as soon as
the previous answer is complete, for `--duration` seconds; prints the same
"BENCH_RESULT {json}" line as benchmarks/wrk/post.lua. Pure asyncio, so its own ceiling
is far below wrk's (roughly 5-10k req/s on one core): with it, direct-to-upstream figures
are limited by the load generator and the proxy's added latency includes more noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import time
from pathlib import Path
from urllib.parse import urlsplit

HEADERS = (
    "Content-Type: application/json\r\n"
    "User-Agent: Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6 md/arch#x86_64 lang/python#3.11\r\n"
    "amz-sdk-invocation-id: 4f8a2c8e-3d6b-4a51-9b1e-7c2d5e6f8a90\r\n"
    "amz-sdk-request: attempt=1; max=3\r\n"
)


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    size = len(head)
    if chunked:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            chunk = int(size_line.split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += len(size_line) + chunk + 2
            if chunk == 0:
                break
    elif length:
        await reader.readexactly(length)
        size += length
    return status, size


async def worker(url: str, request: bytes, deadline: float, latencies: list[float], counts: dict[str, int]) -> None:
    parts = urlsplit(url)
    context = None
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, ssl=context)
    perf = time.perf_counter
    try:
        while perf() < deadline:
            started = perf()
            writer.write(request)
            status, size = await read_response(reader)
            latencies.append(perf() - started)
            counts["bytes"] += size
            if not 200 <= status < 400:
                counts["status"] += 1
    except (OSError, asyncio.IncompleteReadError):
        counts["read"] += 1
    finally:
        writer.close()


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    parts = urlsplit(args.url)
    body = Path(args.body_file).read_bytes()
    request = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n{HEADERS}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    counts = {"bytes": 0, "status": 0, "read": 0}
    started = time.perf_counter()
    deadline = started + args.duration
    await asyncio.gather(*(worker(args.url, request, deadline, latencies, counts) for _ in range(args.connections)))
    elapsed = time.perf_counter() - started
    values = sorted(latencies)
    us = 1e6
    result = {
        "requests": len(values),
        "duration_us": int(elapsed * us),
        "bytes": counts["bytes"],
        "errors": {"connect": 0, "read": counts["read"], "write": 0, "status": counts["status"], "timeout": 0},
        "latency_us": {
            "min": int(values[0] * us) if values else 0,
            "mean": sum(values) / len(values) * us if values else 0.0,
            "p50": int(percentile(values, 50) * us),
            "p90": int(percentile(values, 90) * us),
            "p99": int(percentile(values, 99) * us),
            "p999": int(percentile(values, 99.9) * us),
            "max": int(values[-1] * us) if values else 0,
        },
    }
    print("BENCH_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
