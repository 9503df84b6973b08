"""Measures proposed proxy changes side by side, in one run, without editing proxy/.

    .venv/bin/python benchmarks/compare.py                      # default variant set
    PYTHONPATH=/tmp/bench-extra .venv/bin/python benchmarks/compare.py   # with uvloop available

One upstream; one `ivs-proxy` per variant, all pinned to the proxy core but loaded one at a
time; every repeat runs direct + every variant back to back, so the ratios against
`baseline` (the production command) are paired. Writes benchmarks/variants.md (+ .json).
A variant is NAME|PATCHES|SERVE ARGS, PATCHES from variants/launch.py ("" = none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine
import payloads
import procs
from load import LoadGenerator
from proxyproc import ProxyProcess, proxy_env
from run import LAUNCHER, log, one_point, preflight
from upstream import make_certificates, start_upstream

DEFAULT_VARIANTS = [
    "baseline||",
    "gcstats|gcstats|",
    "no-access-log||--log-level warning",
    "gc-tuned|gcfreeze,gcthreshold,gcstats|",
    "no-uvloop|no-uvloop|",
    "stub-upstream|stub-upstream|",
    "stub-handler|stub-handler|",
]


def uvloop_importable(env: dict[str, str]) -> bool:
    return subprocess.run([sys.executable, "-c", "import uvloop"], env=env, check=False, capture_output=True).returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", help="NAME|PATCHES|SERVE ARGS (repeatable)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--scenarios", default="PutMetadata,CreateChannel,ListChannels")
    parser.add_argument("--output", type=Path, default=HERE / "variants.md")
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--nice", type=int, default=procs.default_nice())
    args = parser.parse_args()
    procs.NICE = args.nice
    with procs.AutogroupPriority(args.nice):
        return run(args)


def run(args: argparse.Namespace) -> int:
    concurrency = [int(c) for c in args.concurrency.split(",")]
    by_name = {s.name: s for s in payloads.SCENARIOS}
    scenarios = [by_name[n] for n in args.scenarios.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-compare-"))
    certs = make_certificates(tmp)
    upstream = start_upstream(tmp / "upstream", certs, args.load_cpu)
    generator = LoadGenerator(args.load_cpu)
    base_env = proxy_env(upstream.url, certs.ca_bundle)
    proxies: dict[str, ProxyProcess] = {}
    specs: dict[str, tuple[str, str]] = {}
    skipped = []
    try:
        for spec in args.variant or DEFAULT_VARIANTS:
            name, patches, serve_args = (spec.split("|") + ["", ""])[:3]
            env = dict(base_env)
            launcher = None
            if patches:
                if "uvloop" in patches and not uvloop_importable(env):
                    skipped.append(f"{name} (uvloop not importable: `pip install --target DIR uvloop`, PYTHONPATH=DIR)")
                    continue
                env["BENCH_PATCHES"] = patches
                launcher = (sys.executable, str(LAUNCHER))
            proxy = ProxyProcess(env, args.proxy_cpu, tmp / f"{name}.log", tuple(serve_args.split()), launcher)
            proxy.start()
            if "stub" not in patches:  # decomposition stubs answer 204 to everything
                preflight(scenarios, upstream.url, proxy.url, certs.ca_bundle)
            proxies[name] = proxy
            specs[name] = (patches, serve_args)
            log(f"variant {name}: ready in {proxy.ready_s:.2f} s, RSS {proxy.memory_kib()['VmRSS'] / 1024:.1f} MiB")
        bodies = {s.name: upstream.docroot / f"{s.name}.request.json" for s in scenarios}
        for scenario in scenarios:
            for proxy in proxies.values():
                generator.run(proxy.url + scenario.path, bodies[scenario.name], max(concurrency), 1)
        points = []
        for repeat in range(args.repeats):
            for scenario in scenarios:
                for c in concurrency:
                    direct = one_point(generator, upstream.url + scenario.path, bodies[scenario.name], c, args.duration, None)
                    row = {"repeat": repeat, "scenario": scenario.name, "c": c, "direct": direct, "variants": {}}
                    for name, proxy in proxies.items():
                        row["variants"][name] = one_point(generator, proxy.url + scenario.path, bodies[scenario.name], c,
                                                          args.duration, proxy, args.proxy_cpu)
                    points.append(row)
                    log(f"r{repeat} {scenario.name} c={c}: " + ", ".join(
                        f"{n} {v['rps']:.0f}/s {v['proxy_cpu_us_per_req']:.0f}us" for n, v in row["variants"].items()))
        memory = {name: p.memory_kib() for name, p in proxies.items()}
    finally:
        for proxy in proxies.values():
            proxy.stop()
        upstream.stop()
    gc_lines = {name: [ln for ln in p.log_path.read_text(errors="replace").splitlines() if ln.startswith("BENCH_GC")]
                for name, p in proxies.items()}
    data = {"machine": machine.describe(), "specs": specs, "skipped": skipped, "points": points, "memory": memory,
            "gc": gc_lines, "settings": vars(args) | {"output": str(args.output)}}
    args.output.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    args.output.write_text(render(data))
    print(render(data))
    return 0


def render(data: dict) -> str:  # type: ignore[type-arg]
    med = statistics.median
    names = list(data["specs"])
    out = ["# ivs-proxy: proposed changes measured side by side", "",
           ("Generated by `benchmarks/compare.py`. Every variant is `ivs-proxy serve` pinned to one core; all but "
           "`baseline` run through `benchmarks/variants/launch.py`, which applies the change from outside "
           "(EXPERIMENTAL, not production). Figures are medians over repeats; the *vs baseline* columns are "
           "medians of per-repeat ratios (runs back to back, same upstream)."), "",
           "| variant | patches | serve args |", "|---|---|---|"]
    out += [f"| {n} | {p or '-'} | {a or '-'} |" for n, (p, a) in data["specs"].items()]
    if data["skipped"]:
        out += ["", "Skipped: " + "; ".join(data["skipped"])]
    out += ["", "| scenario | c | variant | req/s | vs baseline | p50 ms | p99 ms | added p50 ms | CPU us/req | vs baseline |",
            "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
    keys = sorted({(p["scenario"], p["c"]) for p in data["points"]},
                  key=lambda k: (["PutMetadata", "CreateChannel", "ListChannels"].index(k[0]), k[1]))
    for scenario, c in keys:
        pts = [p for p in data["points"] if p["scenario"] == scenario and p["c"] == c]
        d = pts[0]["direct"]
        out.append(f"| {scenario} | {c} | *direct* | {med([p['direct']['rps'] for p in pts]):,.0f} | | "
                   f"{med([p['direct']['p50_ms'] for p in pts]):.3f} | {med([p['direct']['p99_ms'] for p in pts]):.3f} | | | |")
        for n in names:
            v = [p["variants"][n] for p in pts]
            b = [p["variants"]["baseline"] for p in pts] if "baseline" in names else v
            rps_ratio = med([x["rps"] / y["rps"] for x, y in zip(v, b)])
            cpu_ratio = med([x["proxy_cpu_us_per_req"] / y["proxy_cpu_us_per_req"] for x, y in zip(v, b)])
            added = med([x["p50_ms"] - p["direct"]["p50_ms"] for x, p in zip(v, pts)])
            out.append(f"| | | {n} | {med([x['rps'] for x in v]):,.0f} | {rps_ratio:.2f}x | {med([x['p50_ms'] for x in v]):.3f} | "
                       f"{med([x['p99_ms'] for x in v]):.3f} | {added:.3f} | {med([x['proxy_cpu_us_per_req'] for x in v]):.0f} | "
                       f"{cpu_ratio:.2f}x |")
        del d
    out += ["", "RSS after the run (MiB): " + ", ".join(
        f"{n} {m['VmRSS'] / 1024:.1f} (HWM {m['VmHWM'] / 1024:.1f})" for n, m in data["memory"].items())]
    for n, lines in data["gc"].items():
        if lines:
            out += ["", f"GC ({n}): " + "; ".join(ln.removeprefix("BENCH_GC ") for ln in lines)]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    log(f"done in {time.monotonic() - started:.0f} s")
    sys.exit(code)
