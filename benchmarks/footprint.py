"""Start-up and memory of `ivs-proxy serve` alone, without the full `make bench`: start to
ready (median of several fresh processes), idle RSS after ready, and RSS (peak VmRSS and
VmHWM) after a c=64 load through the benchmark's TLS upstream.

    .venv/bin/python benchmarks/footprint.py [--startups 7] [--seconds 5] [--json /tmp/out.json]
    .venv/bin/python benchmarks/footprint.py --variant base=/tmp/launch_a.py --variant new=/tmp/launch_b.py
    .venv/bin/python benchmarks/footprint.py --startups 1 --step ListChannels:64:5 --step ListChannels:1:20 \
        --step ListChannels:64:5    # run.py's sequence: idle connections closed, then reopened

Same spawn, environment and pinning as `run.py` (proxyproc.py); about 15 s per variant.
With several `--variant NAME=LAUNCHER` (a python file run instead of the `ivs-proxy`
script, e.g. one that puts another checkout first on sys.path), their start-ups are
interleaved round by round, so that drift on a shared machine hits each of them alike.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import procs
from load import LoadGenerator
from procs import RssSampler, cpu_seconds
from proxyproc import ProxyProcess, compile_bytecode, proxy_env
from upstream import Upstream, make_certificates, start_upstream

SCENARIOS = ("PutMetadata", "CreateChannel", "ListChannels")


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def startup(env: dict[str, str], args: argparse.Namespace, log: Path, launcher: tuple[str, ...] | None
            ) -> tuple[float, float, int]:
    """(start to ready s, CPU s used by then, VmRSS KiB 0.5 s after ready) of one fresh process."""
    proxy = ProxyProcess(env, args.proxy_cpu, log, (), launcher)
    proxy.start()
    try:
        # CPU (all threads) used when it was found ready: drifts less than wall time when
        # other work shares the core.
        cpu = cpu_seconds(proxy.pid)
        time.sleep(0.5)
        return proxy.ready_s, cpu, proxy.memory_kib()["VmRSS"]
    finally:
        proxy.stop()


def under_load(env: dict[str, str], args: argparse.Namespace, log: Path, launcher: tuple[str, ...] | None,
               upstream: Upstream) -> dict[str, object]:
    proxy = ProxyProcess(env, args.proxy_cpu, log, (), launcher)
    proxy.start()
    try:
        time.sleep(1.0)
        result: dict[str, object] = {"idle_rss_mib": mib(proxy.memory_kib()["VmRSS"])}
        generator = LoadGenerator(args.load_cpu)
        steps = args.step or [(scenario, args.connections, args.seconds) for scenario in args.scenario or ["PutMetadata"]]
        with RssSampler(proxy.pid) as sampler:
            for i, (scenario, connections, seconds) in enumerate(steps):
                body = upstream.docroot / f"{scenario}.request.json"
                load = generator.run(f"{proxy.url}/{scenario}", body, connections, seconds)
                name = f"{scenario}_c{connections}_{i}" if args.step else scenario
                result |= {f"{name}_rps": round(load.rps), f"{name}_errors": load.errors}
                if args.step:
                    result[f"{name}_peak_rss_mib"] = mib(sampler.peak_kib)
        memory = proxy.memory_kib()
        return result | {"peak_rss_mib": mib(sampler.peak_kib), "after_load_rss_mib": mib(memory["VmRSS"]),
                         "vmhwm_mib": mib(memory["VmHWM"])}
    finally:
        proxy.stop()


def step(text: str) -> tuple[str, int, float]:
    scenario, connections, seconds = text.split(":")
    if scenario not in SCENARIOS:
        raise argparse.ArgumentTypeError(f"unknown scenario {scenario!r}")
    return scenario, int(connections), float(seconds)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--startups", type=int, default=7, help="fresh processes per variant")
    parser.add_argument("--seconds", type=float, default=5.0, help="load duration per scenario (0: no load)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="load these one after the other (default PutMetadata; repeat the flag)")
    parser.add_argument("--step", action="append", type=step, metavar="SCENARIO:CONNECTIONS:SECONDS",
                        help="a load step (repeat the flag; replaces --scenario/--connections/--seconds): "
                             "e.g. ListChannels:1:20 then ListChannels:64:5 lets the pool close its idle "
                             "connections and reopen them under 64 KiB answers, as run.py's sequence does")
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=LAUNCHER",
                        help="a python file to run instead of the ivs-proxy script (repeat to compare)")
    parser.add_argument("--nice", type=int, default=procs.default_nice(),
                        help="nice value of every process, as run.py (default -10 as root, else 0)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (proxy logs)")
    args = parser.parse_args()
    procs.NICE = args.nice
    with procs.AutogroupPriority(args.nice):
        return measure(args)


def measure(args: argparse.Namespace) -> int:
    variants: dict[str, tuple[str, ...] | None] = {"ivs-proxy": None}
    if args.variant:
        variants = {name: (sys.executable, path) for name, _, path in (v.partition("=") for v in args.variant)}
    compile_bytecode()  # as run.py: start-up as an installed package's, not from source
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-footprint-"))
    certs = make_certificates(tmp)
    upstream = start_upstream(tmp / "upstream", certs, args.load_cpu)
    env = proxy_env(upstream.url, certs.ca_bundle)
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in variants}
    results: dict[str, dict[str, object]] = {}
    try:
        for i in range(args.startups):
            for name, launcher in variants.items():
                runs[name].append(startup(env, args, tmp / f"{name}-startup-{i}.log", launcher))
        for name, launcher in variants.items():
            ready, cpu, idle = zip(*runs[name], strict=True)
            results[name] = {"ready_s_median": round(statistics.median(ready), 3),
                             "ready_s_min": round(min(ready), 3),
                             "ready_s": [round(r, 3) for r in ready],
                             "cpu_to_ready_s_median": round(statistics.median(cpu), 3),
                             "idle_rss_mib_median": mib(statistics.median(idle))}
            if args.seconds > 0:
                results[name] |= under_load(env, args, tmp / f"{name}.log", launcher, upstream)
            print(json.dumps({name: results[name]}), flush=True)
    finally:
        upstream.stop()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
