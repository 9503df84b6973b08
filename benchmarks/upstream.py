"""The local TLS upstream: a throw-away CA and server certificate, then nginx (when
installed) or the bundled asyncio fallback, pinned to the upstream core."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import payloads
from procs import free_port, pinned, wait_for_port

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Certificates:
    ca_bundle: Path  # what the proxy trusts (AWS_CA_BUNDLE)
    server_pem: Path  # key + certificate chain, for the upstream


def make_certificates(directory: Path) -> Certificates:
    import trustme  # in the dev extras

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    ca_bundle = directory / "ca.pem"
    server_pem = directory / "server.pem"
    ca.cert_pem.write_to_path(str(ca_bundle))
    server.private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    return Certificates(ca_bundle, server_pem)


class Upstream:
    kind = "?"
    version = "?"

    def __init__(self, directory: Path, certs: Certificates, cpu: int) -> None:
        self.dir = directory
        self.certs = certs
        self.cpu = cpu
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.docroot = directory / "docroot"
        payloads.write_docroot(self.docroot)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class NginxUpstream(Upstream):
    kind = "nginx"

    @staticmethod
    def available() -> bool:
        return shutil.which("nginx") is not None

    def start(self) -> None:
        nginx = shutil.which("nginx")
        assert nginx is not None
        version = subprocess.run([nginx, "-v"], check=False, capture_output=True, text=True)
        self.version = (version.stderr or version.stdout).strip().split("/")[-1]
        user_line = ""
        if os.geteuid() == 0:
            # A root master would run its worker as `nobody`, which cannot read our temp dir.
            user_line = f"user {pwd.getpwuid(0).pw_name};"
        conf = (HERE / "nginx.conf.template").read_text()
        for key, value in {
            "USER_LINE": user_line,
            "DIR": str(self.dir),
            "PORT": str(self.port),
            "CERT": str(self.certs.server_pem),
            "KEY": str(self.certs.server_pem),
            "REQUEST_ID": payloads.REQUEST_ID,
            "DOCROOT": str(self.docroot),
            "CREATE_CHANNEL_JSON": payloads.create_channel_response().decode(),
        }.items():
            conf = conf.replace(f"@@{key}@@", value)
        conf_path = self.dir / "nginx.conf"
        conf_path.write_text(conf)
        command = [*pinned(self.cpu), nginx, "-p", str(self.dir), "-c", str(conf_path),
                   "-e", str(self.dir / "nginx-error.log"), "-g", "daemon off;"]
        with open(self.dir / "nginx-stderr.log", "wb") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            wait_for_port(self.port, timeout=10, process=self.process)
        except Exception:
            sys.stderr.write((self.dir / "nginx-stderr.log").read_text(errors="replace"))
            raise


class FallbackUpstream(Upstream):
    kind = "python-fallback"

    def start(self) -> None:
        self.version = f"asyncio, Python {sys.version.split()[0]}"
        command = [*pinned(self.cpu), sys.executable, str(HERE / "fallback_upstream.py"),
                   "--port", str(self.port), "--cert", str(self.certs.server_pem), "--key", str(self.certs.server_pem),
                   "--docroot", str(self.docroot)]
        with open(self.dir / "fallback-stderr.log", "wb") as stderr:  # the child keeps its own copy
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        wait_for_port(self.port, timeout=20, process=self.process)
        time.sleep(0.1)


def start_upstream(directory: Path, certs: Certificates, cpu: int, force_fallback: bool = False) -> Upstream:
    directory.mkdir(parents=True, exist_ok=True)
    cls: type[Upstream] = NginxUpstream if (NginxUpstream.available() and not force_fallback) else FallbackUpstream
    upstream = cls(directory, certs, cpu)
    upstream.start()
    return upstream
