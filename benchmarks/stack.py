"""Starts the benchmark's TLS upstream and one pinned `ivs-proxy serve`, prints their
URLs, and waits (Ctrl-C or --seconds) — for ad-hoc wrk / py-spy sessions:

    .venv/bin/python benchmarks/stack.py --seconds 600 &
    taskset -c 1 wrk -t1 -c16 -d10s -s benchmarks/wrk/post.lua http://127.0.0.1:PORT/PutMetadata
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from proxyproc import ProxyProcess, proxy_env
from upstream import make_certificates, start_upstream


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--proxy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--launcher", help="python file to run instead of the ivs-proxy script (variants/)")
    parser.add_argument("--fallback-upstream", action="store_true")
    parser.add_argument("serve_args", nargs="*", help="extra `ivs-proxy serve` arguments (after --)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ivs-proxy-stack-"))
    certs = make_certificates(tmp)
    upstream = start_upstream(tmp / "upstream", certs, args.load_cpu, args.fallback_upstream)
    launcher = (sys.executable, args.launcher) if args.launcher else None
    proxy = ProxyProcess(proxy_env(upstream.url, certs.ca_bundle), args.proxy_cpu, tmp / "proxy.log",
                         tuple(args.serve_args), launcher)
    proxy.start()
    print(json.dumps({"upstream": upstream.url, "proxy": proxy.url, "proxy_pid": proxy.pid,
                      "admin": f"http://127.0.0.1:{proxy.admin_port}", "body_dir": str(upstream.docroot),
                      "log": str(proxy.log_path), "ready_s": round(proxy.ready_s, 3)}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        proxy.stop()
        upstream.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
