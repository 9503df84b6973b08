"""Assembles a running proxy from a config: the one place that wires modules together."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import botocore.session
from prometheus_client import CollectorRegistry

from proxy.aws.credential_sources import CallerIdentity, source_from_config
from proxy.aws.credentials import (
    Clock,
    CredentialSource,
    CredentialStore,
    IdentityLookup,
    utc_now,
    what_to_do,
)
from proxy.aws.endpoints import EndpointTable
from proxy.aws.regions import RegionChooser, default_region, offered_regions
from proxy.aws.regions import botocore_session as config_session
from proxy.aws.retries import Retrier
from proxy.aws.upstream import Upstream
from proxy.config import ProxyConfig, check_exposure, config_warnings
from proxy.errors import ConfigError
from proxy.gateway.auth import Authenticator
from proxy.gateway.own_access import OwnAccess, OwnOperation, known_actions
from proxy.gateway.wiring import build_gateway, on_sighup
from proxy.model.catalog import Catalog
from proxy.model.headers import HeaderOptions, HeaderPolicy
from proxy.model.validate import ValidationOptions
from proxy.observe.metrics import Metrics
from proxy.pipeline import (
    CheckHeaders,
    ChooseEndpoint,
    MatchOperation,
    Pipeline,
    Sign,
    Stage,
    ValidateInput,
)
from proxy.policy import PolicySet
from proxy.serve.admin import AdminApp, create_admin_app
from proxy.serve.limits import Admission, BodyReads, CallerShares
from proxy.serve.own_routes import OwnHandler
from proxy.serve.server import DataApp, ProxyState, create_data_app
from proxy.serve.tls import server_context
from proxy.startup import return_freed_memory
from proxy.tokens.service import minting_served

# Token minting and events are imported where a config turns them on: a sidecar without
# them (most) skips their ~15 modules (~15 ms and ~0.4 MiB at start-up).
if TYPE_CHECKING:
    from proxy.events.wiring import Events
    from proxy.tokens.service import TokenService


@dataclass(frozen=True)
class Proxy:
    config: ProxyConfig
    catalog: Catalog
    state: ProxyState
    data_app: DataApp
    admin_app: AdminApp
    authenticator: Authenticator | None = None  # gateway mode (docs/gateway.md)
    own_access: OwnAccess = field(default_factory=OwnAccess)  # who may call the proxy's own operations
    tokens: TokenService | None = None  # playback and participant tokens (docs/tokens.md)
    events: Events | None = None  # events.queue_url set (docs/events.md)


def allowed_regions(config: ProxyConfig) -> dict[str, frozenset[str]]:
    allowed: dict[str, frozenset[str]] = {}
    for service, offered in offered_regions(config.services).items():
        narrowed = config.regions.get(service)
        if narrowed:
            for i, region in enumerate(narrowed):
                if region not in offered:
                    raise ConfigError(f"regions.{service}[{i}]", f"{service} is not offered in {region!r}"
                                      f"{_did_you_mean(region, offered)}; offered: {sorted(offered)}")
            offered = frozenset(narrowed)
        allowed[service] = offered
    return allowed


def _did_you_mean(name: str, known: frozenset[str]) -> str:
    near = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {near[0]}?" if near else ""


NO_REGION_WARNING = ("no default region (region:, --region, AWS_REGION, AWS_DEFAULT_REGION, the profile's region): "
                     "a call that names no ARN with a region and no region path prefix is refused")


@dataclass(frozen=True)
class CheckedConfig:
    """What `check_config` found out on the way: `build_proxy` uses it rather than asking twice."""

    allowed_regions: dict[str, frozenset[str]]
    default_region: str | None
    warnings: list[tuple[str, str]]


def check_config(config: ProxyConfig, env: Mapping[str, str]) -> CheckedConfig:
    """Every check a config must pass before the proxy runs with it; `serve`, `dev`, `check-config`
    and `policy-check` all call it, so none of them accepts what another refuses.

    Raises ConfigError (the key and the reason); returns the warnings: settings that run but
    work against each other, or leave some calls with no way to succeed."""
    check_exposure(config)
    allowed = allowed_regions(config)
    profile = config.credentials.profile or env.get("AWS_PROFILE")
    region = default_region(config.region, env, profile)
    offered = frozenset().union(*offered_regions(config.services).values())
    if region is not None and region not in offered:
        key = "region" if config.region else "default region"
        raise ConfigError(key, f"{region!r} is not a region botocore lists for {', '.join(config.services)}"
                          f"{_did_you_mean(region, offered)}")
    if config.policy.callers:  # refuses misspelt actions, with a "did you mean"
        PolicySet(config.policy.callers, known_actions(op.iam_action for op in Catalog.load(config.services).operations))
    warnings = config_warnings(config)
    if region is None:
        warnings.append(("region", NO_REGION_WARNING))
    return CheckedConfig(allowed, region, warnings)


def sdk_ca_bundle(config: ProxyConfig, env: Mapping[str, str], profile: str | None) -> str | None:
    """The CA bundle an SDK would verify AWS with: config, AWS_CA_BUNDLE, the profile's ca_bundle."""
    if config.upstream.ca_bundle:
        return config.upstream.ca_bundle
    return config_session(env, profile).get_config_variable("ca_bundle") or None


