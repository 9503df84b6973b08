"""A client that leaves before its body arrived: one info line, no traceback, and with
`--log-format json` every line the process writes (aiohttp's loggers included) is JSON."""

from __future__ import annotations

import datetime
import json
import socket
import time
import urllib.request

from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.net import free_port
from tests.support.proxy_process import ProxyProcess


def static_env() -> dict[str, str]:
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    return {
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key,
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
        "AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "",
        "AWS_CREDENTIAL_EXPIRATION": expires.isoformat(timespec="seconds"),
        "AWS_REGION": "us-west-2",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",  # never reached
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def test_a_client_leaving_mid_body_is_one_json_info_line() -> None:
    process = ProxyProcess(static_env(), args=("--log-format", "json"))
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
