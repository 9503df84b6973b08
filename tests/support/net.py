"""Loopback helpers for tests: free ports and bounded waits (never an unbounded loop)."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout: float = 20.0, expect_status: int | None = 200) -> None:
    """Poll url until it answers (with expect_status if given); fail after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if expect_status is None or response.status == expect_status:
                    return
        except urllib.error.HTTPError as exc:
            if expect_status is None or exc.code == expect_status:
                return
            last_error = exc
        except OSError as exc:
            last_error = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last_error!r}")
