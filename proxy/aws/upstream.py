"""The shared upstream client: one bounded keep-alive pool, TLS verified like the SDKs do.

The connections are `http1.py`'s (asyncio protocols and llhttp; aiohttp's client cost as
much per request as the rest of the proxy). Bodies are passed through byte for byte in
both directions: nothing is decompressed, so a gzip answer from AWS reaches the caller
still gzipped and still labelled so.

One `send` is one attempt (retries are `retries.py`'s business). A small answer (the
common case: a Content-Length up to 64 KiB) is read whole, so that a truncated or
malformed one becomes a clean 502 before anything reaches the caller. A larger one, or
one without a Content-Length, is handed over as a `BodyStream` and relayed chunk by chunk;
if it ends early the caller's connection is broken rather than finished, so a partial 200
never passes for a whole one. Failures become `UpstreamError`s whose `kind` says what
broke and whose `sent` says whether the request could have reached AWS at all.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from proxy.aws.http1 import (
    ConnectFailed,
    ConnectionBroken,
    ConnectionPool,
    ConnectTimeout,
    MalformedResponse,
    Response,
)
from proxy.config import UpstreamConfig
from proxy.errors import UpstreamNotAws, UpstreamTimeout, UpstreamUnreachable
from proxy.frozen import fast_frozen_init

#: Answers up to this size (by Content-Length) are read whole; larger ones are streamed.
STREAM_THRESHOLD = 64 * 1024
CHUNK_SIZE = 64 * 1024

#: Response headers worth returning for every operation; the rest are AWS-internal or
#: hop-by-hop, except those an operation's output shape names (`send`'s `output_headers`).
RETURNED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "x-amzn-RequestId",
    "x-amzn-ErrorType",
    "x-amz-apigw-id",
    "x-amzn-Trace-Id",
    "Retry-After",
    "x-amz-retry-after",
)

#: How much of a foreign answer's body a caller is shown, after tags and controls are removed.
EXCERPT_CHARS = 200
#: Kept from a foreign answer on the error that replaces it: the caller may retry on them.
_KEPT_FROM_FOREIGN = ("x-amzn-RequestId", "Retry-After", "x-amz-retry-after")
_TAG = re.compile(r"<[^>]*>?")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff\s]+")

#: AWS's front end (IAM authorisation, as moto emulates it) answers some errors in XML,
#: which the SDKs parse; an HTML page is not one of them.
_AWS_XML_ERRORS = (b"<?xml", b"<ErrorResponse", b"<Error>", b"<Response><Errors>")

#: RETURNED_HEADERS as the pool's lower-case header names find them.
_RETURNED_LOWER = tuple((name, name.lower()) for name in RETURNED_HEADERS)
#: Idle keep-alive connections are closed after this (AWS's front ends close theirs later).
IDLE_TIMEOUT_SECONDS = 15.0


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""
    stream: BodyStream | None = None  # instead of `body`, for a large answer

    async def discard(self) -> None:
        """Give up on this answer (before a retry): frees its connection."""
        if self.stream is not None:
            self.stream.close()


class BodyStream:
    """A large answer still arriving: `chunks()` relays it, raising UpstreamError if it
    stalls or ends before its Content-Length (or its last chunk)."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self.content_length = response.content_length

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        response = self._response
        try:
            while chunk := await response.next_chunk():
                yield chunk
        except BaseException as exc:
            response.close()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("AWS stopped sending its answer midway", kind="timeout") from None
            if isinstance(exc, (MalformedResponse, OSError)):
                raise UpstreamUnreachable(f"AWS's answer broke off midway ({type(exc).__name__})",
                                          kind="reset") from None
            raise

    def close(self) -> None:
        self._response.close()


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """Verify against the given bundle (resolved like an SDK does), else the system store."""
    return _context_for(ca_bundle or None)


@functools.lru_cache(maxsize=8)
def _context_for(cafile: str | None) -> ssl.SSLContext:
    # Loading a trust store costs tens of milliseconds; a context is safely shared.
    return ssl.create_default_context(cafile=cafile)


