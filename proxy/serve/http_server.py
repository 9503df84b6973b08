"""The proxy's HTTP/1.1 server (data and admin ports): an asyncio protocol on httptools
(llhttp, the parser aiohttp's own C parser is built on), instead of aiohttp's web server.

Why: aiohttp's server (protocol, request and response objects, multidicts, router,
middleware chain) took ~190k instructions of every proxied request, more than the whole
request path may cost; this one takes about a fifth (benchmarks/results.md, "Where the
instructions go"). What it keeps of aiohttp's behaviour, because the tests hold it to it:

- keep-alive (HTTP/1.1 by default, HTTP/1.0 with `Connection: keep-alive`), pipelined
  requests answered in order, `Expect: 100-continue` answered when the body is first read;
- strict framing: llhttp refuses what could be read two ways (Content-Length with
  Transfer-Encoding, duplicate lengths, bare CR/LF, obsolete folding); this module adds
  the rules llhttp leaves to the server: exactly one Host on HTTP/1.1, Transfer-Encoding
  exactly `chunked` and only on HTTP/1.1, HTTP/1.0 or 1.1 only, and the head limits
  (8190-byte request line and fields, 128 fields). A refusal is a 400 in the proxy's
  rest-json shape that names the rule broken, never the request's bytes, and the
  connection closes;
- time limits: a head must arrive whole within `header_timeout` of its first byte
  (slowloris), an idle connection closes after `idle_timeout`; bodies keep the pace that
  proxy/serve/server.py's `read_body` enforces;
- back-pressure both ways: reading pauses while a body waits unread beyond a bound, and
  writing waits while the transport's buffer is full;
- after a refusal whose body was not read, input is read and dropped for up to
  LINGER_SECONDS before the close, so the client sees the answer rather than a reset.

One task per connection runs its requests one after another: no task per request.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import httptools
import structlog
from multidict import MultiDict, MultiDictProxy

from proxy.errors import MalformedRequest

log = structlog.get_logger("ivs_proxy")

#: The head limits (aiohttp's defaults, which the proxy has always applied), named in refusals.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 128
#: A head that has not ended after this many bytes is refused whatever its lines are.
MAX_HEAD_BYTES = MAX_LINE_BYTES + MAX_HEADERS * (MAX_FIELD_BYTES + 4)
#: After refusing a request whose body was not read: how long its rest is read and dropped.
LINGER_SECONDS = 1.0
#: Reading pauses while this much of a body waits unread (a slow handler, a large upload).
BODY_HIGH_WATER = 256 * 1024
#: Pipelined requests parsed ahead of the one being answered; reading pauses beyond this.
MAX_QUEUED_REQUESTS = 8

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})

Refused = Callable[[str], None]

#: (what llhttp says, lower-cased; what the proxy says), first match wins. The parser's
#: text is matched, never echoed.
_RULES = (
    ("duplicate content-length", "Content-Length is given more than once; send it once"),
    ("invalid character in content-length", "Content-Length must be a plain decimal number of bytes"),
    ("transfer-encoding can't be present with content-length",
     "the request has both Content-Length and Transfer-Encoding; send one of them"),
    ("content-length can't be present with transfer-encoding",
     "the request has both Content-Length and Transfer-Encoding; send one of them"),
    ("transfer-encoding", "Transfer-Encoding must be exactly `chunked` (HTTP/1.1), or absent"),
    ("chunk size", "a chunk size of the chunked body is malformed or too large"),
)
GENERIC_MALFORMED = "the request is not well-formed HTTP/1.1 (framing, line ends or header syntax)"
LINE_TOO_LONG = f"the request line (method, target and version) is longer than {MAX_LINE_BYTES} bytes"
FIELD_TOO_LONG = f"a header field is longer than {MAX_FIELD_BYTES} bytes"
TOO_MANY_HEADERS = f"the request has more than {MAX_HEADERS} header fields"
MISSING_HOST = "the Host header is missing; HTTP/1.1 requires exactly one"
DUPLICATE_HOST = "the Host header is given more than once; HTTP/1.1 requires exactly one"
BAD_TRANSFER_ENCODING = "Transfer-Encoding must be exactly `chunked` (HTTP/1.1), or absent"


def malformed_http_message(parser_message: str) -> str:
    """What to tell a client whose request llhttp refused: the rule, without its bytes."""
    said = parser_message.lower()
    return next((ours for theirs, ours in _RULES if theirs in said), GENERIC_MALFORMED)


class Headers:
    """A request's header fields in arrival order, looked up case-insensitively."""

    __slots__ = ("_by_name", "_items")

    def __init__(self, items: tuple[tuple[str, str], ...]) -> None:
        self._items = items
        self._by_name: dict[str, list[str]] | None = None

    def index(self) -> dict[str, list[str]]:
        """Every field's values by its lower-cased name."""
        if self._by_name is not None:
            return self._by_name
        by_name: dict[str, list[str]] = {}
        for name, value in self._items:
            by_name.setdefault(name.lower(), []).append(value)
        self._by_name = by_name
        return by_name

    def items(self) -> tuple[tuple[str, str], ...]:
        return self._items

    def get(self, name: str, default: str | None = None) -> str | None:
        values = (self._by_name or self.index()).get(name.lower())
        return values[0] if values else default

    def getall(self, name: str, default: Iterable[str] = ()) -> list[str]:
        values = (self._by_name or self.index()).get(name.lower())
        return list(values) if values else list(default)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in (self._by_name or self.index())

    def __len__(self) -> int:
        return len(self._items)


