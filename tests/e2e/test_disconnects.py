"""A client that leaves before its body arrived: one info line, no traceback, and with
`--log-format json` every line the process writes (aiohttp's loggers included) is JSON."""

from __future__ import annotations

import json
import socket
import time
import urllib.request

from tests.support.net import free_port
from tests.support.proxy_process import ProxyProcess, static_credentials_env


def test_a_client_leaving_mid_body_is_one_json_info_line() -> None:
    process = ProxyProcess(static_credentials_env(f"http://127.0.0.1:{free_port()}"),  # never reached
                           args=("--log-format", "json"))
    process.start()
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
                sock.sendall(b"POST /CreateChannel HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100\r\n\r\n{\"name\": \"sec")
                time.sleep(0.2)
        deadline = time.monotonic() + 20
        while process.output().count("client_disconnected") < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        with urllib.request.urlopen(f"{process.admin_url}/healthz", timeout=10) as health:
            assert health.status == 200
    finally:
        output = process.stop()
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    disconnects = [r for r in records if r.get("refused") == "client_disconnected"]
    assert len(disconnects) == 3
    assert all(r["level"] == "info" and r["status"] == 400 for r in disconnects)
    assert not [r for r in records if r.get("level") == "error" or "exception" in r], records
    assert "sec" not in "".join(json.dumps(r.get("message", "")) for r in records)
