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
    "added_p50_c1_ms": 0.3,
    "added_p99_c1_ms": 1.0,
    "signing_us": 10.0,
    "idle_rss_mib": 40.0,
    "load_rss_mib": 60.0,
    "access_line_share": 0.05,
    # Ratios to the Go peer (issue 14), measured when `make bench GO_PEER=...` names one:
    "c1_capacity_vs_go": 1.0,  # req/s per core at c=1 >= the stock peer's
    "loaded_rps_vs_go": 2.0,  # req/s at c=16 and c=64 >= 2x the stock peer's
    "loaded_rps_vs_go_fixed": 0.5,  # ... and >= 0.5x the pool-fixed peer's
    "ready_vs_go": 4.0,  # start to ready <= 4x the peer's start to first 2xx
}

PEER_NAMES = {"go": "aws-sigv4-proxy, stock", "go_fixed": "aws-sigv4-proxy, idle pool raised"}
NO_PEER = "not measured: `make bench GO_PEER=/path/to/aws-sigv4-proxy` (benchmarks/go_peer.py)"


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
            "peers": _peer_rows(points),
        })
    order = {name: i for i, name in enumerate(["PutMetadata", "CreateChannel", "ListChannels"])}
    rows.sort(key=lambda r: (order.get(r["scenario"], 99), r["c"]))
    return rows


