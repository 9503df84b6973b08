"""The peer users compare us with: awslabs/aws-sigv4-proxy, run beside ivs-proxy.

This repository holds none of its code. `make bench GO_PEER=/path/to/aws-sigv4-proxy`
measures a binary the user built; `build` makes one from a checkout of its repository
(which vendors its dependencies) with the local Go toolchain, in a folder outside this
repository:

    .venv/bin/python benchmarks/go_peer.py build ~/src/aws-sigv4-proxy /tmp/go-peer
    .venv/bin/python benchmarks/go_peer.py build ~/src/aws-sigv4-proxy /tmp/go-peer-fixed --raise-idle-pool
    make bench GO_PEER=/tmp/go-peer/aws-sigv4-proxy GO_PEER_FIXED=/tmp/go-peer-fixed/aws-sigv4-proxy

`--raise-idle-pool` adds one line after its IdleConnTimeout setting,
`MaxIdleConnsPerHost = 100`: the stock build keeps Go's default of 2 idle upstream
connections and opens new TLS connections under concurrency. When the local Go is older
than the `go` line of its go.mod (Debian 12 ships 1.19), that line is lowered to the local
version; the build says so, and fails if the code really needs the newer language.

The peer signs for the host it forwards to and reads credentials from the same
environment as ivs-proxy; it has no health endpoint, so "ready" is its first 2xx answer
to the benchmark's PutMetadata.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from procs import free_port, pinned, stop_process

IDLE_TIMEOUT_LINE = "http.DefaultTransport.(*http.Transport).IdleConnTimeout = *idleConnTimeout"
RAISED_POOL_LINE = "\thttp.DefaultTransport.(*http.Transport).MaxIdleConnsPerHost = 100 // benchmark: idle pool raised"


def build(source: Path, out_dir: Path, raise_idle_pool: bool) -> Path:
    """Copy `source` (a checkout) to `out_dir`/src, adapt as described above, `go build` it."""
    if out_dir.resolve().is_relative_to(Path(__file__).resolve().parent.parent):
        raise SystemExit("build the peer outside this repository")
    go = shutil.which("go")
    if go is None:
        raise SystemExit("no Go toolchain (Debian: apt-get install golang-go)")
    tree = out_dir / "src"
    if tree.exists():
        shutil.rmtree(tree)
    shutil.copytree(source, tree, ignore=shutil.ignore_patterns(".git"))
    local = re.search(r"go(\d+\.\d+)", subprocess.run([go, "version"], capture_output=True, text=True,
                                                      check=True).stdout)
    mod = tree / "go.mod"
    text = mod.read_text()
    wanted = re.search(r"^go (\S+)$", text, re.MULTILINE)
    if local and wanted and _version(wanted.group(1)) > _version(local.group(1)):
        print(f"go.mod asks for go {wanted.group(1)}; building with the local go {local.group(1)}", file=sys.stderr)
        text = re.sub(r"^go \S+$", f"go {local.group(1)}", text, flags=re.MULTILINE)
        text = re.sub(r"^toolchain \S+\n", "", text, flags=re.MULTILINE)
        mod.write_text(text)
    if raise_idle_pool:
        main = tree / "cmd" / "aws-sigv4-proxy" / "main.go"
        code = main.read_text()
        if IDLE_TIMEOUT_LINE not in code:
            raise SystemExit(f"{main}: the IdleConnTimeout line to patch after was not found")
        main.write_text(code.replace(IDLE_TIMEOUT_LINE, IDLE_TIMEOUT_LINE + "\n" + RAISED_POOL_LINE, 1))
    binary = out_dir / "aws-sigv4-proxy"
    env = os.environ | {"GOFLAGS": "-mod=vendor", "GOCACHE": str(out_dir / "gocache"), "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(binary), "./cmd/aws-sigv4-proxy"], cwd=tree, env=env, check=True)
    return binary


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2])


def version_of(binary: Path, source_hint: str = "") -> str:
    """What the binary says of itself (`go version -m`: module, Go version), best effort."""
    go = shutil.which("go")
    if go is None:
        return binary.name
    out = subprocess.run([go, "version", "-m", str(binary)], capture_output=True, text=True, check=False).stdout
    toolchain = out.split("\n", 1)[0].split(": ", 1)[-1].strip()
    return f"{binary} (built with {toolchain}){source_hint}"


class PeerProcess:
    """The peer as a benchmark subject: the same interface `run.py` uses for ivs-proxy."""

    def __init__(self, binary: Path, env: dict[str, str], cpu: str, log_path: Path, upstream_url: str,
                 ca_bundle: Path, probe_body: bytes) -> None:
        self.binary = binary
        self.cpu = cpu
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        host = upstream_url.split("://", 1)[1]
        self.command = [str(binary), "--port", f"127.0.0.1:{self.port}", "--name", "ivs", "--region", "us-west-2",
                        "--host", host, "--upstream-url-scheme", "https"]
        # Go reads its trust store from SSL_CERT_FILE: verification against the test CA,
        # as ivs-proxy does with AWS_CA_BUNDLE.
        self.env = env | {"SSL_CERT_FILE": str(ca_bundle)}
        self.probe_body = probe_body
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        with open(self.log_path, "ab") as log:
            spawned = time.monotonic()
            self.process = subprocess.Popen([*pinned(self.cpu), *self.command], env=self.env, stdout=log,  # type: ignore[arg-type]
                                            stderr=log)
        deadline = spawned + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Go peer exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if 200 <= self._probe() < 300:
                self.ready_s = time.monotonic() - spawned
                return
            time.sleep(0.002)
        self.stop()
        raise TimeoutError(f"the Go peer did not answer 2xx within {timeout} s")

    def _probe(self) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("POST", "/PutMetadata", body=self.probe_body,
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            return response.status
        except OSError:
            return 0
        finally:
            connection.close()

    def truncate_log(self) -> None:
        os.truncate(self.log_path, 0)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="build the peer from a checkout of awslabs/aws-sigv4-proxy")
    make.add_argument("source", type=Path)
    make.add_argument("out_dir", type=Path)
    make.add_argument("--raise-idle-pool", action="store_true", help="MaxIdleConnsPerHost = 100 (the pool-fixed peer)")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    print(build(args.source, args.out_dir, args.raise_idle_pool))
    return 0


if __name__ == "__main__":
    sys.exit(main())
