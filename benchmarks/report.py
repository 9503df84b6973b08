"""Turns a run's raw data (results.json) into results.md. Also: python report.py results.json"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

MIB = 1024  # KiB per MiB

TARGETS = {
    "added_p50_c1_ms": 0.25,
    "added_p99_c1_ms": 1.0,
    "small_rps": 5000.0,
    "signing_us": 10.0,
    "idle_rss_mib": 60.0,
    "load_rss_mib": 80.0,
    "ready_s": 0.5,
}


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def groups(results: dict[str, Any]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for point in results.get("points", []):
        grouped[(point["scenario"], point["connections"])].append(point)
    return grouped


def aggregate(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for (scenario, connections), points in groups(results).items():
        d = [p["direct"] for p in points]
        x = [p["proxy"] for p in points]
        rows.append({
            "scenario": scenario,
            "small": points[0]["small"],
            "c": connections,
            "n": len(points),
            "direct_rps": med([p["rps"] for p in d]),
            "proxy_rps": med([p["rps"] for p in x]),
            "rps_ratio": med([b["rps"] / a["rps"] for a, b in zip(d, x) if a["rps"]]),
            "direct_p50": med([p["p50_ms"] for p in d]),
            "proxy_p50": med([p["p50_ms"] for p in x]),
            "added_p50": med([b["p50_ms"] - a["p50_ms"] for a, b in zip(d, x)]),
            "direct_p99": med([p["p99_ms"] for p in d]),
            "proxy_p99": med([p["p99_ms"] for p in x]),
            "added_p99": med([b["p99_ms"] - a["p99_ms"] for a, b in zip(d, x)]),
            "cpu_us": med([p["proxy_cpu_us_per_req"] for p in x]),
            "cpu_util": med([p["proxy_cpu_util"] for p in x]),
            "capacity": med([1e6 / p["proxy_cpu_us_per_req"] for p in x if p["proxy_cpu_us_per_req"]]),
            "foreign": max(p.get("foreign_cpu_util", 0.0) for p in x),
            "rq_wait": med([p.get("run_queue_wait_us_per_req", 0.0) for p in x]),
            "peak_rss_mib": max(p["peak_rss_kib"] for p in x) / MIB,
            "errors": sum(p["errors"] for p in x) + sum(p["errors"] for p in d),
            "log_bytes": med([p["log_bytes_per_req"] for p in x]),
            "p99_by_repeat": {p["repeat"]: p["proxy"]["p99_ms"] for p in points},
            "by_worker": _summed([p.get("requests_by_worker", {}) for p in x]),
        })
    order = {name: i for i, name in enumerate(["PutMetadata", "CreateChannel", "ListChannels"])}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99), r["c"]))
    return rows


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for count in counts:
        for key, value in count.items():
            total[key] += value
    return dict(sorted(total.items(), key=lambda kv: int(kv[0])))


def _pinning(settings: dict[str, Any]) -> str:
    if settings.get("workers"):
        cores = ",".join(map(str, settings["proxy_cpus"]))
        return (f"proxy on cores {cores} (`taskset -c {cores} ivs-proxy serve --workers {settings['workers']}`: "
                f"a supervisor and {settings['workers']} workers)")
    return f"proxy on core {settings['proxy_cpu']} (one worker: `taskset -c {settings['proxy_cpu']} ivs-proxy serve`)"


def workers_section(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """`--workers N`: how the requests spread, and what they cost summed over the processes."""
    settings = results["settings"]
    workers = settings.get("workers")
    if not workers:
        return []
    out = [
        f"## Workers (`serve --workers {workers}`)",
        "",
        ("Every CPU, memory and wait figure on this page is summed over the supervisor and its workers "
         "(the process tree). *by worker* = access lines per worker index (the `worker` field), over all "
         "repeats: how SO_REUSEPORT spread the load generator's connections. *req/s per core* = 1e6 / CPU "
         "µs per request: a pool of N workers on N free cores serves about N times that. With one core "
         "shared by the load generator, req/s itself cannot show that scaling (see the notes above); "
         "compare CPU per request with a run without `--workers`."),
        "",
        "| scenario | c | proxy req/s | CPU/req, all processes | req/s per core | by worker | peak RSS, all processes |",
        "|---|--:|--:|--:|--:|---|--:|",
    ]
    for r in rows:
        spread = r["by_worker"]
        served = sum(spread.values()) or 1
        shares = ", ".join(f"w{k} {v:,} ({v / served:.0%})" for k, v in spread.items()) or "-"
        out.append(f"| {r['scenario']} | {r['c']} | {r['proxy_rps']:,.0f} | {r['cpu_us']:.0f} us | "
                   f"{r['capacity']:,.0f} | {shares} | {r['peak_rss_mib']:.1f} MiB |")
    return [*out, ""]


def instructions_section(results: dict[str, Any]) -> list[str]:
    """Where a request's instructions go (benchmarks/icount.py), and what they cost here."""
    steps = results.get("instructions")
    if not steps:
        return []
    total = steps[-1]["instructions"]
    out = ["## Where the instructions go", "",
           ("Instructions the proxy executes per PutMetadata at c=1, counted by valgrind (`benchmarks/icount.py "
            "--decompose`; repeatable to ~0.1 %, unlike CPU time on this machine). Each row runs the proxy with one "
            "more layer of the request path switched on (`benchmarks/variants/launch.py` decompositions):"), "",
           "| layer | instructions / request | added by this layer | share of the full request |",
           "|---|--:|--:|--:|"]
    previous = 0
    for step in steps:
        count = step["instructions"]
        out.append(f"| {step['what']} | {count:,} | {count - previous:,} | {100 * (count - previous) / total:.0f} % |")
        previous = count
    # Instructions per request hardly change with concurrency (icount.py: c=1 and c=16 within
    # 1 %); CPU time does, so the cost of one instruction is taken where throughput is judged.
    loaded = [r["cpu_us"] for r in aggregate(results) if r["scenario"] == "PutMetadata" and r["c"] == 16]
    if loaded:
        ns_per_instruction = loaded[0] * 1000 / total
        rps = TARGETS["small_rps"]
        budget = 1e9 / rps / ns_per_instruction
        out += ["", (f"At the CPU time measured above for PutMetadata at c=16 ({loaded[0]:.0f} µs/request), one "
                     f"instruction costs {ns_per_instruction:.2f} ns here, so {rps:,.0f} req/s on one core allows "
                     f"about {budget:,.0f} instructions per request; aiohttp's server alone takes "
                     f"{steps[0]['instructions']:,}, and its client with TLS about "
                     f"{total - steps[-2]['instructions']:,} more (the last row, which also holds the retrier).")]
    return out + [""]