def credential_chain_session(profile: str | None) -> botocore.session.Session:
    """The session the credential providers run in: unlike `regions.botocore_session` (config
    reads only), they make calls (STS, SSO), so it has botocore's handlers and reads the
    process environment, exactly as an SDK would."""
    return botocore.session.Session(profile=profile)


def build_proxy(
    config: ProxyConfig,
    env: Mapping[str, str],
    *,
    credential_source: CredentialSource | None = None,
    clock: Clock = utc_now,
    registry: CollectorRegistry | None = None,
) -> Proxy:
    checked = check_config(config, env)
    profile = config.credentials.profile or env.get("AWS_PROFILE")
    catalog = Catalog.load(config.services)
    allowed = checked.allowed_regions
    chooser = RegionChooser(checked.default_region, allowed)
    endpoints = EndpointTable.build(config.services, allowed, env, profile)
    source, identify = credential_source_for(config, env) if credential_source is None else (credential_source, None)
    credentials = CredentialStore(
        source, clock=clock, allow_long_lived=config.credentials.allow_long_lived_credentials, identify=identify,
        advice=what_to_do(profile),
    )
    metrics = observe_credentials(Metrics(registry), credentials)
    server_context(config.tls)  # a bad certificate or key stops start-up here, not at bind
    gateway = build_gateway(config, env, catalog, metrics, clock)
    head_stages: tuple[Stage, ...] = (
        *gateway.head,
        MatchOperation(catalog),
        CheckHeaders(HeaderPolicy(HeaderOptions(**vars(config.headers)))),
    )
    body_stages: tuple[Stage, ...] = (
        *gateway.body,
        ValidateInput(catalog, ValidationOptions(**vars(config.validation))),
        ChooseEndpoint(chooser, endpoints),
        Sign(credentials, clock),
    )
    ca_bundle = sdk_ca_bundle(config, env, profile)
    upstream = Upstream(config.upstream, ca_bundle=ca_bundle)
    retrier = Retrier.from_config(config.retries, config.upstream)
    metrics.retry_quota.set_function(lambda: retrier.quota.available)
    pipeline = Pipeline(head_stages, body_stages, upstream, gateway.admission, retrier=retrier)
    limits = config.limits
    state = ProxyState(
        pipeline, upstream, credentials, limits.max_body_bytes, metrics,
        body_timeout_seconds=limits.body_timeout_seconds,
        body_grace_seconds=limits.body_grace_seconds,
        body_min_rate=limits.body_min_rate_bytes_per_second,
        body_reads=BodyReads(limits.max_body_reads),
        inflight_shares=CallerShares(limits.max_inflight_requests + limits.max_queued_requests,
                                     limits.max_share_per_caller, "in-flight slots"),
        body_read_shares=CallerShares(limits.max_body_reads, limits.max_share_per_caller, "body-read slots"),
        admission=Admission(limits.max_inflight_requests, limits.max_queued_requests, limits.queue_timeout_seconds),
    )
    # The proxy's own operations this config turns on (proxy/gateway/own_access.py).
    own_routes: list[tuple[OwnOperation, OwnHandler]] = []
    sighup = list(gateway.sighup)
    tokens = None
    if minting_served(config):
        from proxy.tokens.http import token_routes
        from proxy.tokens.service import build_token_service

        tokens = build_token_service(config, env, endpoints=endpoints, credentials=credentials,
                                     access=gateway.own_access, metrics=metrics, ca_bundle=ca_bundle)
        own_routes += token_routes(tokens.minter)
        sighup.append(tokens.reload_keys)
    events = None
    if config.events.queue_url:
        from proxy.events.wiring import build_events

        events = build_events(config, env, profile=profile, default_region=checked.default_region,
                              credentials=credentials, metrics=metrics, access=gateway.own_access,
                              shared=gateway.shared, ca_bundle=ca_bundle)
        own_routes.append(events.route)
    data_app = create_data_app(state, own_routes, gateway.own_access)
    # First, so that refused long-lived keys stop start-up before anything else opens.
    data_app.cleanup_ctx.insert(0, _credential_refresh(credentials))
    data_app.cleanup_ctx.extend(gateway.contexts)
    if tokens is not None:
        # Right after the credentials (KMS keys are checked with them), before anything else
        # opens: a wrong key stops start-up with nothing to unwind.
        for position, context in enumerate(tokens.contexts, start=1):
            data_app.cleanup_ctx.insert(position, context)
    if events is not None:  # after the gateway's: its Redis connection is open by then
        data_app.cleanup_ctx.append(events.context)
    if sighup:
        data_app.cleanup_ctx.append(on_sighup(tuple(sighup)))
    data_app.peer_certificates = gateway.needs_peer_certificate
    proxy = Proxy(config, catalog, state, data_app, create_admin_app(state), gateway.authenticator,
                  gateway.own_access, tokens, events)
    return_freed_memory()
    return proxy


