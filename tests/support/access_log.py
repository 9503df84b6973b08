"""Reading the access log in-process: the lines as the proxy writes them (JSON), parsed."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

from proxy.observe.logs import configure_logging


@contextlib.contextmanager
def captured_access_lines() -> Iterator[list[dict[str, Any]]]:
    """The access lines written inside the block; the list is filled when the block ends."""
    stream = io.StringIO()
    lines: list[dict[str, Any]] = []
    configure_logging("info", "json", stream)
    try:
        yield lines
    finally:
        configure_logging()
        parsed = (json.loads(line) for line in stream.getvalue().splitlines())
        lines.extend(line for line in parsed if line.get("event") == "request")
