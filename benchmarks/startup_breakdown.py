"""Where start-up time goes: each phase of `ivs-proxy serve` before it is ready, timed in a
fresh interpreter (pinned to the proxy core), median of several runs.

    .venv/bin/python benchmarks/startup_breakdown.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROBE = r"""
import time, json, os
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
r0 = rss()
t0 = time.perf_counter()
import proxy.cli
t1 = time.perf_counter()
r1 = rss()
from proxy.config import load_config
from proxy.model.catalog import Catalog
from proxy.aws.endpoints import EndpointTable
from proxy.app import allowed_regions, build_proxy
config = load_config(None)
t2 = time.perf_counter()
catalog = Catalog.load(config.services)
t3 = time.perf_counter()
r3 = rss()
allowed = allowed_regions(config)
endpoints = EndpointTable.build(config.services, allowed, os.environ, None)
t4 = time.perf_counter()
r4 = rss()
proxy = build_proxy(config, os.environ)
t5 = time.perf_counter()
r5 = rss()
import gc
gc.collect()
r6 = rss()
print("RSS_MIB " + json.dumps({"interpreter": r0, "after imports": r1, "after Catalog.load": r3,
                               "after EndpointTable.build": r4, "after build_proxy (second catalog etc.)": r5,
                               "after gc.collect()": r6}))
print(json.dumps({"import proxy.cli (aiohttp, botocore, structlog, prometheus)": t1 - t0,
                  "load_config": t2 - t1, "Catalog.load (botocore models)": t3 - t2,
                  "EndpointTable.build (rulesets x regions)": t4 - t3,
                  "build_proxy total (catalog, validators, endpoints, apps; again)": t5 - t4}))
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from proxyproc import proxy_env

    env = proxy_env("https://127.0.0.1:9", HERE / "nonexistent-ca.pem")
    interpreter = []
    phases: dict[str, list[float]] = {}
    for _ in range(args.runs):
        import time

        started = time.perf_counter()
        subprocess.run(["taskset", "-c", str(args.cpu), sys.executable, "-c", "pass"], check=True, env=env)
        interpreter.append(time.perf_counter() - started)
        out = subprocess.run(["taskset", "-c", str(args.cpu), sys.executable, "-c", PROBE], check=True, env=env,
                             capture_output=True, text=True)
        lines = out.stdout.strip().splitlines()
        rss_line = next(ln for ln in lines if ln.startswith("RSS_MIB "))
        memory = json.loads(rss_line.removeprefix("RSS_MIB "))
        for key, value in json.loads(lines[-1]).items():
            phases.setdefault(key, []).append(value)
    result = {"python -c pass (interpreter start + site)": statistics.median(interpreter)}
    result |= {k: statistics.median(v) for k, v in phases.items()}
    for key, value in result.items():
        print(f"{value * 1000:8.1f} ms  {key}")
    print("\nRSS (MiB) in the last run:")
    for key, value in memory.items():
        print(f"{value:8.1f} MiB  {key}")
    importtime = subprocess.run([sys.executable, "-X", "importtime", "-c", "import proxy.cli"], env=env,
                                check=False, capture_output=True, text=True).stderr
    rows = []
    for line in importtime.splitlines()[1:]:
        parts = line.split("|")
        if len(parts) == 3:
            rows.append((int(parts[1]), parts[2].rstrip()))
    top = [(us, name) for us, name in rows if name.count("  ") <= 1 and not name.startswith("   ")]
    print("\nlargest top-level imports (cumulative):")
    for us, name in sorted(top, reverse=True)[:10]:
        print(f"{us / 1000:8.1f} ms  {name.strip()}")
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
