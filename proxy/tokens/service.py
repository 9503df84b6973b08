"""Wiring the token minter from config: keys, their KMS client, the resource lookups.

The proxy's own calls (KMS Sign, GetStage, GetChannel) use its credentials and signer,
but an `Upstream` of their own: a slow KMS must not hold the hot path's connections.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from proxy.aws.credentials import CredentialStore
from proxy.aws.endpoints import EndpointTable
from proxy.aws.json_api import AwsJsonClient, AwsRestJsonClient
from proxy.aws.upstream import Upstream
from proxy.config import ProxyConfig
from proxy.errors import ConfigError
from proxy.gateway.own_access import OwnAccess
from proxy.observe.metrics import Metrics

# `minting_served` is asked by every proxy's wiring; the minter itself (keys, claims, JWS)
# is imported by `build_token_service`, when a config holds keys.
if TYPE_CHECKING:
    from proxy.tokens.minting import Minter

log = structlog.get_logger("ivs_proxy")

#: As proxy/gateway/wiring.py: an app context that needs nothing of the application.
AppContext = Callable[[object], AsyncGenerator[None, None]]


def minting_served(config: ProxyConfig) -> bool:
    """A gateway mints when it holds keys; a sidecar only when also told to."""
    return bool(config.tokens.keys) and (config.mode == "gateway" or config.tokens.sidecar_minting)


@dataclass
class TokenService:
    minter: Minter
    upstream: Upstream
    contexts: list[AppContext] = field(default_factory=list)

    def reload_keys(self) -> None:
        """SIGHUP: re-read the PEM key files; a bad file keeps the key already loaded."""
        try:
            count = self.minter.keys.reload()
        except ConfigError as exc:
            log.error("token_keys_reload_failed", error=str(exc))
            return
        log.info("token_keys_reloaded", keys=count)


def build_token_service(config: ProxyConfig, env: Mapping[str, str], *, endpoints: EndpointTable,
                        credentials: CredentialStore, access: OwnAccess, metrics: Metrics,
                        ca_bundle: str | None) -> TokenService:
    """Raises ConfigError for an unreadable or wrong PEM key; KMS keys are checked when the
    application starts (`contexts`), once credentials are loaded."""
    from proxy.tokens.keys import KeyRing, KmsKey, PemKey, SigningKey, kms_region
    from proxy.tokens.minting import PLAYBACK_URL_TIMEOUT_SECONDS, Minter, ResourceCache

    tokens = config.tokens
    profile = config.credentials.profile or env.get("AWS_PROFILE")
    upstream = Upstream(config.upstream, ca_bundle=ca_bundle)
    kms_keys = [key for key in tokens.keys if key.kms_key_id is not None]
    kms = None
    if kms_keys:
        regions = sorted({kms_region(key) for key in kms_keys})
        kms = AwsJsonClient("kms", EndpointTable.build(("kms",), {"kms": tuple(regions)}, env, profile),
                            credentials, upstream)
    keys: list[SigningKey] = [PemKey(key) if kms is None or key.kms_key_id is None else KmsKey(key, kms)
                              for key in tokens.keys]
    ring = KeyRing(keys)
    stages = channels = realtime = None
    if "ivs-realtime" in config.services:
        realtime = AwsRestJsonClient("ivs-realtime", endpoints, credentials, upstream)
        stages = ResourceCache(realtime, "GetStage", tokens.stage_cache_seconds)
    if "ivs" in config.services:
        channels = ResourceCache(AwsRestJsonClient("ivs", endpoints, credentials, upstream), "GetChannel",
                                 tokens.stage_cache_seconds, timeout=PLAYBACK_URL_TIMEOUT_SECONDS,
                                 remember_failures=True)
    service = TokenService(Minter(tokens, ring, access, metrics, stages=stages, channels=channels), upstream)

    async def own_upstream_and_checked_keys(_: object) -> AsyncGenerator[None, None]:
        await upstream.start()
        try:
            await ring.check(realtime)  # ConfigError: exit 2, before the listener takes traffic
            yield
        finally:
            await upstream.close()

    service.contexts.append(own_upstream_and_checked_keys)
    return service
