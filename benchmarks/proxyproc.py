"""Runs `ivs-proxy serve` the way a user does: its console script, production defaults
(JSON access log on stderr at level info), static session credentials with an expiry from
the environment, the local upstream as AWS_ENDPOINT_URL, pinned to one core."""

from __future__ import annotations

import compileall
import datetime
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from procs import free_port, memory_kib, pinned, stop_process, wait_for_status

#: Shaped like real STS session credentials (a session token is several hundred bytes and
#: is sent, and signed, on every request).
ACCESS_KEY = "ASIABENCHMARK0000000"
SECRET_KEY = "benchmark/secret/key/that/is/not/real/000"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjE" + "BenchmarkSessionTokenNotReal0123456789abcdefghijklmnopqrstuvwxyz" * 13


def compile_bytecode() -> None:
    """Byte-compile the proxy and the packages it imports, as `pip install` does (and the
    Docker image's build): with PYTHONDONTWRITEBYTECODE set (the image sets it; so may the
    machine) nothing is written at run time, and a tree without `.pyc` files is compiled
    from source at every start: ~0.6 s more start to ready here, and ~2 MiB more RSS.
    Fast once done (it compares timestamps). A variant's launcher that runs another
    checkout should compile that one too."""
    here = Path(__file__).resolve().parent
    paths = sysconfig.get_paths()
    for tree in (str(here.parent / "proxy"), *sorted({paths["purelib"], paths["platlib"]})):
        compileall.compile_dir(tree, quiet=2)


def proxy_env(upstream_url: str, ca_bundle: Path) -> dict[str, str]:
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_CREDENTIAL_EXPIRATION": expires.isoformat(timespec="seconds"),
        "AWS_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": upstream_url,
        "AWS_CA_BUNDLE": str(ca_bundle),
        # Hermetic: no profile files or instance metadata from the machine running this.
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


class ProxyProcess:
    def __init__(self, env: dict[str, str], cpu: int, log_path: Path, extra_args: tuple[str, ...] = (),
                 launcher: tuple[str, ...] | None = None) -> None:
        self.env = env
        self.cpu = cpu
        self.log_path = log_path
        self.extra_args = extra_args
        # Default: the installed console script, exactly as users run it.
        self.launcher = launcher or (str(Path(sys.executable).with_name("ivs-proxy")),)
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.listening_s = 0.0
        self.ready_s = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        command = [*pinned(self.cpu), *self.launcher, "serve",
                   "--listen", f"127.0.0.1:{self.port}", "--admin-listen", f"127.0.0.1:{self.admin_port}",
                   *self.extra_args]
        # stderr (the JSON access log) goes to a file, as a container runtime would take it.
        self.spawned_at = time.monotonic()
        with open(self.log_path, "ab") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=log)
        try:
            listening = wait_for_status(self.admin_port, "/healthz", 200, timeout, self.process, interval=0.002)
            ready = wait_for_status(self.admin_port, "/readyz", 200, timeout, self.process, interval=0.002)
        except Exception:
            self.stop()
            sys.stderr.write(self.log_path.read_text(errors="replace")[-3000:])
            raise
        self.listening_s = listening - self.spawned_at
        self.ready_s = ready - self.spawned_at

    def memory_kib(self) -> dict[str, int]:
        return memory_kib(self.pid)

    def truncate_log(self) -> None:
        # The proxy appends (O_APPEND), so truncating keeps the file small between points.
        os.truncate(self.log_path, 0)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