class Body:
    """A request body as it arrives: whole at once when it came with the head (the usual
    case), or in chunks that `readany` hands out."""

    __slots__ = ("_chunks", "_connection", "_continue", "_eof", "_exception", "_size", "_waiter")

    def __init__(self, connection: HttpConnection, *, expect_continue: bool) -> None:
        self._connection = connection
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._exception: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._continue = expect_continue

    def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        if self._size > BODY_HIGH_WATER:
            self._connection.pause_body()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._continue = False
        self._wake()

    def fail(self, exception: BaseException) -> None:
        if not self._eof:
            self._exception = exception
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def is_eof(self) -> bool:
        """Every byte of the body has arrived (it may still be unread)."""
        return self._eof

    def read_nowait(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        self._taken(len(data))
        return data

    async def readany(self) -> bytes:
        """The next part of the body; b"" once it is all read. ConnectionResetError if the
        client closed the connection before the end."""
        while not self._chunks:
            if self._eof:
                return b""
            if self._exception is not None:
                raise self._exception
            if self._continue:
                self._continue = False
                self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        chunk = self._chunks.popleft()
        self._taken(len(chunk))
        return chunk

    def _taken(self, size: int) -> None:
        was_high = self._size > BODY_HIGH_WATER
        self._size -= size
        if was_high and self._size <= BODY_HIGH_WATER:
            self._connection.resume_body()


class HttpRequest:
    """One request on the data port, and what handling it learns (for the access line)."""

    __slots__ = ("_query", "app", "connection", "content", "error", "exchange", "headers", "method", "own_call",
                 "raw_path", "request_id", "started", "version")

    def __init__(self, connection: HttpConnection, method: str, raw_path: str, version: tuple[int, int],
                 headers: Headers, content: Body) -> None:
        self.connection = connection
        self.method = method
        self.raw_path = raw_path  # the request target, still percent-encoded
        self.version = version
        self.headers = headers
        self.content = content
        self.app: Any = None  # proxy.serve.server.DataApp, which answers it
        self.request_id = ""
        self.exchange: Any = None  # proxy.pipeline.Exchange, once the IVS path takes it
        self.own_call: Any = None  # proxy.serve.own_routes.OwnCall, for an own operation
        self.error: Any = None  # the ProxyError it was refused with
        self.started: StreamingAnswer | None = None  # an answer whose head is already out
        self._query: MultiDictProxy[str] | None = None

    @property
    def path(self) -> str:
        return self.raw_path.partition("?")[0]

    @property
    def query_string(self) -> str:
        return self.raw_path.partition("?")[2]

    @property
    def query(self) -> MultiDictProxy[str]:
        if self._query is None:
            self._query = MultiDictProxy(MultiDict(parse_qsl(self.query_string, keep_blank_values=True)))
        return self._query

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    @property
    def body_exists(self) -> bool:
        return self.content_length not in (None, 0) or "Transfer-Encoding" in self.headers

    @property
    def transport(self) -> asyncio.Transport | None:
        return self.connection.transport

    def peer_address(self) -> str | None:
        peer = self.connection.peer
        return peer[0] if peer else None


class Answer:
    """A whole answer: status, header fields and body, written in one go."""

    __slots__ = ("body", "close", "headers", "status")

    prepared = False

    def __init__(self, status: int = 200, body: bytes = b"", headers: Mapping[str, str] | None = None, *,
                 content_type: str | None = None) -> None:
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers) if headers else {}
        if content_type is not None:
            self.headers["Content-Type"] = content_type
        self.close = False

    def force_close(self) -> None:
        self.close = True

    @property
    def bytes_out(self) -> int:
        return len(self.body)