def observe_credentials(metrics: Metrics, credentials: CredentialStore) -> Metrics:
    credentials.on_refresh.append(metrics.credentials_refreshed)

    def expiry_timestamp() -> float:
        expires_at = credentials.status.expires_at
        return expires_at.timestamp() if expires_at is not None else 0.0

    metrics.credentials_expiry.set_function(expiry_timestamp)
    return metrics


def own_actions(config: ProxyConfig) -> tuple[str, ...]:
    """IAM actions of the proxy's own calls this config makes, beyond the served services'."""
    actions: tuple[str, ...] = ()
    if any(key.kms_key_id for key in config.tokens.keys):
        from proxy.tokens.keys import KMS_SIGNING_ACTIONS

        actions += KMS_SIGNING_ACTIONS
    if config.events.queue_url:
        from proxy.events.wiring import EVENTS_ACTIONS

        actions += EVENTS_ACTIONS
    return actions


def credential_source_for(config: ProxyConfig, env: Mapping[str, str]) -> tuple[CredentialSource, IdentityLookup]:
    """The configured credential source, and how to ask STS whose credentials they are."""
    profile = config.credentials.profile or env.get("AWS_PROFILE")
    region = default_region(config.region, env, profile)
    source = source_from_config(config.credentials, credential_chain_session(profile), region=region,
                                services=config.services, own_actions=own_actions(config))
    # Like the chain's session, the lookup reads the process environment, as an SDK would.
    return source, CallerIdentity(os.environ, profile, region)


def _credential_refresh(store: CredentialStore):  # type: ignore[no-untyped-def]
    async def refresh_in_background(_: object) -> AsyncIterator[None]:
        await store.start()  # raises ConfigError (exit code 2) for refused long-lived keys
        task = asyncio.create_task(store.run(), name="credential-refresh")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return refresh_in_background
