"""Runs `ivs-proxy serve` as a real process, the way users run it."""

from __future__ import annotations

import datetime
import fcntl
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.net import free_port, wait_for_http


class ProxyProcess:
    def __init__(
        self,
        env: Mapping[str, str],
        args: tuple[str, ...] = (),
        config: Path | None = None,
        show_output: bool = False,
        output_path: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self._env.update(env)
        self._args = args
        self._config = config
        self._show_output = show_output
        self._output_path = output_path
        self.process: subprocess.Popen[str] | None = None

    def start(self, wait_ready: bool = True) -> None:
        command = [
            str(Path(sys.executable).with_name("ivs-proxy")),
            "serve",
            "--listen", f"127.0.0.1:{self.port}",
            "--admin-listen", f"127.0.0.1:{self.admin_port}",
            # No drain delay unless a test asks for one (args come later and win): without
            # load balancers to wait for, the delay would only slow every stop() down.
            "--drain-delay", "0",
            *self._args,
        ]
        if self._config is not None:
            command += ["--config", str(self._config)]
        # Files, not pipes: a chatty process must never block on a full pipe nobody reads.
        # A named one (output_path) outlives the process, for someone to read.
        if self._output_path is not None:
            self._output = self._output_path.open("w+")
        else:
            self._output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (lives until stop())
        # Append-only: the process (and each of its workers) shares this file's offset with
        # output(), whose seek(0) would otherwise make the next line overwrite the first ones.
        fd = self._output.fileno()
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)
        sink = None if self._show_output else self._output
        self.process = subprocess.Popen(command, env=self._env, stdout=sink, stderr=sink, text=True)
        try:
            wait_for_http(f"{self.admin_url}/healthz")
            if wait_ready:
                wait_for_http(f"{self.admin_url}/readyz")
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> str:
        """Stop the process (SIGTERM, then SIGKILL after 15 s); return everything it printed."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output()

    def output(self) -> str:
        self._output.seek(0)
        return self._output.read()


def static_credentials_env(upstream_url: str) -> dict[str, str]:
    """A process environment with the test's static session credentials (valid for an hour)
    and nothing of the machine's AWS configuration, sending to `upstream_url`."""
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return {
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key,
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
        "AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "",
        "AWS_CREDENTIAL_EXPIRATION": expires.isoformat(timespec="seconds"),
        "AWS_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": upstream_url,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
