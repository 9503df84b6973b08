"""The only place that configures structlog, and the access log's own writer.

JSON lines by default (one object per line, for log shippers); `console` for people.
Nothing here logs bodies or headers: callers pass only the fields they mean to publish.

The access line is written once per request, so in JSON format it bypasses structlog's
processor chain (about 20 µs a line) and is built by `AccessLog`: the same fields, the
same timestamp format, the same stream, one `json.dumps`. Inside an event loop it is not
written where it is built: lines wait in a list for at most FLUSH_DELAY_SECONDS (or until
MAX_PENDING_LINES wait), then one write (and flush) takes all of them; a write and its
flush cost as much as building a line, and at one request at a time a flush per loop turn
was a flush per line. Lines still waiting are written when the process exits (atexit: a
SIGTERM drain ends that way), before it forks, and when logging is configured again.
Every other line, and every line in console format, goes through structlog; so an access
line can appear in the stream after lines logged up to FLUSH_DELAY_SECONDS later.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import json.encoder
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Configure structlog for the process; `stream` defaults to stderr (tests pass their own)."""
    stream = stream or sys.stderr
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    ACCESS_LOG.flush()  # lines still waiting belong to the previous stream
    ACCESS_LOG.configure(stream, enabled=LEVELS[level] <= logging.INFO, fast=fmt != "console")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        # One write per line (PrintLogger writes the message and its newline apart): lines of
        # processes sharing a stream (--workers) never run into each other.
        logger_factory=structlog.WriteLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _route_standard_logging(renderer, stream, LEVELS[level])
    # botocore logs whole STS responses (secret keys included) at DEBUG through the
    # standard logging module; whatever the proxy's level, those loggers stay quiet.
    for noisy in ("botocore", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _StandardLoggingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so that configuring again replaces it."""


def _route_standard_logging(renderer: structlog.typing.Processor, stream: TextIO, level: int) -> None:
    """aiohttp's and asyncio's loggers (and any other library's) write through the same
    renderer: in JSON format every line the process writes is one JSON object, a
    traceback included (as its `exception` field)."""
    handler = _StandardLoggingHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    ))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StandardLoggingHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(level, logging.INFO))


class AccessLog:
    """Writes the per-request access line (event "request", level info)."""

    def __init__(self) -> None:
        self._stream: TextIO | None = None  # until configured: stderr as it is then
        self.enabled = True
        self._fast = True
        self._logger = structlog.get_logger("ivs_proxy.access")
        self._second = -1
        self._second_text = ""
        self._process_fields: dict[str, Any] = {}
        self._process_text = ""  # the process fields as JSON members, encoded once
        self._pending: list[str] = []
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # the loop a flush is due on

    def bind_process(self, **fields: Any) -> None:
        """Fields every access line of this process carries (e.g. a worker's index)."""
        self._process_fields.update(fields)
        self._encode_process_fields()

    def unbind_process(self, *names: str) -> None:
        for name in names:
            self._process_fields.pop(name, None)
        self._encode_process_fields()

    def _encode_process_fields(self) -> None:
        members = _encode_line(self._process_fields)[1:-1]
        self._process_text = ", " + members if members else ""

    def configure(self, stream: TextIO, *, enabled: bool, fast: bool) -> None:
        self._stream = stream
        self.enabled = enabled
        self._fast = fast

    def write(self, request_id: str, fields: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self._fast:
            self._logger.info("request", **self._process_fields, **fields)
            return
        # What json.dumps({"event": ..., "request_id": ..., "level": ..., "timestamp": ...,
        # **process fields, **fields}) writes, with only `fields` left to the encoder: the
        # rest is the same on every line or needs no more than quoting.
        members = _encode_line(fields)[1:]
        text = (f'{{"event": "request", "request_id": {_quote(request_id)}, "level": "info", '
                f'"timestamp": "{self._timestamp()}"{self._process_text}'
                + (", " + members if len(members) > 1 else "}"))
        pending = self._pending
        pending.append(text)
        if len(pending) >= MAX_PENDING_LINES:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a command, a test): nothing to batch with
            self.flush()
            return
        # One timer at a time, on the running loop: a timer left on a loop that stopped
        # (a test's) never fires, and must not keep the next loop's lines waiting.
        if self._timer_loop is not loop:
            self._timer_loop = loop
            loop.call_later(FLUSH_DELAY_SECONDS, self._flush_due)

    def _flush_due(self) -> None:
        self._timer_loop = None
        self.flush()

    def flush(self) -> None:
        """Write the waiting lines: one write, one flush (each line whole, ending in a newline)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        stream = self._stream or sys.stderr
        stream.write("\n".join(pending) + "\n")
        stream.flush()

    def _timestamp(self) -> str:
        # structlog's TimeStamper(fmt="iso", utc=True) format; the date part changes once a second.
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z"


def _line_encoder() -> Callable[[dict[str, Any]], str]:
    """json.dumps(line) for the access line, with its C encoder built once: json.dumps builds
    one per call, which is as much work as encoding the line. The line is a flat dict the
    proxy builds, so the circular-reference check is off."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.dumps
    encoder = make(None, None, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda line: "".join(encoder(line, 0))


def _orjson_encoder(standard: Callable[[dict[str, Any]], str]) -> Callable[[dict[str, Any]], str]:
    """orjson's dumps when it is installed (ten times faster than the standard encoder, about
    a third of an access line's cost). What it would write differently is left to the
    standard encoder: non-ASCII text (orjson writes UTF-8; the standard encoder's \\u escapes
    keep a line ASCII whatever the stream's encoding) and what orjson refuses (an int past
    64 bits, a key that is no str). Its other differences: text, not value (no spaces
    between members, `1e-5` for `1e-05`), and a NaN or infinite float becomes null where
    the standard encoder writes `NaN`, which is no JSON (no field the proxy logs is one).
    Optional, like uvloop: used when installed."""
    try:
        import orjson
    except ImportError:
        return standard
    dumps = orjson.dumps

    def encode(line: dict[str, Any]) -> str:
        try:
            text: str = dumps(line).decode()
        except TypeError:  # orjson.JSONEncodeError
            return standard(line)
        return text if text.isascii() else standard(line)

    return encode


_standard_encode_line = _line_encoder()
_encode_line = _orjson_encoder(_standard_encode_line)
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]

#: The longest an access line waits before it is written (docs/operating.md says so).
FLUSH_DELAY_SECONDS = 0.05
#: More lines than this are written at once, whatever the delay: the line list (and the
#: one string joined from it) stays small.
MAX_PENDING_LINES = 256

ACCESS_LOG = AccessLog()


def _flush_at_exit() -> None:
    # A stream closed before the process ends (a test's capture of stderr) takes no more
    # lines: nowhere left to write them, and no reason to print a traceback on the way out.
    with contextlib.suppress(ValueError):
        ACCESS_LOG.flush()


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):  # a child must not write its parent's waiting lines again
    os.register_at_fork(before=ACCESS_LOG.flush)
