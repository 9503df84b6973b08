"""Who a request is from: the caller, the failures that leave it unknown, and the peer
certificate the TLS layer saw.

The small vocabulary that authentication (`auth.py`, `sigv4_callers.py`), the request
path (`proxy/pipeline.py`) and the audit log share; it imports nothing of theirs, so each
of them can import it without a cycle.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.errors import ProxyError

#: The peer certificate of the current request's TLS connection (`ssl.getpeercert()`
#: form), or None: plain HTTP, or TLS without a client certificate.
PEER_CERTIFICATE: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "peer_certificate", default=None
)


@dataclass(frozen=True, slots=True)
class Caller:
    name: str  # from config: bounded, safe as a metric label
    method: str  # "bearer" | "mtls" | "sigv4" | "none" (sidecar without authentication)


class Unauthenticated(ProxyError):
    """401: no caller could be established. `why` is a fixed token for metrics and audit."""

    status = 401
    error_type = "UnrecognizedClientException"
    reason = "unauthenticated"

    def __init__(self, message: str, *, method: str, why: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.why = why
        self.key_id = key_id  # an internal access key id (not a secret), for the audit line


class SignatureRejected(Unauthenticated):
    error_type = "InvalidSignatureException"