class Upstream:
    def __init__(self, config: UpstreamConfig, ca_bundle: str | None = None) -> None:
        self._config = config
        self._ca_bundle = ca_bundle or config.ca_bundle
        self._pool: ConnectionPool | None = None

    async def start(self) -> None:
        config = self._config
        self._pool = ConnectionPool(
            limit=config.max_connections, ssl_context=ssl_context(self._ca_bundle),
            connect_timeout=config.connect_timeout_seconds, read_timeout=config.read_timeout_seconds,
            idle_timeout=IDLE_TIMEOUT_SECONDS,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes, *, timeout: float | None = None,
        output_headers: tuple[str, ...] = (),
    ) -> UpstreamResponse:
        """One attempt, bounded by `timeout` (default: upstream.attempt_timeout_seconds) until
        its answer is read whole or, for a large one, until its headers are in. The answer
        keeps RETURNED_HEADERS and `output_headers` (the operation's header-bound members).
        `url` goes out as given: a %2F or %3A in it stays encoded, as it was signed."""
        pool = self._pool
        assert pool is not None, "Upstream.start() was not awaited"
        deadline = pool.loop.time() + (timeout or self._config.attempt_timeout_seconds)
        try:
            response = await pool.request(method, url, headers, body, deadline)
            try:
                returned = _returned(response.headers, output_headers)
                if _large(response):
                    response.stream()
                    return UpstreamResponse(response.status, returned, stream=BodyStream(response))
                return UpstreamResponse(response.status, returned, await response.read())
            except BaseException:
                response.close()
                raise
        except ConnectTimeout:
            raise UpstreamTimeout("could not connect to AWS in time", kind="connect", sent=False) from None
        except TimeoutError:  # the attempt's budget, or the read timeout
            raise UpstreamTimeout("AWS did not answer in time", kind="timeout") from None
        except ssl.SSLError:  # (an OSError) while the connection was being set up
            raise UpstreamUnreachable("the TLS connection to AWS failed verification", kind="tls", sent=False) from None
        except ConnectFailed as exc:
            # Nothing was written: the connection never opened (refused, unreachable, DNS).
            raise UpstreamUnreachable(f"could not connect to AWS ({type(exc.__cause__ or exc).__name__})",
                                      kind="connect", sent=False) from None
        except MalformedResponse:
            raise UpstreamUnreachable("AWS's answer was not valid HTTP (MalformedResponse)", kind="malformed") from None
        except (ConnectionBroken, OSError) as exc:
            # The connection was up and broke: reset, closed early, or a truncated answer.
            raise UpstreamUnreachable(f"the connection to AWS failed ({type(exc).__name__})", kind="reset") from None


def _large(response: Response) -> bool:
    if response.status in (204, 304) or response.status < 200:
        return False  # no body by definition
    length = response.content_length
    return length is None or length > STREAM_THRESHOLD


def _returned(headers: Mapping[str, str], output_headers: tuple[str, ...]) -> dict[str, str]:
    """The kept headers, spelled as RETURNED_HEADERS and the model spell them; `headers` has
    lower-case names."""
    returned = {name: headers[lower] for name, lower in _RETURNED_LOWER if lower in headers}
    for name in output_headers:
        lower = name.lower()
        if lower in headers:
            returned[name] = headers[lower]
    return returned


def is_aws_answer(response: UpstreamResponse) -> bool:
    """AWS's rest-json answers carry `x-amzn-ErrorType`, or a JSON body (an XML error from
    its front end), or none. The body
    decides, not its label: emulators (moto) label JSON `text/html`. A large answer is not
    read ahead; only an error labelled as something other than JSON is judged foreign."""
    headers = response.headers
    if "x-amzn-ErrorType" in headers or response.status in (204, 304) or response.status < 200:
        return True
    media_type = headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("json"):
        return True
    if response.stream is not None:
        return response.status < 400
    body = response.body.lstrip()
    if not body or "Content-Encoding" in headers or body.startswith(_AWS_XML_ERRORS):
        return True
    try:
        json.loads(response.body)
    except ValueError:
        return False
    return True


def foreign_answer(status: int, headers: Mapping[str, str], head: bytes) -> UpstreamNotAws:
    """The error that replaces an answer that is not AWS's: its status, what it was, and
    the start of its text (tags, controls and invisible characters removed), never more."""
    media_type = headers.get("Content-Type", "").partition(";")[0].strip() or "no Content-Type"
    if "gzip" in headers.get("Content-Encoding", "").lower() or "deflate" in headers.get("Content-Encoding", "").lower():
        excerpt = "(compressed)"
    else:
        text = _UNPRINTABLE.sub(" ", _TAG.sub(" ", head.decode("utf-8", errors="replace"))).strip()
        excerpt = text[:EXCERPT_CHARS] + ("…" if len(text) > EXCERPT_CHARS else "") if text else "(empty)"
    kept = {name: headers[name] for name in _KEPT_FROM_FOREIGN if name in headers}
    return UpstreamNotAws(
        status,
        f"the upstream answered HTTP {status} with {media_type[:60]}, not an AWS answer "
        f"(a proxy, load balancer or emulator in between?): {excerpt}",
        headers=kept,
    )