def why_missed(results: dict[str, Any], rows: list[dict[str, Any]],
               targets: list[tuple[str, str, str, str]]) -> list[str]:
    """The reason behind each kind of missed target, from this run's own figures."""
    missed = {name.split(",")[0] for name, _, _, verdict in targets if verdict.startswith("**missed")}
    if not missed:
        return []
    out = ["", "Why the misses:", ""]
    steps = results.get("instructions")
    cpu = {(r["scenario"], r["c"]): r["cpu_us"] for r in rows}
    if missed & {"added p50", "added p99", "req/s"}:
        line = (f"- **Latency and throughput** are CPU: at c=1 the proxy's core is busy for "
                f"{cpu.get(('PutMetadata', 1), float('nan')):.0f} µs of every PutMetadata, and from c=16 on the core "
                f"is saturated (100 % busy), so requests/s = 1 / CPU per request")
        if steps:
            server, total = steps[0]["instructions"], steps[-1]["instructions"]
            client = total - steps[-2]["instructions"]
            line += (f". Of {total:,} instructions per request, aiohttp's bare server takes {server:,} and the "
                     f"upstream round trip (aiohttp's client with TLS, and the retrier around it) {client:,}: together "
                     f"{100 * (server + client) / total:.0f} % (\"Where the instructions go\")")
            loaded = cpu.get(("PutMetadata", 16))
            if loaded:
                budget = 1e9 / TARGETS["small_rps"] / (loaded * 1000 / total)
                if server + client > budget:
                    line += (f". Those two alone exceed the ~{budget:,.0f} instructions that "
                             f"{TARGETS['small_rps']:,.0f} req/s allows here, so no cut in the proxy's own code "
                             "reaches the target: it needs aiohttp off the hot path, a stack change that needs a "
                             "decision first")
        out.append(line + ".")
    if "p99 growth c=1->16" in missed or "p99 growth c=16->64" in missed:
        spreads = [max(r["p99_by_repeat"].values()) / min(r["p99_by_repeat"].values())
                   for r in rows if r["c"] >= 16 and len(r["p99_by_repeat"]) > 1 and min(r["p99_by_repeat"].values())]
        spread = f"; the same point's p99 varied up to {max(spreads):.1f}x between repeats here" if spreads else ""
        out.append("- **p99 growth**: from c=16 on the core is saturated, so added latency is time queued behind "
                   f"a full core and p99 is the tail of that queue{spread}. Less CPU per request is the lever.")
    if "start to ready" in missed:
        out.append("- **Start to ready**: importing aiohttp, botocore and the proxy takes most of it "
                   "(`benchmarks/startup_breakdown.py`: build ~45 ms, imports ~0.4-0.55 s on this machine); "
                   "botocore's session (credential chain) and aiohttp's client are needed before the first "
                   "signature.")
    if {"idle RSS (after ready)", "RSS under load (peak"} & missed:
        out.append("- **Memory**: `benchmarks/footprint.py` breaks RSS down by phase.")
    return out


