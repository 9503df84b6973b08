"""Wires caller authentication, policy, replay window and rate limits from config.

`build_gateway` returns the stages `app.build_proxy` puts around the request path, and
the app contexts they need (Redis, SIGHUP reload of bearer tokens). With nothing of this
configured it returns no stages at all: a plain sidecar's path is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from proxy.aws.credentials import Clock
from proxy.config import ProxyConfig, SigV4Config
from proxy.errors import ConfigError
from proxy.gateway.audit import AuditLog
from proxy.gateway.auth import Authenticator, BearerTokens, CertificateIdentities
from proxy.gateway.own_access import SIDECAR_CALLER, OwnAccess, known_actions
from proxy.gateway.ratelimit import LocalBuckets, RateLimiter, RateLimits
from proxy.gateway.replay import ReplayWindow
from proxy.gateway.shared_state import SharedState
from proxy.gateway.sigv4_callers import InternalKey, SigV4Verifier
from proxy.gateway.stages import (
    Authenticate,
    Authorize,
    RateLimit,
    RejectReplays,
    VerifyCallerSignature,
)
from proxy.model.catalog import Catalog
from proxy.observe.metrics import Metrics
from proxy.pipeline import AdmissionStage, Stage
from proxy.policy import PolicySet

log = structlog.get_logger("ivs_proxy")

#: A cleanup context for the data application: runs while it serves. It is handed the
#: application and needs nothing of it, so this package stays free of aiohttp.web.
AppContext = Callable[[object], AsyncIterator[None]]


@dataclass(frozen=True)
class Gateway:
    head: tuple[Stage, ...] = ()  # before MatchOperation
    body: tuple[Stage, ...] = ()  # before ValidateInput
    admission: tuple[AdmissionStage, ...] = ()
    contexts: tuple[AppContext, ...] = ()
    needs_peer_certificate: bool = False  # mTLS: serve/tls.py hands each request its certificate
    authenticator: Authenticator | None = None
    policy: PolicySet | None = None
    own_access: OwnAccess = field(default_factory=OwnAccess)  # the proxy's own operations
    sighup: tuple[Callable[[], None], ...] = ()  # what SIGHUP re-reads (app.py installs one handler for all)
    shared: SharedState | None = field(default=None, repr=False)


def build_gateway(config: ProxyConfig, env: Mapping[str, str], catalog: Catalog, metrics: Metrics,
                  clock: Clock) -> Gateway:
    auth = config.auth
    enforce_policy = config.mode == "gateway" or bool(config.policy.callers)
    limits = RateLimits(config.rate_limits)
    if not (auth.configured or enforce_policy or limits.active):
        return Gateway()
    audit = AuditLog(metrics)
    bearer = BearerTokens(auth.bearer.tokens, auth.bearer.tokens_file) if auth.bearer.tokens or auth.bearer.tokens_file else None
    certificates = CertificateIdentities(auth.mtls.identities) if auth.mtls.identities else None
    verifier = SigV4Verifier(internal_keys(auth.sigv4, env), auth.sigv4.max_skew_seconds, clock) if auth.sigv4.keys else None
    authenticator = Authenticator(bearer=bearer, certificates=certificates, sigv4=verifier, anonymous=SIDECAR_CALLER)
    shared = SharedState(config.redis, metrics) if config.redis.url else None
    policy = PolicySet(config.policy.callers, known_actions(op.iam_action for op in catalog.operations)) if enforce_policy else None
    admission: list[AdmissionStage] = []
    body: tuple[Stage, ...] = ()
    window = None
    if verifier is not None:
        body = (VerifyCallerSignature(verifier, authenticator, audit),)
        window = ReplayWindow(auth.sigv4.max_skew_seconds, shared, config.redis.replay_on_outage)
        admission.append(RejectReplays(window, verifier, authenticator, audit, clock))
    if policy is not None:
        admission.append(Authorize(policy, audit))
    if limits.active:
        limiter = RateLimiter(limits, LocalBuckets(), shared)
        admission.append(RateLimit(limiter, lambda caller: metrics.throttled.labels(caller).inc()))
    contexts = [_shared_state(shared)] if shared else []
    sighup = (_bearer_reload(bearer, metrics),) if bearer and auth.bearer.tokens_file else ()
    _warn_about_gaps(config, authenticator, policy)
    return Gateway(
        head=(Authenticate(authenticator, audit),), body=body, admission=tuple(admission), contexts=tuple(contexts),
        needs_peer_certificate=bool(config.tls.client_ca_file),
        authenticator=authenticator, policy=policy, shared=shared, sighup=sighup,
        own_access=OwnAccess(authenticator if auth.configured else None, verifier, policy, audit, window, clock),
    )


def internal_keys(config: SigV4Config, env: Mapping[str, str]) -> list[InternalKey]:
    """Each internal key with its secret, read once at start-up from its file or variable."""
    keys = []
    for key in config.keys:
        where = f"auth.sigv4.keys ({key.access_key_id})"
        if key.secret_file is not None:
            try:
                secret = Path(key.secret_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(where, f"cannot read secret_file: {exc.strerror}") from None
        else:
            secret = env.get(key.secret_env or "", "").strip()
        if len(secret) < 16:
            raise ConfigError(where, "the secret is missing or shorter than 16 characters")
        keys.append(InternalKey(key.caller, key.access_key_id, secret))
    return keys


def _warn_about_gaps(config: ProxyConfig, authenticator: Authenticator, policy: PolicySet | None) -> None:
    if policy is None:
        return
    known = authenticator.callers if config.auth.configured else frozenset({SIDECAR_CALLER})
    for caller in sorted(known - policy.callers):
        log.warning("caller_without_policy", caller=caller, effect="every request of this caller is denied")
    for caller in sorted(policy.callers - known):
        log.warning("policy_for_unknown_caller", caller=caller, effect="no authentication method names this caller")
    if authenticator.bearer is not None and config.tls.cert_file is None:
        log.warning("bearer_tokens_without_tls", effect="tokens cross the network in clear text unless a mesh encrypts it")


def _bearer_reload(bearer: BearerTokens, metrics: Metrics) -> Callable[[], None]:
    def reload() -> None:
        try:
            count = bearer.reload()
        except ConfigError as exc:  # keep serving with the tokens already loaded
            metrics.token_reloads.labels("error").inc()
            log.error("bearer_tokens_reload_failed", error=str(exc))
            return
        metrics.token_reloads.labels("success").inc()
        log.info("bearer_tokens_reloaded", tokens=count)

    return reload


def on_sighup(reloads: tuple[Callable[[], None], ...]) -> AppContext:
    """One SIGHUP handler running every reload (a loop holds one handler per signal)."""
    def reload() -> None:
        for each in reloads:
            each()

    async def sighup_handler(_: object) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        installed = False
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signal.SIGHUP, reload)
            installed = True
        yield
        if installed:
            loop.remove_signal_handler(signal.SIGHUP)

    return sighup_handler


def _shared_state(shared: SharedState) -> AppContext:
    async def redis_connection(_: object) -> AsyncIterator[None]:
        await shared.probe()  # never fails start-up: limits fall back to per process
        yield
        await shared.close()

    return redis_connection
