"""`make bench`: the ivs-proxy benchmark, end to end, in one command.

    make bench                           # full run: 3 repeats x 5 s per point (~7 min with valgrind)
    make bench BENCH_ARGS=--quick        # 1 repeat x 2 s per point (~1 min)
    make bench BENCH_ARGS="--profile"    # also record a py-spy profile at c=16 PutMetadata
    make bench GO_PEER=/tmp/go-peer/aws-sigv4-proxy   # side by side with awslabs' Go proxy (go_peer.py)
    benchmarks/run.py --quick --workers 2 --proxy-cpus 0,1 --output /tmp/w.md   # `serve --workers 2`

What it does (see benchmarks/README.md): a throw-away CA and a TLS upstream (nginx when
installed, else benchmarks/fallback_upstream.py) answering IVS-shaped responses, pinned to
the load core; `ivs-proxy serve` with production defaults pinned to the proxy core; wrk
(else benchmarks/pyload.py) on the load core driving each scenario at each concurrency,
directly against the upstream and through the proxy, back to back; then results.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine
import payloads
import procs
import report
from go_peer import PeerProcess, version_of
from load import LoadGenerator
from procs import (
    RssSampler,
    core_busy_seconds,
    cpu_seconds,
    memory_kib,
    pinned,
    run_queue_wait_seconds,
)
from proxyproc import ProxyProcess, compile_bytecode, proxy_env
from upstream import make_certificates, start_upstream

#: Experimental: `--variant PATCHES` runs the proxy through variants/launch.py with those
#: patches (comma-separated, e.g. uvloop,gcfreeze) to measure a proposed change without
#: editing proxy/. Not how users run it; results.md says so.
LAUNCHER = HERE / "variants" / "launch.py"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat x 2 s per point, 3 start-ups")
    parser.add_argument("--repeats", type=int, help="repeats of every point (default 3; quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per load point (default 5; quick 2)")
    parser.add_argument("--startups", type=int, help="start-to-ready measurements (default 7; quick 3)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated connection counts")
    parser.add_argument("--scenarios", default=",".join(s.name for s in payloads.SCENARIOS))
    parser.add_argument("--output", type=Path, default=HERE / "results.md")
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--workers", type=int, help="run `ivs-proxy serve --workers N` (README: workers)")
    parser.add_argument("--proxy-cpus", help="comma-separated cores for the proxy and its workers (default: --proxy-cpu)")
    parser.add_argument("--load-cpu", type=int, default=1, help="core for the upstream and the load generator")
    parser.add_argument("--fallback-upstream", action="store_true", help="use the bundled upstream even if nginx exists")
    parser.add_argument("--fallback-load", action="store_true", help="use the bundled load generator even if wrk exists")
    parser.add_argument("--proxy-arg", action="append", default=[], help="extra `ivs-proxy serve` argument (repeatable)")
    parser.add_argument("--variant", help="experimental: comma-separated patches of variants/launch.py (not production)")
    parser.add_argument("--profile", action="store_true", help="record a py-spy profile of the proxy at c=16 PutMetadata")
    parser.add_argument("--profile-seconds", type=float, default=10.0)
    parser.add_argument("--nice", type=int, default=procs.default_nice(),
                        help="nice value for proxy, upstream and load (default -10 as root, else 0): "
                             "shields the pinned cores from other work on a shared machine")
    parser.add_argument("--instructions", action=argparse.BooleanOptionalAction, default=None,
                        help="count instructions per request layer by layer with valgrind (icount.py; ~2 min; "
                             "default: on when valgrind is installed, off with --quick)")
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp dir (certs, nginx conf, logs)")
    parser.add_argument("--go-peer", type=Path, help="an aws-sigv4-proxy binary to measure side by side (go_peer.py)")
    parser.add_argument("--go-peer-fixed", type=Path,
                        help="the same with its idle pool raised (go_peer.py build --raise-idle-pool)")
    args = parser.parse_args(argv)
    procs.NICE = args.nice
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.startups = args.startups or (3 if args.quick else 7)
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.proxy_cpus = [int(c) for c in (args.proxy_cpus or str(args.proxy_cpu)).split(",")]
    args.proxy_cpu = args.proxy_cpus[0]  # the signing micro-benchmark's core
    args.proxy_pin = ",".join(map(str, args.proxy_cpus))
    if args.workers:
        args.proxy_arg = [*args.proxy_arg, "--workers", str(args.workers)]
    by_name = {s.name: s for s in payloads.SCENARIOS}
    args.scenarios = [by_name[name] for name in args.scenarios.split(",")]
    return args


def check_cores(args: argparse.Namespace) -> list[str]:
    notes = []
    available = sorted(os.sched_getaffinity(0))
    for cpu in (*args.proxy_cpus, args.load_cpu):
        if cpu not in available:
            raise SystemExit(f"core {cpu} is not available to this process (have {available}); "
                             "use --proxy-cpu/--proxy-cpus/--load-cpu")
    if args.load_cpu in args.proxy_cpus:
        notes.append(f"the proxy shares core {args.load_cpu} with the upstream and the load generator"
                     + (": req/s cannot show the workers' scaling; CPU per request and the spread over "
                        "workers can" if args.workers else ""))
    if len(available) > len({*args.proxy_cpus, args.load_cpu}):
        notes.append(f"{len(available)} cores available; only cores {args.proxy_pin} and {args.load_cpu} are used")
    if shutil.which("taskset") is None:
        raise SystemExit("taskset (util-linux) is required to pin processes")
    return notes


def fetch(url: str, path: str, body: bytes, ca_bundle: Path) -> tuple[int, bytes]:
    """One POST, the way the load generators send it; for the pre-flight checks."""
    host_port = url.split("://", 1)[1]
    host, port = host_port.rsplit(":", 1)
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca_bundle))
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    else:
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def preflight(scenarios: list[payloads.Scenario], upstream_url: str, proxy_url: str, ca_bundle: Path) -> None:
    """Every scenario must be forwarded and answered as the upstream answers it directly;
    otherwise the benchmark would time a refusal."""
    for scenario in scenarios:
        direct = fetch(upstream_url, scenario.path, scenario.body, ca_bundle)
        proxied = fetch(proxy_url, scenario.path, scenario.body, ca_bundle)
        if direct[0] != scenario.expect_status or proxied != direct:
            raise SystemExit(
                f"pre-flight failed for {scenario.name}: direct {direct[0]} ({len(direct[1])} bytes), "
                f"proxy {proxied[0]} ({len(proxied[1])} bytes): {proxied[1][:300]!r}"
            )


def run_signing(args: argparse.Namespace) -> dict[str, list[float]]:
    out = subprocess.run([*pinned(args.proxy_cpu), sys.executable, str(HERE / "signbench.py")], check=False,
                         capture_output=True, text=True, timeout=300, cwd=HERE)
    if out.returncode != 0:
        raise RuntimeError(f"signbench failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def launcher(args: argparse.Namespace) -> tuple[str, ...] | None:
    if not args.variant:
        return None
    return (sys.executable, str(LAUNCHER))


def measure_startup(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> list[dict[str, float]]:
    runs = []
    for i in range(args.startups):
        proxy = ProxyProcess(env, args.proxy_pin, tmp / f"startup-{i}.log", tuple(args.proxy_arg), launcher(args))
        proxy.start()
        time.sleep(0.5)
        memory = tree_memory_kib(proxy.pid)
        runs.append({"listening_s": proxy.listening_s, "ready_s": proxy.ready_s, "idle_rss_kib": memory["VmRSS"]})
        proxy.stop()
    return runs


#: The peers a run may measure beside ivs-proxy: results key -> (what it is, its option).
PEERS = (("go", "aws-sigv4-proxy, stock", "go_peer"), ("go_fixed", "aws-sigv4-proxy, idle pool raised", "go_peer_fixed"))


def peers_of(args: argparse.Namespace) -> dict[str, Path]:
    return {key: getattr(args, option) for key, _, option in PEERS if getattr(args, option)}


def measure_peer_startup(binary: Path, args: argparse.Namespace, env: dict[str, str], tmp: Path, upstream_url: str,
                         ca_bundle: Path, probe: bytes) -> list[dict[str, float]]:
    runs = []
    for i in range(args.startups):
        peer = PeerProcess(binary, env, args.proxy_pin, tmp / f"peer-startup-{binary.parent.name}-{i}.log",
                           upstream_url, ca_bundle, probe)
        peer.start()
        time.sleep(0.5)
        runs.append({"ready_s": peer.ready_s, "idle_rss_kib": tree_memory_kib(peer.pid)["VmRSS"]})
        peer.stop()
    return runs


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: with --workers, the supervisor and its workers."""
    pids = [pid]
    for parent in pids:
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    pids += [int(child) for child in f.read().split()]
        except OSError:
            pass  # gone meanwhile
    return pids


