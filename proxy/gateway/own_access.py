"""The proxy's own operations (token minting, event delivery) and who may call them.

They are not IVS operations: they live under OWN_PATH_PREFIX, which no IVS path can start
with (a test walks every request URI of the three models), and their IAM-style actions use
the `ivs-proxy:` prefix, so one policy document says what a caller may do with IVS and with
the proxy. A caller is established exactly as for API calls (bearer token, client
certificate, or an SDK signature with an internal key whose scope names the signing name
`ivs-proxy`), and each decision is audited like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from proxy.aws.credentials import Clock, utc_now
from proxy.gateway.audit import AuditLog
from proxy.gateway.auth import Authenticator
from proxy.gateway.identity import Caller, Unauthenticated
from proxy.gateway.replay import ReplayWindow
from proxy.gateway.sigv4_callers import SigV4Verifier
from proxy.policy import AccessDenied, Decision, PolicySet

OWN_PATH_PREFIX = "/_ivs-proxy/"
#: The action prefix, the SigV4 signing name and the `service` label of the own operations.
OWN_SERVICE = "ivs-proxy"
#: The caller of every request in sidecar mode without authentication, so that a sidecar
#: can narrow what its app may do with `policy.callers.app`.
SIDECAR_CALLER = "app"


@dataclass(frozen=True, slots=True)
class OwnOperation:
    name: str
    method: str
    path: str  # under OWN_PATH_PREFIX
    resource: str  # what its policy Resource names, for docs and `policy-check`

    @property
    def action(self) -> str:
        return f"{OWN_SERVICE}:{self.name}"


#: Every own operation, whether or not this config turns it on: a policy may name any of them.
OWN_OPERATIONS: tuple[OwnOperation, ...] = (
    OwnOperation("MintPlaybackToken", "POST", OWN_PATH_PREFIX + "tokens/playback", "channel ARN"),
    OwnOperation("MintParticipantToken", "POST", OWN_PATH_PREFIX + "tokens/participant", "stage ARN"),
    OwnOperation("SubscribeEvents", "GET", OWN_PATH_PREFIX + "events", "ARNs the event names"),
)


def own_operation(name: str) -> OwnOperation:
    return next(op for op in OWN_OPERATIONS if op.name == name)


def known_actions(served_actions: Iterable[str]) -> set[str]:
    """What a policy may name: the served IVS operations' actions and the proxy's own."""
    return {*served_actions, *(op.action for op in OWN_OPERATIONS)}


class OwnAccess:
    """The gateway's authentication and policy, applied to one own operation's request.

    Without authentication (a sidecar) every request is SIDECAR_CALLER; without a policy
    every authenticated caller is allowed (whether the feature is on at all is the
    feature's config)."""

    def __init__(
        self,
        authenticator: Authenticator | None = None,
        verifier: SigV4Verifier | None = None,
        policy: PolicySet | None = None,
        audit: AuditLog | None = None,
        replays: ReplayWindow | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._authenticator = authenticator
        self._verifier = verifier
        self._policy = policy
        self._audit = audit
        self._replays = replays
        self._clock = clock

    async def identify(
        self,
        operation: OwnOperation,
        headers: Sequence[tuple[str, str]],
        peercert: Mapping[str, Any] | None,
        *,
        path: str,
        query: str,
        body: bytes,
    ) -> Caller:
        """Who is calling; Unauthenticated (401, audited, with the gateway's challenge) if nobody.
        A verified signature is accepted once, as on the API path: a replayed mint request
        must not mint again."""
        if self._authenticator is None:
            return Caller(SIDECAR_CALLER, "none")
        try:
            found = self._authenticator.authenticate(headers, peercert)
            pending = found.signature
            if pending is not None:
                assert self._verifier is not None  # a signature is only parsed when keys exist
                self._verifier.verify(pending, method=operation.method, path=path, query=query,
                                      body=body, signing_name=OWN_SERVICE)
                remaining = (pending.amz_date + self._verifier.max_skew - self._clock()).total_seconds()
                if self._replays is not None and not await self._replays.first_use(pending.signature, remaining):
                    raise Unauthenticated("this signature was already used: a replayed request is refused (sign "
                                          "each request afresh)", method="sigv4", why="replayed",
                                          key_id=pending.key.access_key_id)
        except Unauthenticated as error:
            if self._audit is not None:
                self._audit.authentication_failed(error, operation.action)
            if self._authenticator.challenge:
                error.headers.setdefault("WWW-Authenticate", self._authenticator.challenge)
            raise
        return found.caller

    def authorize(self, caller: Caller, operation: OwnOperation, resources: Sequence[str],
                  region: str | None) -> Decision | None:
        """The policy's decision (audited); AccessDenied (403) when it refuses. None: no policy."""
        if self._policy is None:
            return None
        decision = self._policy.evaluate(caller.name, operation.action, resources, region)
        if self._audit is not None:
            self._audit.authorization(decision, caller)
        if not decision.allowed:
            raise AccessDenied(decision.message())
        return decision

    def decision(self, caller: Caller, operation: OwnOperation, resources: Sequence[str],
                 region: str | None) -> Decision | None:
        """The policy's decision, neither audited nor enforced: for filtering many items (each
        event a subscriber might get), where `authorize` decided the request itself. None: no policy."""
        if self._policy is None:
            return None
        return self._policy.evaluate(caller.name, operation.action, resources, region)
