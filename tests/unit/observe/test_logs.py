"""The access log's own writer produces what structlog would, at every configured level."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from proxy.observe import logs
from proxy.observe.logs import ACCESS_LOG, configure_logging

FIELDS = {"method": "POST", "caller": None, "service": "ivs", "operation": "PutMetadata", "status": 204,
          "duration_ms": 1.25, "bytes_in": 42, "bytes_out": 0}


def structlog_line(stream: io.StringIO) -> dict[str, object]:
    with structlog.contextvars.bound_contextvars(request_id="req-1"):
        structlog.get_logger("ivs_proxy.access").info("request", **FIELDS)
    return json.loads(stream.getvalue().splitlines()[-1])  # type: ignore[no-any-return]


def test_the_fast_json_line_carries_exactly_what_structlog_writes() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    expected = structlog_line(stream)
    ACCESS_LOG.write("req-1", dict(FIELDS))
    written = json.loads(stream.getvalue().splitlines()[-1])
    assert set(written) == set(expected)
    assert {k: v for k, v in written.items() if k != "timestamp"} == {k: v for k, v in expected.items() if k != "timestamp"}
    # The same ISO-8601 UTC form structlog's TimeStamper(fmt="iso", utc=True) writes.
    iso = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
    assert re.fullmatch(iso, str(expected["timestamp"])) and re.fullmatch(iso, written["timestamp"])


def test_console_format_goes_through_structlog() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    ACCESS_LOG.write("req-2", dict(FIELDS))
    text = stream.getvalue()
    assert "request" in text and "operation=PutMetadata" in text
    assert not text.lstrip().startswith("{")


def test_no_access_line_above_info() -> None:
    stream = io.StringIO()
    configure_logging("warning", "json", stream)
    ACCESS_LOG.write("req-3", dict(FIELDS))
    assert stream.getvalue() == ""
    configure_logging("info", "json", stream)
    ACCESS_LOG.write("req-3", dict(FIELDS))
    assert json.loads(stream.getvalue())["request_id"] == "req-3"


def test_process_fields_are_on_every_line() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        ACCESS_LOG.bind_process(worker=3)
        ACCESS_LOG.write("req-4", dict(FIELDS))
        assert json.loads(stream.getvalue())["worker"] == 3
    finally:
        ACCESS_LOG.unbind_process("worker")


def test_standard_library_loggers_write_one_json_object_per_line_tracebacks_included() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        raise ConnectionResetError("Connection lost")
    except ConnectionResetError:
        logging.getLogger("aiohttp.server").exception("Error handling request")
    logging.getLogger("asyncio").warning("Task was destroyed but it is pending!")
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert records[0]["event"] == "Error handling request" and records[0]["logger"] == "aiohttp.server"
    assert records[0]["level"] == "error" and "ConnectionResetError: Connection lost" in records[0]["exception"]
    assert records[1]["level"] == "warning" and records[1]["logger"] == "asyncio"
    assert len(records) == 2


RESERVED = {"event", "request_id", "level", "timestamp"}
VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**63 - 2, max_value=2**80),
                   st.floats(allow_nan=False), st.text())
HOSTILE_FIELDS = st.dictionaries(st.text().filter(lambda k: k not in RESERVED), VALUES, max_size=12)


@given(request_id=st.text(), fields=HOSTILE_FIELDS)
def test_any_fields_make_one_ascii_json_line_with_exactly_them(request_id: str, fields: dict[str, object]) -> None:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        ACCESS_LOG.write(request_id, dict(fields))
    finally:
        configure_logging()
    text = stream.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1 and text.isascii()
    written = json.loads(text)
    assert written.pop("timestamp")
    assert written == {"event": "request", "request_id": request_id, "level": "info", **fields}


@given(fields=HOSTILE_FIELDS)
def test_orjson_when_installed_writes_the_same_values_as_the_standard_encoder(fields: dict[str, object]) -> None:
    encode = logs._orjson_encoder(logs._standard_encode_line)
    if encode is logs._standard_encode_line:
        pytest.skip("orjson is not installed")
    text = encode(fields)
    assert text.isascii() and json.loads(text) == json.loads(logs._standard_encode_line(fields))
