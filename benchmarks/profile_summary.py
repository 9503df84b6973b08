"""Summarises py-spy collapsed stacks (`--format raw`): where the proxy's CPU goes.

    python benchmarks/profile_summary.py benchmarks/profile/putmetadata-c16.collapsed.txt

Three views: components (each sample charged to the innermost frame that belongs to a
known component), self time by function, and inclusive time of the request path's frames.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

#: (component, file-path regex), tried innermost frame first; first match wins.
COMPONENTS = [
    ("access log (structlog, the line's JSON, write)", r"structlog/|proxy/observe/logs\.py"),
    ("metrics (prometheus_client) + request id (uuid4)", r"prometheus_client/|(^|/)uuid\.py"),
    ("SigV4 signing (proxy/aws/signing.py)", r"proxy/aws/signing\.py"),
    ("input validation + JSON parse (validate/arns/parse_json_body)", r"proxy/model/(validate|arns)\.py|json/(decoder|__init__)\.py"),
    ("header policy (proxy/model/headers.py)", r"proxy/model/headers\.py"),
    ("routing (proxy/model/catalog.py)", r"proxy/model/catalog\.py|botocore/utils\.py"),
    ("endpoint/region choice (proxy/aws/regions, endpoints)", r"proxy/aws/(regions|endpoints)\.py"),
    ("credentials + clock (proxy/aws/credentials.py)", r"proxy/aws/credentials\.py"),
    ("proxy glue (server/pipeline/upstream/errors)", r"proxy/(serve/server|pipeline|aws/upstream|errors)\.py"),
    ("TLS to upstream (ssl, asyncio sslproto)", r"(^|/)ssl\.py|asyncio/sslproto\.py"),
    ("upstream client (proxy/aws/http1.py, httptools)", r"proxy/aws/http1\.py|httptools/"),
    ("aiohttp client (request build, connector, response parse)", r"aiohttp/(client|connector|client_reqrep|client_proto|tracing|cookiejar)"),
    # The server writes its answers with http_writer and reads bodies through streams.
    ("aiohttp server (parse request, build/send response)", r"aiohttp/(web_|http_parser|http_writer|streams|helpers|base_protocol|payload|abc)"),
    ("yarl / multidict", r"yarl/|multidict/"),
    ("asyncio event loop, tasks and socket I/O", r"asyncio/"),
]


def parse(text: str) -> list[tuple[list[tuple[str, str]], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        frames_text, _, count = line.rpartition(" ")
        frames = []
        for raw in frames_text.split(";"):
            match = FRAME.match(raw)
            frames.append((match["func"], match["file"]) if match else (raw, ""))
        stacks.append((frames, int(count)))
    return stacks


def component_of(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        for name, pattern in COMPONENTS:
            if re.search(pattern, file):
                return name
    return "other (interpreter, GC, start-up frames)"


def is_idle(frames: list[tuple[str, str]]) -> bool:
    """py-spy (blocking mode) sometimes reports a thread-pool worker waiting for work as
    active; /proc shows those threads use no CPU, so their samples are dropped."""
    return bool(frames) and frames[-1][1].endswith("concurrent/futures/thread.py") and frames[-1][0] == "_worker"


def summarise(text: str, top: int = 25) -> str:
    all_stacks = parse(text)
    stacks = [(f, n) for f, n in all_stacks if not is_idle(f)]
    dropped = sum(n for f, n in all_stacks if is_idle(f))
    total = sum(count for _, count in stacks) or 1
    components: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in stacks:
        components[component_of(frames)] += count
        if frames:
            func, file = frames[-1]
            self_time[f"{func} ({file})"] += count
        seen = set()
        for func, file in frames:
            key = f"{func} ({file})"
            if key not in seen:
                seen.add(key)
                inclusive[key] += count

    def pct(n: int) -> str:
        return f"{n / total * 100:5.1f}%"

    out = [f"# Profile summary ({total} samples of the busy event-loop thread; {dropped} idle thread-pool samples dropped)", "", "## By component (innermost matching frame)", "",
           "| component | share |", "|---|--:|"]
    out += [f"| {name} | {pct(n)} |" for name, n in components.most_common()]
    out += ["", f"## Self time, top {top} functions", "", "| function | self |", "|---|--:|"]
    out += [f"| `{name}` | {pct(n)} |" for name, n in self_time.most_common(top)]
    interesting = re.compile(r"proxy/|structlog/|aiohttp/(client|connector|web_protocol|web_response)|sslproto|ssl\.py")
    out += ["", "## Inclusive time of request-path frames", "", "| frame | inclusive |", "|---|--:|"]
    out += [f"| `{name}` | {pct(n)} |" for name, n in inclusive.most_common() if interesting.search(name)][: top + 15]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(summarise(Path(sys.argv[1]).read_text()))