class StreamingAnswer:
    """An answer whose body is written as it comes: with Content-Length when known, else
    chunked (HTTP/1.1) or ended by the close (HTTP/1.0)."""

    __slots__ = ("_chunked", "_connection", "_ended", "bytes_out", "close", "content_length", "headers",
                 "prepared", "status")

    def __init__(self, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.status = status
        self.headers: dict[str, str] = dict(headers) if headers else {}
        self.content_length: int | None = None
        self.close = False
        self.prepared = False
        self.bytes_out = 0
        self._connection: HttpConnection | None = None
        self._chunked = False
        self._ended = False

    def force_close(self) -> None:
        self.close = True
        if self._connection is not None:
            self._connection.close_after_answer = True

    async def prepare(self, request: HttpRequest) -> None:
        connection = request.connection
        self._connection = connection
        if self.close:
            connection.close_after_answer = True
        headers = self.headers
        if self.content_length is not None:
            headers["Content-Length"] = str(self.content_length)
        elif request.version >= (1, 1):
            headers["Transfer-Encoding"] = "chunked"
            self._chunked = True
        else:
            connection.close_after_answer = True
        self.prepared = True
        connection.write(connection.head_bytes(request, self.status, headers))
        await connection.drained()

    async def write(self, data: bytes) -> None:
        connection = self._connection
        assert connection is not None, "prepare() first"
        if connection.closed:
            raise ConnectionResetError("the client closed the connection")
        if not data:
            return
        self.bytes_out += len(data)
        connection.write(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)
        await connection.drained()

    async def write_eof(self) -> None:
        connection = self._connection
        if connection is None or self._ended:
            return
        self._ended = True
        if self._chunked and not connection.closed:
            connection.write(b"0\r\n\r\n")
            await connection.drained()


AnyAnswer = Answer | StreamingAnswer
RequestHandler = Callable[[HttpRequest], Awaitable[AnyAnswer]]
MalformedAnswer = Callable[[str], Answer]


class HttpConnection(asyncio.Protocol):
    """One client connection: parses requests as bytes arrive, answers them in order."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.peer_certificate: Mapping[str, Any] | None = None
        self.closed = False
        self.close_after_answer = False
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[HttpRequest | str] = deque()  # a str: a refusal to answer, then close
        self._waiter: asyncio.Future[None] | None = None
        self._write_ready: asyncio.Future[None] | None = None
        self._writing_paused = False
        self._reading_paused = 0  # reasons reading is paused: a full body buffer, a full queue
        self._broken = False  # a refusal is queued: nothing more is parsed
        self._lingering = False
        self._busy = False  # a request is being answered
        self._task: asyncio.Task[None] | None = None
        # The head being parsed.
        self._url = b""
        self._fields: list[tuple[str, str]] = []
        self._head_bytes = 0
        self._in_head = False
        self._body: Body | None = None
        # Deadlines (loop time; 0: none), enforced by the server's sweep: two timer handles
        # made and cancelled per request cost more than a timestamp each.
        self.head_deadline = 0.0
        self.idle_deadline = 0.0

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport (uvloop's too)
        self.peer = transport.get_extra_info("peername")
        if self._server.ssl:
            self.peer_certificate = transport.get_extra_info("peercert") or None
        self._server.connections.add(self)
        self._task = self._loop.create_task(self._serve())
        self._start_idle()

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._broken:
            return
        self.idle_deadline = 0.0
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(GENERIC_MALFORMED)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ if isinstance(exc, httptools.HttpParserCallbackError) else None
            if isinstance(cause, _HeadRefused):
                self._refuse(cause.message)
            else:
                self._refuse(malformed_http_message(str(exc)))
            return
        if self._in_head and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(LINE_TOO_LONG if not self._fields and self._url else FIELD_TOO_LONG)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self._server.connections.discard(self)
        self._stop_timers()
        if self._body is not None:
            self._body.fail(ConnectionResetError("the client closed the connection"))
        for item in self._queue:
            if isinstance(item, HttpRequest):
                item.content.fail(ConnectionResetError("the client closed the connection"))
        self._wake()
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_head = True
        self._url = b""
        self._fields = []
        self.head_deadline = self._loop.time() + self._server.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_LINE_BYTES:
            raise _HeadRefused(LINE_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) > MAX_FIELD_BYTES or len(value) > MAX_FIELD_BYTES:
            raise _HeadRefused(FIELD_TOO_LONG)
        fields = self._fields
        if len(fields) >= MAX_HEADERS:
            raise _HeadRefused(TOO_MANY_HEADERS)
        # As aiohttp's server decoded them (UTF-8, other bytes kept as surrogates), so that
        # the upstream client writes them out byte for byte; llhttp refused control characters.
        fields.append((name.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self.head_deadline = 0.0
        parser = self._parser
        version_text = parser.get_http_version()
        if version_text == "1.1":
            version = (1, 1)
        elif version_text == "1.0":
            version = (1, 0)
        else:
            raise _HeadRefused(f"HTTP/{version_text} is not supported; use HTTP/1.1")
        headers = Headers(tuple(self._fields))
        by_name = headers.index()
        hosts = by_name.get("host", ())
        if version == (1, 1) and len(hosts) != 1:
            raise _HeadRefused(MISSING_HOST if not hosts else DUPLICATE_HOST)
        codings = by_name.get("transfer-encoding")
        if codings and (len(codings) > 1 or version < (1, 1) or codings[0].strip().lower() != "chunked"):
            raise _HeadRefused(BAD_TRANSFER_ENCODING)
        expect = by_name.get("expect")
        expect_continue = version == (1, 1) and expect is not None and expect[0].strip().lower() == "100-continue"
        body = self._body = Body(self, expect_continue=expect_continue)
        request = HttpRequest(self, parser.get_method().decode("ascii"), self._url.decode("latin-1"), version,
                              headers, body)
        if not parser.should_keep_alive():
            self.close_after_answer = True  # only this request is answered on this connection
        self._queue.append(request)
        if len(self._queue) > MAX_QUEUED_REQUESTS:
            self._pause_reading()
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._body is not None:
            self._body.feed(body)

    def on_message_complete(self) -> None:
        if self._body is not None:
            self._body.feed_eof()
            self._body = None

    # -- serving ---------------------------------------------------------------------------

    async def _serve(self) -> None:
        server = self._server
        handler = server.handler
        queue = self._queue
        try:
            while True:
                while not queue:
                    if self.closed or self._lingering:
                        return
                    self._waiter = self._loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                item = queue.popleft()
                if self._reading_paused and len(queue) <= MAX_QUEUED_REQUESTS // 2:
                    self._resume_reading()
                if isinstance(item, str):
                    self._answer_refusal(item)
                    return
                self._busy = True
                answer = await handler(item)
                self._busy = False
                if self.closed:
                    return
                # A body still arriving unread (a refusal before it was read) leaves the
                # connection's framing to the client: it is closed after this answer.
                close = self.close_after_answer or answer.close or not self._discard_rest(item)
                if not isinstance(answer, StreamingAnswer):
                    self.write(self.answer_bytes(item, answer, close=close))
                    await self.drained()
                if close:
                    self._close_after(item)
                    return
                if not queue:
                    self._start_idle()
        except asyncio.CancelledError:
            self._close()
            raise
        except Exception:
            log.exception("http_connection_failed")
            self._close()

    def _discard_rest(self, request: HttpRequest) -> bool:
        """Drop what the handler left of the body; whether all of it had arrived."""
        request.content.read_nowait()
        return request.content.is_eof()

    def _close_after(self, request: HttpRequest) -> None:
        if request.content.is_eof() or self.closed:
            self._close()
        else:
            self._linger()

    def _answer_refusal(self, message: str) -> None:
        if self.closed:
            return
        answer = self._server.malformed(message)
        self.write(self.answer_bytes(None, answer, close=True))
        self._linger()

    def _refuse(self, message: str) -> None:
        """The input cannot be read further: queue a 400 after what is being answered."""
        if self._broken and self._queue and isinstance(self._queue[-1], str):
            return
        self._broken = True
        self._stop_timers()
        log.info("malformed_request", rule=message)
        if self._body is not None:
            # Within a body (a bad chunk): the handler reading it answers the 400, and
            # counts it as any refusal; the connection closes after it.
            self._body.fail(MalformedRequest(message))
            self._body = None
            return
        self._server.on_refused("malformed_http")
        self._queue.append(message)
        self._wake()

    def _linger(self) -> None:
        """Read and drop input for a while, then close: closing with unread input would
        reset the connection, and the client could lose the answer."""
        self._lingering = True
        self._stop_timers()
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = 0
            self.transport.resume_reading()
        if self.transport is not None and not self.closed:
            self._loop.call_later(LINGER_SECONDS, self._close)

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- timers ----------------------------------------------------------------------------

    def _start_idle(self) -> None:
        if not self.closed:
            self.idle_deadline = self._loop.time() + self._server.idle_timeout

    def sweep(self, now: float) -> None:
        """Close the connection if its head or its idleness has outlasted its timeout."""
        if self.head_deadline and now >= self.head_deadline and self._in_head:
            self.head_deadline = 0.0
            self._server.on_refused("head_timeout")
            self._close()
        elif self.idle_deadline and now >= self.idle_deadline:
            self.idle_deadline = 0.0
            if not self._busy and not self._queue and not self._in_head:
                self._close()

    def _stop_timers(self) -> None:
        self.head_deadline = self.idle_deadline = 0.0

    # -- flow control ----------------------------------------------------------------------

    def pause_body(self) -> None:
        self._pause_reading()

    def resume_body(self) -> None:
        self._resume_reading()

    def _pause_reading(self) -> None:
        self._reading_paused += 1
        if self._reading_paused == 1 and self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused <= 0:
            return
        self._reading_paused -= 1
        if self._reading_paused == 0 and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- writing ---------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    async def drained(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        while self._writing_paused and not self.closed:
            self._write_ready = self._loop.create_future()
            try:
                await self._write_ready
            finally:
                self._write_ready = None

    def head_bytes(self, request: HttpRequest | None, status: int, headers: Mapping[str, str]) -> bytes:
        version = b"HTTP/1.0" if request is not None and request.version == (1, 0) else b"HTTP/1.1"
        lines = [b"%b %d %b\r\n" % (version, status, _REASONS.get(status, b"Unknown"))]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
        if self.close_after_answer:
            lines.append(b"Connection: close\r\n")
        elif request is not None and request.version == (1, 0):
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"Date: " + self._server.date() + b"\r\n\r\n")
        return b"".join(lines)

    def answer_bytes(self, request: HttpRequest | None, answer: Answer, *, close: bool) -> bytes:
        if close:
            self.close_after_answer = True
        headers = answer.headers
        body = answer.body
        status = answer.status
        if status not in _NO_BODY_STATUSES:
            headers["Content-Length"] = str(len(body))
        head = self.head_bytes(request, status, headers)
        if request is not None and request.method == "HEAD" or status in _NO_BODY_STATUSES:
            return head
        return head + body


class _HeadRefused(Exception):
    """Raised from a parser callback: the head breaks a rule llhttp leaves to the server."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HttpServer:
    """One port's listening sockets and open connections."""

    def __init__(self, handler: RequestHandler, *, malformed: MalformedAnswer, header_timeout: float,
                 idle_timeout: float, on_refused: Refused | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.malformed = malformed
        self.header_timeout = header_timeout
        self.idle_timeout = idle_timeout
        self.on_refused: Refused = on_refused or (lambda _: None)
        self.ssl = ssl_context
        self.connections: set[HttpConnection] = set()
        self.loop = asyncio.get_running_loop()
        self._servers: list[asyncio.Server] = []
        # How often deadlines are checked: a timeout is kept to within a quarter of itself.
        self.sweep_seconds = min(1.0, max(0.02, min(header_timeout, idle_timeout) / 4))
        self._sweeper: asyncio.TimerHandle | None = None
        self._date_second = -1
        self._date = b""

    def date(self) -> bytes:
        """The Date field's value, formatted once a second."""
        now = self.loop.time()
        second = int(now)
        if second != self._date_second:
            self._date_second = second
            self._date = formatdate(usegmt=True).encode("ascii")
        return self._date

    async def listen(self, sockets: Iterable[Any]) -> None:
        for sock in sockets:
            server = await self.loop.create_server(lambda: HttpConnection(self), sock=sock, ssl=self.ssl,
                                                   backlog=1024)
            self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.sweep_seconds, self._sweep)

    def _sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            connection.sweep(now)
        self._sweeper = self.loop.call_later(self.sweep_seconds, self._sweep)

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for server in self._servers for sock in server.sockets]

    def stop_accepting(self) -> None:
        for server in self._servers:
            server.close()

    async def close(self) -> None:
        self.stop_accepting()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connection in list(self.connections):
            connection._close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def run_contexts(contexts: Iterable[Callable[[Any], AsyncIterator[None]]], owner: Any,
                       started: list[AsyncIterator[None]]) -> None:
    """Enter each context (an async generator that yields once), in order; `started`
    collects them, for `exit_contexts`, even when one fails."""
    for context in contexts:
        iterator = context(owner).__aiter__()
        await iterator.__anext__()
        started.append(iterator)


async def exit_contexts(started: list[AsyncIterator[None]]) -> None:
    """Leave the contexts `run_contexts` entered, last first; a failure is logged and the
    rest still run."""
    while started:
        iterator = started.pop()
        try:
            await iterator.__anext__()
        except StopAsyncIteration:
            continue
        except Exception:
            log.exception("cleanup_failed")
            continue
        log.warning("cleanup_context_yielded_twice")