def _tree_sum(reading, pid: int) -> float:  # type: ignore[no-untyped-def]
    total = 0.0
    for member in process_tree(pid):
        try:
            total += reading(member)
        except (OSError, IndexError, ValueError):
            pass
    return total


def tree_memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM summed over the process tree (one process: its own figures)."""
    totals = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        try:
            for name, value in memory_kib(member).items():
                totals[name] += value
        except OSError:
            pass
    return totals


WORKER_FIELD = re.compile(rb'"worker": (\d+)')


def requests_by_worker(log_path: Path) -> dict[str, int]:
    """Access lines per worker index (from the access log's `worker` field; {} for one process)."""
    counts: collections.Counter[str] = collections.Counter()
    with open(log_path, "rb") as log_file:
        for line in log_file:
            if b'"event": "request"' in line and (found := WORKER_FIELD.search(line)):
                counts[found.group(1).decode()] += 1
    return dict(sorted(counts.items()))


def one_point(generator: LoadGenerator, url: str, body_file: Path, connections: int, duration: float,
              proxy: ProxyProcess | None, proxy_cpus: tuple[int, ...] = (0,)) -> dict[str, object]:
    busy_before = core_busy_seconds()
    if proxy is None:
        result = generator.run(url, body_file, connections, duration)
        busy = {c: v - busy_before[c] for c, v in core_busy_seconds().items()}
        return {**asdict(result), "rps": result.rps, "core_busy_s": busy}
    proxy.truncate_log()
    # Summed over the process tree: with --workers, the supervisor and every worker.
    cpu_before = _tree_sum(cpu_seconds, proxy.pid)
    wait_before = _tree_sum(run_queue_wait_seconds, proxy.pid)
    with RssSampler(proxy.pid, read=tree_memory_kib) as rss:
        result = generator.run(url, body_file, connections, duration)
    cpu = _tree_sum(cpu_seconds, proxy.pid) - cpu_before
    wait = _tree_sum(run_queue_wait_seconds, proxy.pid) - wait_before
    busy = {c: v - busy_before[c] for c, v in core_busy_seconds().items()}
    log_bytes = proxy.log_path.stat().st_size
    # Work on the proxy's cores that was not the proxy: other tenants of a shared machine.
    foreign = max(0.0, sum(busy.get(c, 0.0) for c in proxy_cpus) - cpu)
    return {
        **asdict(result),
        "rps": result.rps,
        "core_busy_s": busy,
        "foreign_cpu_util": foreign / result.duration_s if result.duration_s else 0.0,
        # Runnable but not running (another task had the core): scheduler delay per request.
        "run_queue_wait_us_per_req": wait / result.requests * 1e6 if result.requests else 0.0,
        "proxy_cpu_s": cpu,
        "proxy_cpu_us_per_req": cpu / result.requests * 1e6 if result.requests else 0.0,
        "proxy_cpu_util": cpu / result.duration_s if result.duration_s else 0.0,
        "peak_rss_kib": rss.peak_kib,
        "log_bytes_per_req": log_bytes / result.requests if result.requests else 0.0,
        "requests_by_worker": requests_by_worker(proxy.log_path),
    }


def run_profile(args: argparse.Namespace, generator: LoadGenerator, proxy: ProxyProcess, body_file: Path) -> dict[str, str] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("py-spy not found: skipping the profile (pip install py-spy into the venv)")
        return None
    out_dir = HERE / "profile"
    out_dir.mkdir(exist_ok=True)
    files = {"speedscope": out_dir / "putmetadata-c16.speedscope.json", "collapsed": out_dir / "putmetadata-c16.collapsed.txt"}
    duration = int(args.profile_seconds)
    records = []
    for fmt, path in (("speedscope", files["speedscope"]), ("raw", files["collapsed"])):
        # py-spy runs on the load core and pauses the proxy briefly for each sample (blocking
        # mode: consistent stacks); throughput while sampled is a little lower.
        command = [*pinned(args.load_cpu), py_spy, "record", "--pid", str(proxy.pid), "--rate", "200",
                   "--duration", str(duration), "--format", fmt, "--output", str(path)]
        recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        result = generator.run(proxy.url + "/PutMetadata", body_file, 16, duration - 1)
        _, err = recorder.communicate(timeout=duration + 60)
        if recorder.returncode != 0:
            log(f"py-spy failed: {err[-500:]}")
            return None
        records.append(result)
    import profile_summary

    summary = profile_summary.summarise(files["collapsed"].read_text())
    summary += f"\nRequests/s while sampled (py-spy pauses the proxy for each sample): {records[-1].rps:.0f}\n"
    (out_dir / "summary.md").write_text(summary)
    log(f"profile written to {out_dir} (requests/s while sampled: {records[-1].rps:.0f})")
    return {k: str(v.relative_to(HERE)) for k, v in files.items()} | {"summary": "profile/summary.md"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with procs.AutogroupPriority(args.nice) as priority:
        args.autogroup = priority.applied
        if priority.applied:
            log(f"this session's scheduling autogroup runs at nice {args.nice} for the run")
        return run(args, argv)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    started = time.monotonic()
    notes = check_cores(args)
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-bench-"))
    generator = LoadGenerator(args.load_cpu, force_fallback=args.fallback_load)
    if generator.kind != "wrk":
        notes.append("wrk not found: load from benchmarks/pyload.py (slower; `apt-get install wrk`)")
    certs = make_certificates(tmp)
    upstream = start_upstream(tmp / "upstream", certs, args.load_cpu, force_fallback=args.fallback_upstream)
    if upstream.kind != "nginx":
        notes.append("nginx not found: upstream is benchmarks/fallback_upstream.py (slower; `apt-get install nginx`)")
    log(f"upstream {upstream.kind} {upstream.version} at {upstream.url}; load generator {generator.kind}")
    env = proxy_env(upstream.url, certs.ca_bundle)
    if args.variant:
        env["BENCH_PATCHES"] = args.variant
        notes.append(f"EXPERIMENTAL variant: proxy run through variants/launch.py with patches {args.variant}")
    results: dict[str, object] = {
        "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
        "settings": {"repeats": args.repeats, "duration_s": args.duration, "concurrency": args.concurrency,
                     "proxy_cpu": args.proxy_cpu, "load_cpu": args.load_cpu, "proxy_args": args.proxy_arg,
                     "workers": args.workers, "proxy_cpus": args.proxy_cpus,
                     "variant": args.variant, "startups": args.startups, "nice": args.nice,
                     "autogroup_nice": args.autogroup},
        "machine": machine.describe() | {"upstream": f"{upstream.kind} {upstream.version}",
                                         "load_generator": f"{generator.kind} {generator.version}"},
        "notes": notes,
    }
    proxy: ProxyProcess | None = None
    peers: dict[str, PeerProcess] = {}
    peer_results: dict[str, dict[str, object]] = {}
    results["peers"] = peer_results
    try:
        # pip compiles an installed package's bytecode; an editable checkout (or a venv
        # installed without it) under PYTHONDONTWRITEBYTECODE would recompile at each start.
        compile_bytecode()
        log("signing micro-benchmark")
        results["signing"] = run_signing(args)
        log(f"start-to-ready x{args.startups}")
        results["startup"] = measure_startup(args, env, tmp)
        proxy = ProxyProcess(env, args.proxy_pin, tmp / "proxy.log", tuple(args.proxy_arg), launcher(args))
        proxy.start()
        time.sleep(1.0)
        results["idle_memory_kib"] = tree_memory_kib(proxy.pid)
        preflight(args.scenarios, upstream.url, proxy.url, certs.ca_bundle)
        body_files = {s.name: upstream.docroot / f"{s.name}.request.json" for s in args.scenarios}
        probe = payloads.PUT_METADATA.body
        for key, binary in peers_of(args).items():
            log(f"peer {key}: start to first 2xx x{args.startups}")
            peer_results[key] = {"binary": str(binary), "version": version_of(binary),
                                 "startup": measure_peer_startup(binary, args, env, tmp, upstream.url,
                                                                 certs.ca_bundle, probe)}
            peer = PeerProcess(binary, env, args.proxy_pin, tmp / f"peer-{key}.log", upstream.url, certs.ca_bundle,
                               probe)
            peer.start()
            peers[key] = peer
            time.sleep(1.0)
            peer_results[key]["idle_memory_kib"] = tree_memory_kib(peer.pid)
            for scenario in args.scenarios:
                status, _ = fetch(peer.url, scenario.path, scenario.body, certs.ca_bundle)
                if status != scenario.expect_status:
                    raise SystemExit(f"pre-flight failed for peer {key}, {scenario.name}: {status}")
        log("warm-up")
        for scenario in args.scenarios:
            for target in (upstream.url, proxy.url, *(peer.url for peer in peers.values())):
                generator.run(target + scenario.path, body_files[scenario.name], max(args.concurrency), 1.0)
        points: list[dict[str, object]] = []
        for repeat in range(args.repeats):
            for scenario in args.scenarios:
                for connections in args.concurrency:
                    body = body_files[scenario.name]
                    direct = one_point(generator, upstream.url + scenario.path, body, connections, args.duration, None)
                    proxied = one_point(generator, proxy.url + scenario.path, body, connections, args.duration, proxy,
                                        tuple(args.proxy_cpus))
                    by_peer = {key: one_point(generator, peer.url + scenario.path, body, connections, args.duration,
                                              peer, tuple(args.proxy_cpus)) for key, peer in peers.items()}
                    points.append({"repeat": repeat, "scenario": scenario.name, "small": scenario.small,
                                   "connections": connections, "direct": direct, "proxy": proxied, "peers": by_peer})
                    for key, point in by_peer.items():
                        log(f"   peer {key:<8} {point['rps']:>6.0f}/s p50 {point['p50_ms']:.3f} p99 "
                            f"{point['p99_ms']:.3f} ms, {point['proxy_cpu_us_per_req']:.0f} us CPU/req, "
                            f"errors {point['errors']}")
                    log(f"r{repeat} {scenario.name:<13} c={connections:<3} direct {direct['rps']:>7.0f}/s "
                        f"p50 {direct['p50_ms']:.3f} p99 {direct['p99_ms']:.3f} | proxy {proxied['rps']:>6.0f}/s "
                        f"p50 {proxied['p50_ms']:.3f} p99 {proxied['p99_ms']:.3f} ms, "
                        f"{proxied['proxy_cpu_us_per_req']:.0f} us CPU/req, foreign {proxied['foreign_cpu_util'] * 100:.0f}%, "
                        f"rq wait {proxied['run_queue_wait_us_per_req']:.0f} us/req, "
                        f"errors {proxied['errors']}"
                        + (f", by worker {proxied['requests_by_worker']}" if args.workers else ""))
        results["points"] = points
        time.sleep(1.0)
        results["after_load_memory_kib"] = tree_memory_kib(proxy.pid)
        for key, peer in peers.items():
            peer_results[key]["after_load_memory_kib"] = tree_memory_kib(peer.pid)
        if args.profile:
            log(f"profiling c=16 PutMetadata for {args.profile_seconds:.0f} s")
            results["profile"] = run_profile(args, generator, proxy, body_files["PutMetadata"])
    finally:
        for peer in peers.values():
            peer.stop()
        if proxy is not None:
            proxy.stop()
            proxy = None
        upstream.stop()
        if not args.keep_temp:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    if args.instructions is None:
        args.instructions = shutil.which("valgrind") is not None and not args.quick
    if args.instructions:
        import icount

        log("instructions per request, layer by layer (valgrind, ~30 s a layer)")
        results["instructions"] = icount.decomposition()
        log("instructions per request without the access line (--log-level warning)")
        results["instructions_without_access_line"] = icount.without_access_line()
    results["wall_s"] = time.monotonic() - started
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    args.output.write_text(report.render(results))
    log(f"wrote {args.output} and {args.output.with_suffix('.json')} in {results['wall_s']:.0f} s")
    print(report.summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
