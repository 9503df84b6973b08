"""Instructions per proxied request, counted by valgrind: the A/B figure for a code change.

CPU time per request on a shared VM swings by 30 % between identical runs (other tenants,
frequency, caches); the number of instructions the proxy executes per request does not.
This runs `ivs-proxy serve` under callgrind with instrumentation off, waits until it is
ready, switches counting on for a fixed number of requests (closed loop, from a plain
socket client in this process, against the benchmark's TLS upstream), switches it off and
reads the total. Slow (the counted requests run ~50x slower) but repeatable to ~0.1 %.

    .venv/bin/python benchmarks/icount.py                      # PutMetadata, c=1 and c=16
    PYTHONPATH=/tmp/other-checkout .venv/bin/python benchmarks/icount.py --label other

Needs valgrind (`apt-get install valgrind`). Instructions are not time: a change that adds
syscalls or blocking looks cheaper here than it is; confirm a lever with `make bench`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import payloads
from proxyproc import ProxyProcess, proxy_env
from upstream import make_certificates, start_upstream

HEAD = ("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "User-Agent: Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6 md/arch#x86_64 lang/python#3.11\r\n"
        "amz-sdk-invocation-id: 4f8a2c8e-3d6b-4a51-9b1e-7c2d5e6f8a90\r\namz-sdk-request: attempt=1; max=3\r\n"
        "Content-Length: {length}\r\n\r\n")


def drive(port: int, request: bytes, count: int) -> None:
    """`count` requests, one after another, on one keep-alive connection; each answer read whole."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        buffer = b""
        for _ in range(count):
            sock.sendall(request)
            while b"\r\n\r\n" not in buffer:
                buffer += _received(sock)
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            if status >= 300:
                raise RuntimeError(f"the proxy answered {status}: {head.decode(errors='replace')}")
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)  # 204: none
            while len(buffer) < length:
                buffer += _received(sock)
            buffer = buffer[length:]


def _received(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    if not data:
        raise RuntimeError("the proxy closed the connection")
    return data


def concurrently(port: int, request: bytes, connections: int, per_connection: int) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            drive(port, request, per_connection)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def callgrind_control(*args: str) -> str:
    return subprocess.run(["callgrind_control", *args], capture_output=True, text=True, check=True).stdout


#: The decomposition `make bench` reports: each step adds one layer of the request path.
DECOMPOSITION = (
    ("bare-server", "the data port's server alone (proxy/serve/http_server.py), answering 204"),
    ("stub-handler", "+ DataApp.handle: access line, metrics, request id, in-flight gauge, drain"),
    ("stub-upstream", ("+ the handler and pipeline: framing, routing, headers, JSON, validation, endpoint, "
                      "signing, building the answer")),
    (None, "+ the upstream round trip: retrier, the keep-alive client (proxy/aws/http1.py), TLS (the full proxy)"),
)


def count(proxy: ProxyProcess, out_file: Path, request: bytes, connections: int, requests: int,
          keep_dump: Path | None = None) -> int:
    """Instructions the proxy executed while answering `requests` requests."""
    concurrently(proxy.port, request, connections, 20)  # warm: connections, caches, the upstream pool
    callgrind_control("--zero", str(proxy.pid))
    callgrind_control("--instr=on", str(proxy.pid))
    concurrently(proxy.port, request, connections, requests // connections)
    callgrind_control("--instr=off", str(proxy.pid))
    before = set(out_file.parent.glob(out_file.name + "*"))
    callgrind_control("--dump", str(proxy.pid))
    for _ in range(600):
        dumps = set(out_file.parent.glob(out_file.name + "*")) - before
        if dumps:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError("callgrind wrote no dump")
    dump = max(dumps, key=lambda p: p.stat().st_mtime)
    if keep_dump is not None:
        shutil.copyfile(dump, keep_dump)
    totals = [line for line in dump.read_text().splitlines() if line.startswith(("summary:", "totals:"))]
    return int(totals[-1].split()[1])


def instructions_per_request(*, scenario: payloads.Scenario, concurrency: list[int], requests: int,
                             patches: str | None = None, serve_args: tuple[str, ...] = (),
                             keep_dump: Path | None = None, load_cpu: int = 1) -> dict[int, int]:
    """{connections: instructions per request} for one proxy under callgrind."""
    request = HEAD.format(path=scenario.path, length=len(scenario.body)).encode() + scenario.body
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-icount-"))
    try:
        certs = make_certificates(tmp)
        upstream = start_upstream(tmp / "upstream", certs, load_cpu, False)
        out_file = tmp / "callgrind.out"
        entry = (str(HERE / "variants" / "launch.py"),) if patches else ("-m", "proxy.cli")
        launcher = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out_file}",
                    sys.executable, "-P", *entry)  # -P: PYTHONPATH, not the cwd, decides which proxy/
        env = proxy_env(upstream.url, certs.ca_bundle) | {"BENCH_PATCHES": patches or ""}
        proxy = ProxyProcess(env, 0, tmp / "proxy.log", serve_args, launcher)
        try:
            proxy.start(timeout=300)
            # Each connection sends the same number, so the count is a multiple of c.
            counted = {c: requests // c * c for c in concurrency}
            return {c: round(count(proxy, out_file, request, c, counted[c], keep_dump) / counted[c])
                    for c in concurrency}
        finally:
            proxy.stop()
            upstream.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def decomposition(requests: int = 160) -> list[dict[str, object]]:
    """Instructions per PutMetadata at c=1 for each step of DECOMPOSITION."""
    return [{"patches": patches, "what": what,
             "instructions": instructions_per_request(scenario=payloads.PUT_METADATA, concurrency=[1],
                                                      requests=requests, patches=patches)[1]}
            for patches, what in DECOMPOSITION]


def without_access_line(requests: int = 160) -> int:
    """Instructions per PutMetadata at c=1 of the full proxy at `--log-level warning`: the
    full count minus this is what the access line costs."""
    return instructions_per_request(scenario=payloads.PUT_METADATA, concurrency=[1], requests=requests,
                                    serve_args=("--log-level", "warning"))[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=320, help="counted requests per point")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--scenario", default="PutMetadata", choices=[s.name for s in payloads.SCENARIOS])
    parser.add_argument("--label", default="working tree")
    parser.add_argument("--json", type=Path, help="append the result as one JSON line")
    parser.add_argument("--patches", help="run through variants/launch.py with these BENCH_PATCHES (experiments)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `serve` argument (repeatable)")
    parser.add_argument("--keep-dump", type=Path, help="copy the last callgrind dump here (callgrind_annotate)")
    parser.add_argument("--decompose", action="store_true", help="the layer-by-layer table `make bench` reports")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("icount.py needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    if args.decompose:
        for step in decomposition(args.requests):
            print(json.dumps(step))
        return 0
    scenario = next(s for s in payloads.SCENARIOS if s.name == args.scenario)
    counts = instructions_per_request(scenario=scenario, concurrency=[int(c) for c in args.concurrency.split(",")],
                                      requests=args.requests, patches=args.patches,
                                      serve_args=tuple(args.serve_arg), keep_dump=args.keep_dump)
    result: dict[str, object] = {"label": args.label, "scenario": scenario.name}
    result |= {f"c={c} instructions/request": n for c, n in counts.items()}
    print(json.dumps(result))
    if args.json:
        with args.json.open("a") as sink:
            sink.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