def _fmt_ms(value: float) -> str:
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def _verdict(value: float, limit: float, unit: str, higher_is_better: bool = False) -> str:
    if math.isnan(value):
        return "not measured"
    met = value >= limit if higher_is_better else value <= limit
    if met:
        return "**met**"
    if higher_is_better:
        return f"**missed**: needs {limit / value:.1f}x ({limit - value:,.0f} {unit} short)"
    return f"**missed** by {value - limit:.3g} {unit} ({value / limit:.1f}x the limit)"


def target_rows(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    by_key = {(r["scenario"], r["c"]): r for r in rows}
    for r in rows:
        if r["c"] == 1:
            out.append((f"added p50, c=1, {r['scenario']}", "<= 0.25 ms", f"{r['added_p50']:.3f} ms",
                        _verdict(r["added_p50"], TARGETS["added_p50_c1_ms"], "ms")))
    for r in rows:
        if r["c"] == 1:
            out.append((f"added p99, c=1, {r['scenario']}", "<= 1 ms", f"{r['added_p99']:.3f} ms",
                        _verdict(r["added_p99"], TARGETS["added_p99_c1_ms"], "ms")))
    for r in rows:
        if r["small"] and r["c"] >= 16:
            out.append((f"req/s, c={r['c']}, {r['scenario']}", ">= 5,000 /s",
                        f"{r['proxy_rps']:,.0f} /s ({r['capacity']:,.0f} /s per core from CPU/req)",
                        _verdict(r["proxy_rps"], TARGETS["small_rps"], "req/s", higher_is_better=True)))
    # p99 growing no faster than concurrency: p99(c) / p99(c0) <= c / c0, per repeat, median.
    for r in rows:
        lower = [k for k in by_key if k[0] == r["scenario"] and k[1] < r["c"]]
        if not lower:
            continue
        base = by_key[max(lower, key=lambda k: k[1])]
        ratios = [r["p99_by_repeat"][i] / base["p99_by_repeat"][i]
                  for i in r["p99_by_repeat"] if i in base["p99_by_repeat"] and base["p99_by_repeat"][i]]
        ratio = med(ratios)
        allowed = r["c"] / base["c"]
        out.append((f"p99 growth c={base['c']}->{r['c']}, {r['scenario']}", f"<= {allowed:.0f}x",
                    f"{ratio:.1f}x ({_fmt_ms(base['proxy_p99'])} -> {_fmt_ms(r['proxy_p99'])} ms)",
                    "**met**" if ratio <= allowed else f"**missed** ({ratio / allowed:.1f}x faster than concurrency)"))
    signing = results.get("signing")
    if signing:
        # The fastest batch, as timeit advises: the cost of the code itself; a slower batch
        # is the machine's interference (the median is shown beside it).
        value = signing["proxy_us"][1]
        out.append(("signing", "<= 10 us/op",
                    (f"{value:.1f} us/op, fastest of 7 batches (median {signing['proxy_us'][0]:.1f}; "
                    f"botocore {signing['botocore_us'][1]:.0f})"),
                    _verdict(value, TARGETS["signing_us"], "us")))
    startup = results.get("startup") or []
    if startup:
        idle = med([s["idle_rss_kib"] / MIB for s in startup])
        out.append(("idle RSS (after ready)", "<= 60 MiB", f"{idle:.1f} MiB", _verdict(idle, TARGETS["idle_rss_mib"], "MiB")))
    if rows:
        peak = max(r["peak_rss_mib"] for r in rows)
        hwm = results.get("after_load_memory_kib", {}).get("VmHWM", 0) / MIB
        value = max(peak, hwm)
        out.append(("RSS under load (peak, VmHWM)", "<= 80 MiB", f"{value:.1f} MiB", _verdict(value, TARGETS["load_rss_mib"], "MiB")))
    if startup:
        ready = med([s["ready_s"] for s in startup])
        out.append(("start to ready", "<= 0.5 s", f"{ready:.2f} s", _verdict(ready, TARGETS["ready_s"], "s")))
    return out


def summary_table(results: dict[str, Any]) -> str:
    rows = aggregate(results)
    lines = [
        ("| scenario | c | direct req/s | proxy req/s | proxy/direct | direct p50 | proxy p50 | **added p50** | "
        "direct p99 | proxy p99 | **added p99** | proxy CPU/req | req/s per core at that CPU/req | proxy core busy | "
        "other work on proxy core (max) | proxy waited for its core | peak RSS | errors |"),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scenario']} | {r['c']} | {r['direct_rps']:,.0f} | {r['proxy_rps']:,.0f} | {r['rps_ratio']:.2f} | "
            f"{_fmt_ms(r['direct_p50'])} | {_fmt_ms(r['proxy_p50'])} | **{_fmt_ms(r['added_p50'])}** | "
            f"{_fmt_ms(r['direct_p99'])} | {_fmt_ms(r['proxy_p99'])} | **{_fmt_ms(r['added_p99'])}** | "
            f"{r['cpu_us']:.0f} us | {r['capacity']:,.0f} | {r['cpu_util'] * 100:.0f}% | {r['foreign'] * 100:.0f}% | "
            f"{r['rq_wait']:.0f} us/req | "
            f"{r['peak_rss_mib']:.1f} MiB | {r['errors']} |"
        )
    return "\n".join(lines)


def render(results: dict[str, Any]) -> str:
    rows = aggregate(results)
    settings = results["settings"]
    m = results["machine"]
    out = [
        "# ivs-proxy benchmark results",
        "",
        (f"Generated by `make bench` (`{results['command']}`) on {results['started']}, "
        f"{results.get('wall_s', 0):.0f} s wall. Do not edit by hand: re-run `make bench`."),
        "",
        (f"{settings['repeats']} repeat(s) x {settings['duration_s']:g} s per point; every figure is the median over "
        "repeats. *Added* latency and proxy/direct ratios are computed within each repeat "
        "(direct and proxied runs back to back) and then the median is taken: the machine is noisy and "
        "these paired figures are the ones that count."),
        "",
    ]
    if settings.get("variant") or settings.get("proxy_args"):
        out += [(f"**Experimental run**: variant `{settings.get('variant')}`, extra serve args "
                f"`{' '.join(settings.get('proxy_args') or [])}`. Not the production configuration."), ""]
    out += [
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | {m['cpu_model']}, {m['cpus']} cores visible, {m['cpu_mhz']} MHz; flags: {m['cpu_flags_of_note']} |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| kernel / OS | {m['kernel']} / {m['os']} |",
        f"| pinning | {_pinning(settings)}; "
        f"upstream and load generator on core {settings['load_cpu']}; all at nice {settings.get('nice', 0)}"
        + (" (and the benchmark's scheduling autogroup too)" if settings.get("autogroup_nice") else "") + " |",
        f"| upstream | {m['upstream']} (TLS, keep-alive, one worker) |",
        f"| load generator | {m['load_generator']}, 1 thread, closed loop |",
        (f"| software | Python {m['python']}, {m['openssl']}, aiohttp {m['aiohttp']}, botocore {m['botocore']}, "
        f"structlog {m['structlog']}, uvloop {m['uvloop']}, ivs-proxy {m['ivs-proxy']} (git {m.get('git', '?')}) |"),
        "",
    ]
    for note in results.get("notes", []):
        out.append(f"> Note: {note}")
    if results.get("notes"):
        out.append("")
    out += ["## Targets", "", "| target | limit | measured | verdict |", "|---|---|---|---|"]
    targets = target_rows(results, rows)
    for name, limit, measured, verdict in targets:
        out.append(f"| {name} | {limit} | {measured} | {verdict} |")
    out += why_missed(results, rows, targets)
    out += [
        "",
        "## Load results (full pipeline, production settings)",
        "",
        ("Latencies in ms. *direct* = the same wrk load straight at the TLS upstream; *proxy* = through "
        "`ivs-proxy serve` (plain HTTP in, TLS out). *added* = proxy - direct, per repeat, median. "
        "*proxy CPU/req* = the proxy's utime+stime over the run / requests; *proxy CPU* = share of its "
        "one core in use; *req/s per core at that CPU/req* = 1e6 / CPU µs per request, the throughput one fully "
        "used core would give, which is much less sensitive to other tenants than req/s. *other work on proxy core* "
        "= busy time of that core (/proc/stat) not spent in the proxy: how much a shared machine interfered; "
        "*proxy waited for its core* = time the proxy was runnable but another task held the core "
        "(/proc/<pid>/task/*/schedstat), per request: scheduler delay that lands in the proxy's latency. "
        "*peak RSS* = highest VmRSS sampled every 50 ms during the point."),
        "",
        summary_table(results),
        "",
        "Scenarios: `PutMetadata` (small body, 204 answer), `CreateChannel` (small body, ~1 KiB answer), "
        "`ListChannels` (`{}` body, 64 KiB answer). Access log: "
        + ", ".join(f"{r['scenario']} c={r['c']} {r['log_bytes']:.0f} B/req" for r in rows if r["c"] == 1)
        + " written to stderr (a file here, as a container runtime would collect it).",
        "",
        *workers_section(results, rows),
    ]
    startup = results.get("startup") or []
    if startup:
        out += [
            "## Start-up and memory",
            "",
            (f"Start to ready (spawn of `taskset ... ivs-proxy serve` to the first `GET /readyz` 200, "
            f"credentials from the environment), {len(startup)} runs: median **{med([s['ready_s'] for s in startup]):.3f} s** "
            f"(min {min(s['ready_s'] for s in startup):.3f}, max {max(s['ready_s'] for s in startup):.3f}); "
            f"to `/healthz` (listening): median {med([s['listening_s'] for s in startup]):.3f} s."),
            "",
            (f"Idle RSS 0.5 s after ready: median {med([s['idle_rss_kib'] / MIB for s in startup]):.1f} MiB. "
            f"Benchmark proxy: {results['idle_memory_kib']['VmRSS'] / MIB:.1f} MiB idle before load, "
            f"{results.get('after_load_memory_kib', {}).get('VmRSS', 0) / MIB:.1f} MiB idle after load, "
            f"VmHWM {results.get('after_load_memory_kib', {}).get('VmHWM', 0) / MIB:.1f} MiB."),
            "",
        ]
    signing = results.get("signing")
    if signing:
        out += [
            "## Signing",
            "",
            ("µs per signature of the benchmark's PutMetadata (session token, content-type), timeit, median of 7 "
            "batches (min in brackets), pinned to the proxy core:"),
            "",
            (f"- `proxy.aws.signing.SigV4Signer.sign`: **{signing['proxy_us'][0]:.1f} µs** ({signing['proxy_us'][1]:.1f}); "
            f"every call in a new second (date-string cache miss): {signing['proxy_new_second_us'][0]:.1f} µs"),
            (f"- botocore `SigV4Auth.add_auth` (with `AWSRequest` construction): {signing['botocore_us'][0]:.1f} µs "
            f"({signing['botocore_us'][1]:.1f})"),
            "",
        ]
    if results.get("profile"):
        p = results["profile"]
        out += ["## Profile", "", (f"py-spy at c=16 PutMetadata: `{p['speedscope']}` (open in speedscope.app), "
                f"collapsed stacks `{p['collapsed']}`, summary `{p['summary']}`. Share of the proxy's busy "
                "event-loop thread, each sample charged to the innermost frame of a known component:"), ""]
        summary = Path(__file__).resolve().parent / p["summary"]
        if summary.exists():
            text = summary.read_text()
            table = text.split("## By component (innermost matching frame)", 1)[-1].split("##", 1)[0].strip()
            out += [table, ""]
    out += instructions_section(results)
    out += [
        "## What would close the gaps",
        "",
        ("`benchmarks/compare.py` measures proposed changes (uvloop, GC tuning, no access log, a lean upstream "
        "client, a lean data listener, and decomposition stubs) side by side against this production command "
        "and writes `variants.md`; `benchmarks/stages.py` and `benchmarks/startup_breakdown.py` break one "
        "request's CPU and the start-up into their parts."),
        "",
        "## Per-repeat data",
        "",
        ("Raw figures for every point are in `results.json` next to this file "
        "(`python benchmarks/report.py benchmarks/results.json` re-renders this page)."),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    data = json.loads(Path(sys.argv[1]).read_text())
    target = Path(sys.argv[1]).with_suffix(".md")
    target.write_text(render(data))
    print(summary_table(data))
