"""Minting one token: authorise, cap, look the resource up, sign, audit, count.

The order matters. Nothing is looked up or signed for a caller the policy refuses, and
nothing is signed past a rule or a cap; a token exists only once its signature came back,
and only then is it audited as minted. A failure at any step (KMS unavailable, GetStage
refused) mints nothing and is counted by kind and outcome.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.aws.json_api import AwsCallFailed, AwsRestJsonClient
from proxy.config import TokenCaps, TokensConfig
from proxy.errors import ProxyError
from proxy.gateway.audit import AUDIT_LOGGER
from proxy.gateway.identity import Caller
from proxy.gateway.own_access import OwnAccess, own_operation
from proxy.observe.metrics import Metrics
from proxy.policy import AccessDenied
from proxy.tokens import claims as ivs
from proxy.tokens.jws import compact, signing_input
from proxy.tokens.keys import KeyRing

log = structlog.get_logger("ivs_proxy")

PLAYBACK = own_operation("MintPlaybackToken")
PARTICIPANT = own_operation("MintParticipantToken")
#: Cached GetStage / GetChannel answers, at most this many (the oldest go first).
CACHE_ENTRIES = 1024
#: GetChannel only adds the playback URL to an answer that is complete without it: a slow
#: IVS must not hold a token back for the whole upstream timeout.
PLAYBACK_URL_TIMEOUT_SECONDS = 2.0


class ResourceNotFound(ProxyError):
    status = 404
    error_type = "ResourceNotFoundException"
    reason = "resource_not_found"


class LookupFailed(ProxyError):
    status = 502
    error_type = "BadGatewayException"
    reason = "lookup_failed"


class ResourceCache:
    """Answers of one Get* operation by ARN, each kept at most `max_age` seconds."""

    def __init__(self, client: AwsRestJsonClient, operation: str, max_age: float, *,
                 timeout: float | None = None, remember_failures: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._operation = operation
        self._timeout = timeout
        self._max_age = max_age
        # For a lookup whose answer is optional: a role without the permission is asked once
        # per max_age, not once per token (and logged as often).
        self._remember_failures = remember_failures
        self._clock = clock
        self._entries: dict[str, tuple[float, dict[str, Any] | ProxyError]] = {}

    async def get(self, arn: str) -> dict[str, Any]:
        now = self._clock()
        cached = self._entries.get(arn)
        if cached is not None and now - cached[0] < self._max_age:
            if isinstance(cached[1], ProxyError):
                raise cached[1]
            return cached[1]
        try:
            answer: dict[str, Any] | ProxyError = await self._client.call(
                self._operation, {"arn": arn}, region=arn.split(":")[3], timeout=self._timeout)
        except AwsCallFailed as exc:
            answer = self._refusal(arn, exc)
        except ProxyError as exc:
            answer = exc
        if not isinstance(answer, ProxyError) or self._remember_failures:
            self._remember(arn, now, answer)
        if isinstance(answer, ProxyError):
            raise answer
        return answer

    def _refusal(self, arn: str, exc: AwsCallFailed) -> ProxyError:
        if exc.code in ("ResourceNotFoundException", "NotFoundException"):
            return ResourceNotFound(f"{self._client.service} {self._operation}: {arn} does not exist")
        return LookupFailed(f"{self._client.service} refused {self._operation} for {arn} ({exc.code})")

    def _remember(self, arn: str, now: float, answer: dict[str, Any] | ProxyError) -> None:
        self._entries.pop(arn, None)
        self._entries[arn] = (now, answer)
        while len(self._entries) > CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    expires_at: int  # Unix seconds
    key_arn: str

    @property
    def expiration_time(self) -> str:
        return datetime.datetime.fromtimestamp(self.expires_at, datetime.UTC).isoformat().replace("+00:00", "Z")


class Minter:
    """Mints one token per call, for a caller already authenticated; raises ProxyErrors."""

    def __init__(self, config: TokensConfig, keys: KeyRing, access: OwnAccess, metrics: Metrics, *,
                 stages: ResourceCache | None = None, channels: ResourceCache | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self.keys = keys
        self._access = access
        self._metrics = metrics
        self._stages = stages
        self._channels = channels
        self._clock = clock

    async def playback(self, caller: Caller, request: ivs.PlaybackRequest) -> dict[str, Any]:
        """The answer to a MintPlaybackToken request: token, expirationTime, playbackUrl when known."""
        return await self._counted("playback", self._playback(caller, request))

    async def participant(self, caller: Caller, request: ivs.ParticipantRequest) -> dict[str, Any]:
        """The answer to a MintParticipantToken request: token, participantId, expirationTime."""
        return await self._counted("participant", self._participant(caller, request))

    @contextlib.contextmanager
    def counting_refusals(self, kind: str) -> Iterator[None]:
        """Count a ProxyError raised inside (reading the request, minting) by its status."""
        try:
            yield
        except ProxyError as error:
            self._metrics.tokens_minted.labels(kind, "refused" if error.status < 500 else "failed").inc()
            raise

    async def _counted(self, kind: str, minting: Awaitable[dict[str, Any]]) -> dict[str, Any]:
        with self.counting_refusals(kind):
            answer = await minting
        self._metrics.tokens_minted.labels(kind, "minted").inc()
        return answer

    async def _playback(self, caller: Caller, request: ivs.PlaybackRequest) -> dict[str, Any]:
        arn = request.channel_arn
        self._access.authorize(caller, PLAYBACK, [arn], arn.split(":")[3])
        caps = self._config.caps(caller.name)
        lifetime = _lifetime(caller, caps, request.lifetime_seconds, self._config.playback_lifetime_seconds,
                             request.max_lifetime_seconds)
        key = self.keys.for_resource("playback", arn)
        playback_url = await self._playback_url(arn)
        header, payload = ivs.playback_token(request, int(self._clock()) + lifetime)
        minted = await self._sign(header, payload, key.config.arn, key.sign)
        self._audit(caller, "playback", arn, request.subject, minted)
        answer: dict[str, Any] = {"token": minted.token, "expirationTime": minted.expiration_time}
        if playback_url:
            answer["playbackUrl"] = f"{playback_url}{'&' if '?' in playback_url else '?'}token={minted.token}"
        return answer

    async def _participant(self, caller: Caller, request: ivs.ParticipantRequest) -> dict[str, Any]:
        arn = request.stage_arn
        self._access.authorize(caller, PARTICIPANT, [arn], arn.split(":")[3])
        caps = self._config.caps(caller.name)
        capabilities = request.capabilities if request.capabilities is not None else caps.capabilities
        refused = sorted(set(capabilities) - set(caps.capabilities))
        if refused:
            raise AccessDenied(f"caller {caller.name!r} may not mint participant tokens with {', '.join(refused)} "
                               f"(tokens.callers.{caller.name}.capabilities)")
        asked = request.duration_minutes * 60 if request.duration_minutes is not None else None
        lifetime = _lifetime(caller, caps, asked, self._config.participant_duration_minutes * 60,
                             ivs.DURATION_MINUTES[1] * 60)
        key = self.keys.for_resource("participant", arn)
        endpoints = await self._stage_endpoints(arn)
        now = int(self._clock())
        participant_id = ivs.new_participant_id()
        header, payload = ivs.participant_token(request, endpoints, capabilities=capabilities, key_arn=key.config.arn,
                                                issued_at=now, expires_at=now + lifetime,
                                                participant_id=participant_id)
        minted = await self._sign(header, payload, key.config.arn, key.sign)
        self._audit(caller, "participant", arn, request.subject, minted, participant_id=participant_id)
        return {"token": minted.token, "participantId": participant_id, "expirationTime": minted.expiration_time,
                "capabilities": list(capabilities)}

    async def _stage_endpoints(self, arn: str) -> ivs.StageEndpoints:
        if self._stages is None:
            raise LookupFailed("ivs-realtime is not served by this proxy, so a stage's endpoints cannot be looked up")
        endpoints = (await self._stages.get(arn)).get("stage", {}).get("endpoints", {})
        if not (isinstance(endpoints.get("events"), str) and isinstance(endpoints.get("whip"), str)):
            raise LookupFailed(f"GetStage named no events and whip endpoints for {arn}")
        return ivs.StageEndpoints(endpoints["events"], endpoints["whip"])

    async def _playback_url(self, arn: str) -> str | None:
        """The channel's playback URL when GetChannel tells it; the token does not need it."""
        if self._channels is None:
            return None
        try:
            url = (await self._channels.get(arn)).get("channel", {}).get("playbackUrl")
        except ProxyError as exc:  # unreachable, refused (no ivs:GetChannel), not found: mint without it
            log.warning("playback_url_unknown", channel=arn, reason=exc.reason)
            return None
        return url if isinstance(url, str) and url.startswith("https://") else None

    @staticmethod
    async def _sign(header: dict[str, Any], payload: dict[str, Any], key_arn: str,
                    sign: Callable[[bytes], Awaitable[bytes]]) -> Minted:
        signed = signing_input(header, payload)
        return Minted(compact(signed, await sign(signed)), int(payload["exp"]), key_arn)

    @staticmethod
    def _audit(caller: Caller, kind: str, resource: str, subject: str | None, minted: Minted,
               **extra: str) -> None:
        # Never the token: who asked, for what, until when, and with which key.
        structlog.get_logger(AUDIT_LOGGER).bind(logger=AUDIT_LOGGER).info(
            "token_minted", caller=caller.name, method=caller.method, kind=kind, resource=resource,
            subject=subject, expires_at=minted.expiration_time, key=minted.key_arn, **extra)


def _lifetime(caller: Caller, caps: TokenCaps, asked: int | None, default: int, ivs_max: int | None) -> int:
    """Seconds the token lives: what was asked (refused past the caller's cap), else the
    default shortened to both caps."""
    cap = caps.max_lifetime_seconds
    if asked is not None:
        if cap is not None and asked > cap:
            raise AccessDenied(f"caller {caller.name!r} may mint tokens living at most {cap} seconds "
                               f"(tokens.callers.{caller.name}.max_lifetime_seconds), not {asked}")
        return asked
    return min([default, *(limit for limit in (cap, ivs_max) if limit is not None)])
