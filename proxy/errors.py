"""The errors ivs-proxy itself produces.

Each class carries its HTTP status, its rest-json error type (what an SDK shows as the
error code) and a `reason`, a short fixed token used for metrics and logs. Exactly one
middleware turns them into responses (`serve/server.py`), in the rest-json shape that every
AWS SDK parses: an `x-amzn-ErrorType` header and a JSON body with `message`.

Messages must never contain credentials, signatures or request bodies; they may quote a
member path or a header name, never a secret value.
"""

from __future__ import annotations

from typing import ClassVar

#: Every proxy-made message starts with this, so a reader of an SDK exception can tell
#: the proxy refused the call, not AWS.
MESSAGE_PREFIX = "ivs-proxy refused the request: "


class ProxyError(Exception):
    status: ClassVar[int] = 400
    error_type: ClassVar[str] = "ValidationException"
    reason: ClassVar[str] = "invalid"
    #: The connection cannot be trusted for another request (its framing is in doubt).
    close_connection: ClassVar[bool] = False

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, str]:
        return {"message": MESSAGE_PREFIX + self.message, "reason": self.reason, "source": "ivs-proxy"}


class UnknownOperation(ProxyError):
    status = 404
    error_type = "UnknownOperationException"
    reason = "unknown_operation"


class MethodNotAllowed(ProxyError):
    status = 405
    error_type = "MethodNotAllowedException"
    reason = "method_not_allowed"


class HeaderRejected(ProxyError):
    status = 400
    error_type = "InvalidHeaderException"
    reason = "header"


class NotAcceptable(HeaderRejected):
    status = 406


class UnsupportedMediaType(HeaderRejected):
    status = 415


class CallerSigningMaterial(HeaderRejected):
    """The caller sent its own signature or credentials: we sign, so we refuse to guess."""

    error_type = "UnexpectedCredentialsException"
    reason = "caller_credentials"


class RequestInvalid(ProxyError):
    status = 400
    error_type = "ValidationException"
    reason = "validation"


class BodyTooLarge(ProxyError):
    status = 413
    error_type = "RequestEntityTooLargeException"
    reason = "too_large"


class RegionRejected(ProxyError):
    status = 400
    error_type = "ValidationException"
    reason = "region"


class SigningUnavailable(ProxyError):
    """No usable credentials: refuse rather than forward unsigned (fail closed)."""

    status = 503
    error_type = "ServiceUnavailableException"
    reason = "credentials_unavailable"


class UpstreamError(ProxyError):
    """AWS could not be reached or did not answer; `kind` is a fixed token for metrics
    (connect, tls, timeout, reset, malformed). `sent` is False only when the request
    provably never left the proxy (no connection could be opened), so repeating it is safe."""

    def __init__(self, message: str, *, kind: str, sent: bool = True) -> None:
        super().__init__(message)
        self.kind = kind
        self.sent = sent


class UpstreamUnreachable(UpstreamError):
    status = 502
    error_type = "BadGatewayException"
    reason = "upstream_unreachable"


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "GatewayTimeoutException"
    reason = "upstream_timeout"


class UpstreamNotAws(ProxyError):
    """Something answered that is not AWS (an HTML error page from a load balancer or a
    captive portal, an emulator's plain-text 404): the SDK would show the raw page, so the
    caller gets a readable error instead, with the upstream's status kept and
    `"source": "upstream"` saying who answered."""

    error_type = "UpstreamNotAwsException"
    reason = "upstream_not_aws"

    def __init__(self, upstream_status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)
        self.upstream_status = upstream_status

    @property  # type: ignore[misc]  # per instance: the upstream's own status
    def status(self) -> int:  # type: ignore[override]
        return self.upstream_status

    def body(self) -> dict[str, str]:
        return {"message": self.message, "reason": self.reason, "source": "upstream"}


class Overloaded(ProxyError):
    """Too many requests in flight and the queue is full (or the wait ran out); the body is in.

    ThrottlingException, so that SDKs back off as from AWS throttling (longer waits, and
    the adaptive mode's client-side rate limit)."""

    status = 503
    error_type = "ThrottlingException"
    reason = "overloaded"


class BodyReadsFull(Overloaded):
    """Too many bodies are arriving slowly at once: refused before this one is read, so
    that bodies in transit (and their memory) stay bounded apart from the in-flight cap."""

    reason = "body_reads_full"
    close_connection = True  # its body is still on the wire, unread


class CallerShareFull(Overloaded):
    """This caller (or client address) already holds its share of the in-flight slots or of
    the body-read budget (`limits.max_share_per_caller`): the others keep theirs."""

    reason = "caller_share"
    close_connection = True  # refused before its body was read


class ShuttingDown(ProxyError):
    """Still running when the drain timeout ran out; it may or may not have reached AWS."""

    status = 503
    error_type = "ServiceUnavailableException"
    reason = "shutting_down"


class ClientDisconnected(ProxyError):
    """The caller closed its connection before its body had arrived: nobody reads the
    answer, but the request is counted and logged (as nginx's 499) like any refusal."""

    status = 400
    error_type = "RequestAbortedException"
    reason = "client_disconnected"
    close_connection = True


class ClientTimeout(ProxyError):
    """The caller took too long to send its request body."""

    status = 408
    error_type = "RequestTimeoutException"
    reason = "client_timeout"
    close_connection = True


class SlowBody(ClientTimeout):
    """The caller's body arrived slower than the minimum rate once the grace period was over."""

    reason = "slow_body"


class DeadlinePassed(ProxyError):
    """The caller's own deadline (amz-sdk-request ttl) passed before AWS could be asked."""

    status = 408
    error_type = "RequestTimeoutException"
    reason = "deadline_passed"


class MalformedRequest(ProxyError):
    """Not well-formed HTTP/1.1 (framing, header syntax, sizes): the connection is closed."""

    status = 400
    error_type = "BadRequestException"
    reason = "malformed_http"
    close_connection = True


class ConfigError(Exception):
    """A configuration file or flag is wrong; raised at start-up only (exit code 2)."""

    def __init__(self, key: str, reason: str, source: str = "") -> None:
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {reason}")
        self.key = key
        self.reason = reason
        self.source = source