def _peer_rows(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per peer: req/s, latency, CPU per request, and ivs-proxy's ratios to it, per repeat, median."""
    out: dict[str, dict[str, float]] = {}
    for key in sorted({k for p in points for k in p.get("peers", {})}):
        pairs = [(p["direct"], p["proxy"], p["peers"][key]) for p in points if key in p.get("peers", {})]
        out[key] = {
            "rps": med([g["rps"] for _, _, g in pairs]),
            "added_p50": med([g["p50_ms"] - d["p50_ms"] for d, _, g in pairs]),
            "added_p99": med([g["p99_ms"] - d["p99_ms"] for d, _, g in pairs]),
            "cpu_us": med([g["proxy_cpu_us_per_req"] for _, _, g in pairs]),
            "capacity": med([1e6 / g["proxy_cpu_us_per_req"] for _, _, g in pairs if g["proxy_cpu_us_per_req"]]),
            "rps_ratio": med([x["rps"] / g["rps"] for _, x, g in pairs if g["rps"]]),
            "capacity_ratio": med([g["proxy_cpu_us_per_req"] / x["proxy_cpu_us_per_req"]
                                   for _, x, g in pairs if x["proxy_cpu_us_per_req"]]),
            "peak_rss_mib": max(g["peak_rss_kib"] for _, _, g in pairs) / MIB,
            "errors": sum(g["errors"] for _, _, g in pairs),
        }
    return out


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
    budget = instruction_budget(results)
    if budget is not None:
        ns_per_instruction, instructions, basis = budget
        out += ["", (f"At the CPU time measured above for PutMetadata at c=16, one instruction costs "
                     f"{ns_per_instruction:.2f} ns here; {basis} allows about {instructions:,.0f} instructions per "
                     f"request. The data port's server alone takes {steps[0]['instructions']:,}.")]
    without = results.get("instructions_without_access_line")
    if without:
        out += ["", (f"The full proxy at `--log-level warning` (no access line): {without:,} instructions per "
                     f"request, so the access line costs {total - without:,} ({(total - without) / total:.1%}).")]
    return out + [""]


def instruction_budget(results: dict[str, Any]) -> tuple[float, float, str] | None:
    """(ns per instruction here, instructions per request the loaded targets allow, what sets them)."""
    steps = results.get("instructions")
    rows = aggregate(results)
    loaded = next((r for r in rows if r["scenario"] == "PutMetadata" and r["c"] == 16), None)
    if not steps or loaded is None:
        return None
    ns_per_instruction = loaded["cpu_us"] * 1000 / steps[-1]["instructions"]
    go = loaded["peers"].get("go")
    fixed = loaded["peers"].get("go_fixed")
    wanted = [(go["rps"] * TARGETS["loaded_rps_vs_go"], f"2x the stock Go peer ({go['rps']:,.0f} req/s)")] if go else []
    if fixed:
        wanted.append((fixed["rps"] * TARGETS["loaded_rps_vs_go_fixed"],
                       f"0.5x the pool-fixed Go peer ({fixed['rps']:,.0f} req/s)"))
    if not wanted:
        return None
    rps, basis = max(wanted)
    return ns_per_instruction, 1e9 / rps / ns_per_instruction, f"{rps:,.0f} req/s on one core ({basis})"


def why_missed(results: dict[str, Any], rows: list[dict[str, Any]],
               targets: list[tuple[str, str, str, str]]) -> list[str]:
    """The reason behind each kind of missed target, from this run's own figures."""
    missed = {name.split(",")[0] for name, _, _, verdict in targets if verdict.startswith("**missed")}
    if not missed:
        return []
    out = ["", "Why the misses:", ""]
    steps = results.get("instructions")
    cpu = {(r["scenario"], r["c"]): r["cpu_us"] for r in rows}
    if any(name.startswith(("added p", "req/s")) for name in missed):
        line = (f"- **Latency and throughput** are CPU: at c=1 the proxy's core is busy for "
                f"{cpu.get(('PutMetadata', 1), float('nan')):.0f} µs of every PutMetadata, and from c=16 on the core "
                f"is saturated, so requests/s = 1 / CPU per request")
        if steps:
            total = steps[-1]["instructions"]
            parts = ", ".join(f"{step['what'].split(':')[0].lstrip('+ ')} {step['instructions'] - previous:,}"
                              for step, previous in zip(steps, [0] + [s["instructions"] for s in steps[:-1]]))
            line += f". Of {total:,} instructions per request: {parts} (\"Where the instructions go\")"
            budget = instruction_budget(results)
            if budget is not None:
                line += (f". The loaded targets allow about {budget[1]:,.0f}: {total / budget[1]:.1f}x fewer than "
                         "today")
        out.append(line + ".")
    if "p99 growth c=1->16" in missed or "p99 growth c=16->64" in missed:
        spreads = [max(r["p99_by_repeat"].values()) / min(r["p99_by_repeat"].values())
                   for r in rows if r["c"] >= 16 and len(r["p99_by_repeat"]) > 1 and min(r["p99_by_repeat"].values())]
        spread = f"; the same point's p99 varied up to {max(spreads):.1f}x between repeats here" if spreads else ""
        out.append("- **p99 growth**: from c=16 on the core is saturated, so added latency is time queued behind "
                   f"a full core and p99 is the tail of that queue{spread}. Less CPU per request is the lever.")
    if "start to ready" in missed:
        out.append("- **Start to ready**: imports take most of it (`benchmarks/startup_breakdown.py`); aiohttp is "
                   "no longer imported (both ports are proxy/serve/http_server.py), so the largest piece left is "
                   "botocore's session (session -> client -> waiter -> docs, ~80-90 ms), which the credential "
                   "chain needs before the first signature.")
    if "the access line's share of a request (instructions" in missed:
        out.append("- **Access line**: most of its instructions are the JSON encoding of the line (orjson when "
                   "installed, the fast extra; else the standard C encoder, ~10x slower); lines are written in "
                   "batches at most 50 ms apart, and the write is not in the count.")
    if {"idle RSS (after ready)", "RSS under load (peak"} & missed:
        line = ("- **Memory**: `benchmarks/footprint.py` breaks RSS down by phase; why it rises under "
                "64 KiB answers at c=64: benchmarks/README.md, \"Memory under load\"")
        by_repeat: dict[int, float] = defaultdict(float)
        for point in results.get("points", []):
            by_repeat[point["repeat"]] = max(by_repeat[point["repeat"]], point["proxy"]["peak_rss_kib"] / MIB)
        if len(by_repeat) > 1:
            line += ("; the peak RSS of the proxy after each repeat here: "
                     + ", ".join(f"{by_repeat[r]:.1f}" for r in sorted(by_repeat)) + " MiB")
        peers = results.get("peers") or {}
        if "go" in peers:
            idle = med([s["idle_rss_kib"] / MIB for s in peers["go"].get("startup", [])])
            line += f"; the stock Go peer idles at {idle:.1f} MiB"
        out.append(line + ".")
    foreign = max((r["foreign"] for r in rows), default=0.0)
    if foreign > 0.1:
        out.append(f"- **The machine was shared**: other work took up to {foreign:.0%} of the proxy's core during a "
                   "point (\"other work on proxy core\"): CPU per request and latency are inflated by it; "
                   "the instruction counts are not.")
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


def access_line_share(results: dict[str, Any]) -> float:
    """The access line's share of a request's instructions (icount: full vs --log-level warning)."""
    steps = results.get("instructions")
    without = results.get("instructions_without_access_line")
    if not steps or not without:
        return float("nan")
    return (steps[-1]["instructions"] - without) / steps[-1]["instructions"]


def _ratio_verdict(ratio: float, limit: float, higher_is_better: bool = True) -> str:
    if math.isnan(ratio):
        return "not measured"
    if higher_is_better:
        return "**met**" if ratio >= limit else f"**missed**: {ratio:.2f}x, needs {limit:g}x ({limit / ratio:.1f}x to go)"
    return "**met**" if ratio <= limit else f"**missed**: {ratio:.2f}x, allowed {limit:g}x"


def target_rows(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    by_key = {(r["scenario"], r["c"]): r for r in rows}
    peers = results.get("peers") or {}
    put_c1 = by_key.get(("PutMetadata", 1))
    if put_c1 is not None:
        go = put_c1["peers"].get("go")
        if go:
            measured = (f"{put_c1['capacity']:,.0f} vs {go['capacity']:,.0f} /s per core ({go['capacity_ratio']:.2f}x; "
                        f"req/s {put_c1['proxy_rps']:,.0f} vs {go['rps']:,.0f})")
            out.append(("req/s per core, c=1, PutMetadata, vs the stock Go peer", ">= 1x", measured,
                        _ratio_verdict(go["capacity_ratio"], TARGETS["c1_capacity_vs_go"])))
        else:
            out.append(("req/s per core, c=1, PutMetadata, vs the stock Go peer", ">= 1x",
                        f"{put_c1['capacity']:,.0f} /s per core", NO_PEER))
    for r in rows:
        if r["c"] == 1:
            out.append((f"added p50, c=1, {r['scenario']}", f"<= {TARGETS['added_p50_c1_ms']:g} ms",
                        f"{r['added_p50']:.3f} ms", _verdict(r["added_p50"], TARGETS["added_p50_c1_ms"], "ms")))
    for r in rows:
        if r["c"] == 1:
            out.append((f"added p99, c=1, {r['scenario']}", "<= 1 ms", f"{r['added_p99']:.3f} ms",
                        _verdict(r["added_p99"], TARGETS["added_p99_c1_ms"], "ms")))
    for r in rows:
        if r["scenario"] != "PutMetadata" or r["c"] < 16:
            continue
        for key, limit in (("go", TARGETS["loaded_rps_vs_go"]), ("go_fixed", TARGETS["loaded_rps_vs_go_fixed"])):
            name = f"req/s, c={r['c']}, PutMetadata, vs {PEER_NAMES[key]}"
            peer = r["peers"].get(key)
            if peer:
                measured = f"{r['proxy_rps']:,.0f} vs {peer['rps']:,.0f} /s ({peer['rps_ratio']:.2f}x)"
                out.append((name, f">= {limit:g}x", measured, _ratio_verdict(peer["rps_ratio"], limit)))
            else:
                missing = NO_PEER if key == "go" else (
                    "not measured: `GO_PEER_FIXED=...` (go_peer.py build --raise-idle-pool)")
                out.append((name, f">= {limit:g}x", f"{r['proxy_rps']:,.0f} /s ({r['rps_ratio']:.2f}x direct)",
                            missing))
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
        out.append(("idle RSS (after ready)", f"<= {TARGETS['idle_rss_mib']:g} MiB", f"{idle:.1f} MiB",
                    _verdict(idle, TARGETS["idle_rss_mib"], "MiB")))
    if rows:
        peak = max(r["peak_rss_mib"] for r in rows)
        hwm = results.get("after_load_memory_kib", {}).get("VmHWM", 0) / MIB
        value = max(peak, hwm)
        out.append(("RSS under load (peak, VmHWM)", f"<= {TARGETS['load_rss_mib']:g} MiB", f"{value:.1f} MiB",
                    _verdict(value, TARGETS["load_rss_mib"], "MiB")))
    if startup:
        ready = med([s["ready_s"] for s in startup])
        go_startup = (peers.get("go") or {}).get("startup")
        if go_startup:
            go_ready = med([s["ready_s"] for s in go_startup])
            out.append(("start to ready, vs the stock Go peer's start to first 2xx", f"<= {TARGETS['ready_vs_go']:g}x",
                        f"{ready:.2f} s vs {go_ready:.3f} s ({ready / go_ready:.1f}x)",
                        _ratio_verdict(ready / go_ready, TARGETS["ready_vs_go"], higher_is_better=False)))
        else:
            out.append(("start to ready, vs the stock Go peer", f"<= {TARGETS['ready_vs_go']:g}x", f"{ready:.2f} s",
                        NO_PEER))
    share = access_line_share(results)
    if not math.isnan(share):
        full = results["instructions"][-1]["instructions"]
        line = full - results["instructions_without_access_line"]
        out.append(("the access line's share of a request (instructions, icount)",
                    f"<= {TARGETS['access_line_share']:.0%}", f"{share:.1%} ({line:,} of {full:,})",
                    "**met**" if share <= TARGETS["access_line_share"] else f"**missed** ({share:.1%})"))
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
    return out


def peers_section(results: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """ivs-proxy beside the Go peer(s), same harness, same core, back to back."""
    peers = results.get("peers") or {}
    if not peers:
        return ["## Side by side with the Go peer", "",
                ("Not measured in this run: `make bench GO_PEER=/path/to/aws-sigv4-proxy` (and `GO_PEER_FIXED=` for "
                 "a build with its idle pool raised) runs awslabs/aws-sigv4-proxy on the proxy's core beside "
                 "ivs-proxy at every point; `benchmarks/go_peer.py build` makes the binaries from its source. "
                 "The proxy/direct column above is the ratio to nginx itself."), ""]
    out = ["## Side by side with the Go peer", "",
           ("Each peer ran pinned to the proxy's core, right after ivs-proxy at every point of every repeat, against "
            "the same nginx with the same wrk load; it verified the test CA (SSL_CERT_FILE) as ivs-proxy does. "
            "*vs peer* = ivs-proxy's req/s / the peer's, per repeat, median; *CPU ratio* = the peer's CPU per request "
            "/ ivs-proxy's (above 1: ivs-proxy is cheaper)."), ""]
    for key, info in peers.items():
        startup = info.get("startup") or []
        ready = med([s["ready_s"] for s in startup])
        idle = med([s["idle_rss_kib"] / MIB for s in startup])
        hwm = info.get("after_load_memory_kib", {}).get("VmHWM", 0) / MIB
        out.append(f"- **{PEER_NAMES.get(key, key)}**: `{info.get('version', info.get('binary'))}`; start to first "
                   f"2xx median {ready:.3f} s ({len(startup)} runs), idle RSS {idle:.1f} MiB, VmHWM after load "
                   f"{hwm:.1f} MiB.")
    out += ["", ("| scenario | c | subject | req/s | added p50 | added p99 | CPU/req | req/s per core | vs peer | "
                 "CPU ratio | peak RSS |"), "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        out.append(f"| {r['scenario']} | {r['c']} | ivs-proxy | {r['proxy_rps']:,.0f} | {_fmt_ms(r['added_p50'])} | "
                   f"{_fmt_ms(r['added_p99'])} | {r['cpu_us']:.0f} us | {r['capacity']:,.0f} | | | "
                   f"{r['peak_rss_mib']:.1f} MiB |")
        for key, g in r["peers"].items():
            out.append(f"| | | {PEER_NAMES.get(key, key)} | {g['rps']:,.0f} | {_fmt_ms(g['added_p50'])} | "
                       f"{_fmt_ms(g['added_p99'])} | {g['cpu_us']:.0f} us | {g['capacity']:,.0f} | "
                       f"{g['rps_ratio']:.2f}x | {g['capacity_ratio']:.2f}x | {g['peak_rss_mib']:.1f} MiB |")
    return [*out, ""]


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
        *peers_section(results, rows),
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
