"""The gateway's stages: who is calling, whether their signature is fresh, what they may
do and how often. `wiring.py` adds them to the pipeline when callers are configured."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from proxy.aws.credentials import Clock
from proxy.gateway.audit import AuditLog
from proxy.gateway.auth import Authenticator
from proxy.gateway.identity import PEER_CERTIFICATE, Unauthenticated
from proxy.gateway.ratelimit import RateLimiter, Throttled
from proxy.gateway.replay import ReplayWindow
from proxy.gateway.sigv4_callers import SigV4Verifier
from proxy.pipeline import Exchange
from proxy.policy import AccessDenied, PolicySet


class Authenticate:
    """Head stage: who is calling. Consumes the credential headers it checked, so that
    CheckHeaders still refuses any other signing material."""

    def __init__(self, authenticator: Authenticator, audit: AuditLog) -> None:
        self._authenticator = authenticator
        self._audit = audit

    def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        try:
            found = self._authenticator.authenticate(request.headers, PEER_CERTIFICATE.get())
        except Unauthenticated as error:
            raise _refused(error, self._authenticator, self._audit, None) from None
        exchange.caller = found.caller
        exchange.caller_signature = found.signature
        exchange.request = dataclasses.replace(request, headers=found.headers)


class VerifyCallerSignature:
    """Body stage, first: an SDK-native caller's signature over the whole request."""

    def __init__(self, verifier: SigV4Verifier, authenticator: Authenticator, audit: AuditLog) -> None:
        self._verifier = verifier
        self._authenticator = authenticator
        self._audit = audit

    def __call__(self, exchange: Exchange) -> None:
        pending = exchange.caller_signature
        if pending is None:
            return
        request, operation = exchange.request, exchange.operation
        try:
            self._verifier.verify(pending, method=request.method, path=request.path, query=request.query,
                                  body=request.body, signing_name=operation.service.signing_name)
        except Unauthenticated as error:
            raise _refused(error, self._authenticator, self._audit, operation.iam_action) from None
        exchange.scope_region = pending.region


class RejectReplays:
    """Admission: a verified signature is accepted once (proxy/gateway/replay.py)."""

    def __init__(self, window: ReplayWindow, verifier: SigV4Verifier, authenticator: Authenticator,
                 audit: AuditLog, clock: Clock) -> None:
        self._window, self._verifier = window, verifier
        self._authenticator, self._audit, self._clock = authenticator, audit, clock

    async def __call__(self, exchange: Exchange) -> None:
        pending = exchange.caller_signature
        if pending is None:
            return
        remaining = (pending.amz_date + self._verifier.max_skew - self._clock()).total_seconds()
        if not await self._window.first_use(pending.signature, remaining):
            error = Unauthenticated("this signature was already used: a replayed request is refused (sign each "
                                    "request afresh)", method="sigv4", why="replayed", key_id=pending.key.access_key_id)
            raise _refused(error, self._authenticator, self._audit, exchange.operation.iam_action)

    async def undo(self, exchange: Exchange) -> None:
        """A later admission stage refused the request: its signature was not spent."""
        if exchange.caller_signature is not None:
            await self._window.release(exchange.caller_signature.signature)


class Authorize:
    """Admission: the caller's policy decides (403 AccessDeniedException); audited."""

    def __init__(self, policy: PolicySet, audit: AuditLog) -> None:
        self._policy = policy
        self._audit = audit

    async def __call__(self, exchange: Exchange) -> None:
        caller, validated = exchange.caller, exchange.validated
        assert caller is not None and validated is not None
        resources = [str(ref.arn) for ref in validated.resources]
        decision = self._policy.evaluate(caller.name, exchange.operation.iam_action, resources, exchange.region or None)
        self._audit.authorization(decision, caller)
        if not decision.allowed:
            raise AccessDenied(decision.message())


class RateLimit:
    """Admission: the caller's token buckets (429 ThrottlingException with Retry-After)."""

    def __init__(self, limiter: RateLimiter, on_throttle: Callable[[str], None]) -> None:
        self._limiter = limiter
        self._on_throttle = on_throttle

    async def __call__(self, exchange: Exchange) -> None:
        caller, validated = exchange.caller, exchange.validated
        assert caller is not None and validated is not None
        try:
            await self._limiter.check(caller.name, exchange.operation, [str(r.arn) for r in validated.resources])
        except Throttled:
            self._on_throttle(caller.name)
            raise


def _refused(error: Unauthenticated, authenticator: Authenticator, audit: AuditLog, action: str | None) -> Unauthenticated:
    audit.authentication_failed(error, action)
    if authenticator.challenge:
        error.headers.setdefault("WWW-Authenticate", authenticator.challenge)
    return error
