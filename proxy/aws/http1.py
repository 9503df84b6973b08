"""A small keep-alive HTTP/1.1 client for the hot path: asyncio protocols and llhttp.

aiohttp's client costs about as much per request as everything else the proxy does
(benchmarks/results.md); this one does only what forwarding a signed call needs. It sends
the request it is given byte for byte (method, still-encoded target, headers, body) and
parses the answer with httptools (Node's llhttp, strict: Content-Length and chunked
framing, conflicting or repeated lengths refused, no lenient flags). Bodies are never
decoded.

The pool is bounded (`limit` connections open at once, idle ones included; a request
waits for a free one), keeps connections alive between requests (most recently used
first), closes one idle for `idle_timeout` and evicts any that broke, that the server
closed, that carried bytes nobody asked for, or whose answer was not read to its end.
TLS is verified by the given context (CA bundle and hostname). Timeouts: `connect_timeout`
for TCP and TLS set-up, `read_timeout` for any silence while an answer is awaited or read.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ssl
from collections.abc import Mapping

import httptools

#: Requests with these methods carry no Content-Length when they have no body (as aiohttp).
_BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
#: A streamed answer stops being read from the socket while this much waits unread.
_HIGH_WATER = 256 * 1024


class MalformedResponse(Exception):
    """The answer is not valid HTTP/1.1 (or not the framing we accept)."""


class ConnectionBroken(ConnectionError):
    """The connection closed, or was reset, before the answer was whole."""


class ConnectFailed(OSError):
    """The connection could not be opened (refused, unreachable, name not resolved)."""


class ConnectTimeout(TimeoutError):
    """The connection (TCP and TLS) was not open within the connect timeout."""


class _Connection(asyncio.Protocol):
    """One connection and the one exchange it carries at a time."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, str, int]) -> None:
        self._pool = pool
        self.key = key
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.lost = False
        self.counted = False  # in the pool's count of open connections (once connected)
        self.idle_since = 0.0
        self._active = False  # a request was sent and its answer is not complete
        self._fields: dict[str, str] = {}  # the answer's header fields as they arrive
        self._head: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self._informational = False
        self._extra = False  # a second answer began in the bytes after this one
        self._eof_framed = False  # neither Content-Length nor chunked: the body ends at EOF
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._paused = False
        self.complete = False
        self.keep_alive = False
        self._body_waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._last_data = 0.0
        self._wait_started = 0.0
        self._read_timeout = 0.0
        self.deadline: float | None = None  # loop time; None: only the read timeout applies
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost:
            return
        self.lost = True
        self._cancel_timer()
        if self._active and not self.complete:
            if exc is None and self._eof_framed and self._head is not None and self._head.done():
                self._message_complete(keep_alive=False)
            else:
                self._fail(ConnectionBroken("the connection closed before the answer was whole"))
        self._pool.forget(self)
        # The transport is the last reference to asyncio's SSLProtocol (its 256 KiB read
        # buffer, the TLS object and its BIOs): dropped here, they are freed now, not when
        # the collector next finds this connection's cycle with its parser.
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if not self._active or self.complete:
            # Bytes nobody asked for (a second answer, a late body): the connection's
            # framing can no longer be trusted.
            self.close()
            return
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
            if self._extra:
                self.keep_alive = False
                self.close()
        except httptools.HttpParserUpgrade:
            self._fail(MalformedResponse("the answer asked to switch protocols"))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"the answer is not valid HTTP/1.1 ({exc})"))
            self.close()

    def pause_writing(self) -> None:  # a request is one write; nothing to pause
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks (all ignored once a second answer began: its bytes are not ours)

    def on_message_begin(self) -> None:
        if self.complete or not self._active:
            self._extra = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._extra:
            return
        # The first of repeated fields counts, as in aiohttp.
        self._fields.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        if self._extra:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            self._informational = True  # 100 Continue and kin: the real answer follows
            self._fields = {}
            return
        headers = self._fields
        self._fields = {}
        self.status = status
        self.headers = headers
        self._eof_framed = ("content-length" not in headers and "transfer-encoding" not in headers
                            and status not in (204, 304))
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._extra:
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._extra:
            return
        if self._informational:
            self._informational = False
            return
        self._message_complete(keep_alive=self._parser.should_keep_alive())

    # the exchange

    def send(self, request: bytes, read_timeout: float, deadline: float | None) -> asyncio.Future[None]:
        """Write the request; the returned future resolves once the answer's head is in.
        Past `deadline` (loop time) waiting for the answer fails with TimeoutError."""
        assert self.transport is not None
        self._active = True
        self.complete = False
        self._error = None
        self._fields.clear()  # never handed out: on_headers_complete gives away a new one
        self._chunks = []
        self._buffered = 0
        self._head = self._loop.create_future()
        self._last_data = self._wait_started = self._loop.time()
        self._read_timeout = read_timeout
        self.deadline = deadline
        due = self._last_data + read_timeout
        if deadline is not None and deadline < due:
            due = deadline
        # A timer left from an earlier answer that fires no later than this one needs is
        # kept: firing early only moves it on (`_check_silence`), and arming and cancelling
        # one per request is most of what timing an answer costs.
        timer = self._timer
        if timer is None or timer.when() > due:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_at(due, self._check_silence)
        self.transport.write(request)
        return self._head

    async def read_all(self) -> bytes:
        while not self.complete:
            await self._wait_body()
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        return body

    async def next_chunk(self) -> bytes:
        """The bytes that arrived since the last call; b"" once the answer is whole."""
        while not self._chunks:
            if self.complete:
                return b""
            await self._wait_body()
        chunk = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def _wait_body(self) -> None:
        if self._error is not None:
            raise self._error
        waiter = self._body_waiter = self._loop.create_future()
        self._wait_started = self._loop.time()
        try:
            await waiter
        finally:
            self._body_waiter = None

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()

    def _message_complete(self, *, keep_alive: bool) -> None:
        self.complete = True
        self.keep_alive = keep_alive
        self._active = False
        # The timer stays for the next request on this connection (see `send`); idle, it
        # fires once and lapses. Closing the connection cancels it.
        self._wake()

    def _wake(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._active = False
        self._cancel_timer()
        for waiter in (self._head, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    def _check_silence(self) -> None:
        # One timer per connection, moved on only when it fires: cheaper than re-arming it on
        # every read. Silence counts from the last bytes or from when a reader began to wait
        # (a paused stream is our silence, not the server's).
        self._timer = None
        if not self._active or self.complete:
            return
        waiting = (self._head is not None and not self._head.done()) or self._body_waiter is not None
        now = self._loop.time()
        silent_since = max(self._last_data, self._wait_started)
        deadline = self.deadline
        if waiting and (now - silent_since >= self._read_timeout or (deadline is not None and now >= deadline)):
            self._fail(TimeoutError("the upstream sent nothing for the read timeout, or the attempt ran out"))
            self.close()
            return
        due = (silent_since if waiting else now) + self._read_timeout
        self._timer = self._loop.call_at(due if deadline is None or due < deadline else deadline, self._check_silence)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Response:
    """An answer whose head is in; its body is read whole (`read`) or relayed (`next_chunk`).
    `release()` (after the body) lets the connection serve the next request; `close()`
    drops it."""

    __slots__ = ("_connection", "_done", "_pool", "content_length", "headers", "status")

    def __init__(self, connection: _Connection, pool: ConnectionPool, bodyless: bool) -> None:
        self._connection = connection
        self._pool = pool
        self.status = connection.status
        self.headers = connection.headers
        length = connection.headers.get("content-length")
        self.content_length = int(length) if length is not None and length.isdigit() else None
        self._done = False
        if bodyless and not connection.complete:
            # A HEAD answer announces a body it does not send: the parser cannot tell, so
            # this connection is not reused.
            self._done = True
            connection.close()
            pool.release(connection)

    async def read(self) -> bytes:
        if self._done:
            return b""
        body = await self._connection.read_all()
        self.release()
        return body

    def stream(self) -> None:
        """The body will be relayed: from here on only the read timeout applies, not the deadline."""
        self._connection.deadline = None

    async def next_chunk(self) -> bytes:
        if self._done:
            return b""
        chunk = await self._connection.next_chunk()
        if not chunk:
            self.release()
        return chunk

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._pool.release(self._connection)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._connection.close()
            self._pool.release(self._connection)


class ConnectionPool:
    def __init__(self, *, limit: int, ssl_context: ssl.SSLContext, connect_timeout: float, read_timeout: float,
                 idle_timeout: float = 15.0) -> None:
        self.loop = asyncio.get_running_loop()
        self._limit = limit
        self._ssl = ssl_context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple[str, str, int], collections.deque[_Connection]] = {}
        self._open = 0  # connections open or opening, idle ones included
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False
        # asyncio's own loop tries IPv6 and IPv4 addresses side by side, as aiohttp does;
        # uvloop has no such option (and tries them in turn).
        self._happy_eyeballs_delay = 0.25 if isinstance(self.loop, asyncio.BaseEventLoop) else None

    async def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                      deadline: float | None = None) -> Response:
        """Send one request on a pooled (or new) connection; the answer once its head is in.
        `url` is used as given: its path and query are not decoded or re-encoded. Past
        `deadline` (loop time) waiting for a connection or for the answer (until
        `Response.stream()`) fails with TimeoutError: the attempt's budget, kept on the
        connection's one timer instead of an asyncio.timeout() per request."""
        key, authority, target = split_url(url)
        head = [f"{method} {target} HTTP/1.1\r\n"]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError("a header name or value contains a line break")
            head.append(f"{name}: {value}\r\n")
        if "host" not in headers and "Host" not in headers:
            head.append(f"Host: {authority}\r\n")
        if body or method not in _BODYLESS_METHODS:
            head.append(f"Content-Length: {len(body)}\r\n")
        head.append("\r\n")
        # As aiohttp writes them: what its server decoded with surrogateescape goes out as it came.
        request = "".join(head).encode("utf-8", "surrogateescape") + body
        connection = self._idle_connection(key)
        if connection is None:
            if deadline is None:
                connection = await self._acquire(key)
            else:
                async with asyncio.timeout_at(deadline):
                    connection = await self._acquire(key)
        try:
            await connection.send(request, self._read_timeout, deadline)
        except BaseException:
            connection.close()
            self.release(connection)
            raise
        return Response(connection, self, bodyless=method == "HEAD")

    def _idle_connection(self, key: tuple[str, str, int]) -> _Connection | None:
        """The most recently used idle connection to `key` still fit to use, if any."""
        idle = self._idle.get(key)
        if not idle:
            return None
        now = self.loop.time()
        while idle:
            connection = idle.pop()
            if (not connection.lost and now - connection.idle_since < self._idle_timeout
                    and connection.transport is not None and not connection.transport.is_closing()):
                return connection
            self._discard(connection)
        return None

    async def _acquire(self, key: tuple[str, str, int]) -> _Connection:
        """An idle connection, a new one, or (at the limit) the next one released."""
        while True:
            connection = self._idle_connection(key)
            if connection is not None:
                return connection
            if self._open < self._limit:
                return await self._connect(key)
            if self._close_oldest_idle():
                continue
            waiter = self.loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    async def _connect(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        self._open += 1
        try:
            async with asyncio.timeout(self._connect_timeout):
                tls = scheme == "https"
                factory = functools.partial(_Connection, self, key)
                if self._happy_eyeballs_delay is None:
                    _, connection = await self.loop.create_connection(
                        factory, host, port, ssl=self._ssl if tls else None, server_hostname=host if tls else None)
                else:
                    _, connection = await self.loop.create_connection(
                        factory, host, port, ssl=self._ssl if tls else None, server_hostname=host if tls else None,
                        happy_eyeballs_delay=self._happy_eyeballs_delay)
        except ssl.SSLError:
            self._opened_none()
            raise
        except TimeoutError:
            self._opened_none()
            raise ConnectTimeout(f"no connection to {host}:{port} within {self._connect_timeout:g} s") from None
        except OSError as exc:
            self._opened_none()
            raise ConnectFailed(exc.errno, str(exc)) from exc
        except BaseException:
            self._opened_none()
            raise
        if connection.lost:  # closed again before we got it
            self._opened_none()
            raise ConnectionBroken("the connection closed as soon as it opened")
        connection.counted = True
        return connection

    def _opened_none(self) -> None:
        self._open -= 1
        self._wake_one()

    def release(self, connection: _Connection) -> None:
        """Back to the pool if it can carry another request, else closed."""
        if connection.lost:
            return  # `forget` did the bookkeeping
        if self._closed or not connection.complete or not connection.keep_alive:
            connection.close()
            return
        connection.idle_since = self.loop.time()
        self._idle.setdefault(connection.key, collections.deque()).append(connection)
        if self._sweep is None:
            self._sweep = self.loop.call_later(self._idle_timeout, self._sweep_idle)
        self._wake_one()

    def forget(self, connection: _Connection) -> None:
        """A connection is gone (closed by either side, or broken)."""
        idle = self._idle.get(connection.key)
        if idle is not None and connection in idle:
            idle.remove(connection)
        if connection.counted:
            connection.counted = False
            self._open -= 1
            self._wake_one()

    def _discard(self, connection: _Connection) -> None:
        """Close an idle connection, its slot free at once (not when the close completes)."""
        if connection.counted:
            connection.counted = False
            self._open -= 1
        connection.close()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_oldest_idle(self) -> bool:
        oldest: _Connection | None = None
        for idle in self._idle.values():
            if idle and (oldest is None or idle[0].idle_since < oldest.idle_since):
                oldest = idle[0]
        if oldest is None:
            return False
        self._idle[oldest.key].popleft()
        self._discard(oldest)
        return True

    def _sweep_idle(self) -> None:
        self._sweep = None
        now = self.loop.time()
        remaining = False
        for idle in self._idle.values():
            while idle and now - idle[0].idle_since >= self._idle_timeout:
                self._discard(idle.popleft())
            remaining = remaining or bool(idle)
        if remaining:
            self._sweep = self.loop.call_later(self._idle_timeout, self._sweep_idle)

    async def close(self) -> None:
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            while idle:
                self._discard(idle.pop())
        await asyncio.sleep(0)  # let the transports finish closing


@functools.lru_cache(maxsize=256)
def _origin(scheme: str, authority: str) -> tuple[str, str, int]:
    host, port = authority, 443 if scheme == "https" else 80
    if authority.startswith("["):  # [IPv6]:port
        end = authority.index("]")
        host, rest = authority[1:end], authority[end + 1:]
        if rest.startswith(":"):
            port = int(rest[1:])
    elif ":" in authority:
        host, _, number = authority.rpartition(":")
        port = int(number)
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"not an http(s) origin: {scheme}://{authority}")
    return scheme, host, port


def split_url(url: str) -> tuple[tuple[str, str, int], str, str]:
    """((scheme, host, port), authority, target) of an absolute http(s) URL, the target as given."""
    scheme, _, rest = url.partition("://")
    slash = rest.find("/")
    authority, target = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    return _origin(scheme.lower(), authority), authority, target
