"""What a caller may ask for in a token, IVS's rules for it, and the JWT header and claims.

Both schemas follow AWS's documentation to the letter:
- playback tokens (private channels): "Generate and Sign IVS Playback Tokens",
  https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/private-channels-generate-tokens.html
  header {"alg": "ES384", "typ": "JWT"}; claims `aws:channel-arn`,
  `aws:access-control-allow-origin`, `aws:strict-origin-enforcement`, `aws:single-use-uuid`,
  `aws:viewer-id`, `aws:viewer-session-version`, `aws:maximum-resolution`, `exp`.
- participant tokens signed with a key pair: "Distribute Participant Tokens", "Creating
  Tokens with a Key Pair",
  https://docs.aws.amazon.com/ivs/latest/RealTimeUserGuide/getting-started-distribute-tokens.html
  header {"alg": "ES384", "typ": "JWT", "kid": <public key ARN>}; claims `exp`, `iat`, `jti`,
  `resource` (stage ARN), `topic` (stage id), `events_url`, `whip_url`, `user_id`,
  `attributes`, `capabilities` {allow_publish, allow_subscribe}, `version` "1.0".

Every rule is checked before anything is signed, and a request that breaks one gets a 400
naming the member and the rule, never quoting a value.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config import TOKEN_CAPABILITIES
from proxy.errors import RequestInvalid
from proxy.tokens.jws import ALGORITHM

# The ARN patterns of the IVS models (ChannelArn, StageArn).
CHANNEL_ARN = re.compile(r"arn:aws:ivs:[a-z0-9-]+:[0-9]+:channel/[a-zA-Z0-9-]+")
STAGE_ARN = re.compile(r"arn:aws:ivs:[a-z0-9-]+:[0-9]+:stage/[a-zA-Z0-9-]+")
ARN_MAX = 128

#: Playback page: with `aws:single-use-uuid` or `aws:viewer-id`, `exp` is at most 10 minutes away.
SHORT_LIFETIME_SECONDS = 600
#: Playback page: with strict origin enforcement, at most 5 origins.
STRICT_ORIGINS_MAX = 5
#: Playback page: a viewer id is at most 40 characters.
VIEWER_ID_MAX = 40
#: Playback page: the viewer session version is a signed 64-bit integer.
INT64 = (-(2**63), 2**63 - 1)
MAXIMUM_RESOLUTIONS = ("SD", "HD", "FULL_HD")
#: CreateParticipantToken's `duration` range in the ivs-realtime model (minutes; 14 days).
DURATION_MINUTES = (1, 20160)
#: The model's `userId` length limit.
USER_ID_MAX = 128
#: "The maximum length of this field is 1 KB total" (the model's `attributes`); counted as
#: the UTF-8 bytes of every key and value.
ATTRIBUTES_MAX_BYTES = 1024
PARTICIPANT_TOKEN_VERSION = "1.0"


@dataclass(frozen=True, slots=True)
class PlaybackRequest:
    channel_arn: str
    lifetime_seconds: int | None = None
    allowed_origins: tuple[str, ...] = ()
    strict_origin_enforcement: bool = False
    single_use: bool = False
    viewer_id: str | None = None
    viewer_session_version: int | None = None
    maximum_resolution: str | None = None

    @property
    def max_lifetime_seconds(self) -> int | None:
        """IVS's own cap on this token's lifetime (None: IVS sets none)."""
        return SHORT_LIFETIME_SECONDS if self.single_use or self.viewer_id is not None else None

    @property
    def subject(self) -> str | None:
        return self.viewer_id


@dataclass(frozen=True, slots=True)
class ParticipantRequest:
    stage_arn: str
    duration_minutes: int | None = None
    user_id: str | None = None
    capabilities: tuple[str, ...] | None = None  # None: not given (the caller's allowed set)
    attributes: Mapping[str, str] | None = None

    @property
    def subject(self) -> str | None:
        return self.user_id


def parse_playback(body: Mapping[str, Any]) -> PlaybackRequest:
    fields = _Fields(body, {"channelArn", "lifetimeSeconds", "allowedOrigins", "strictOriginEnforcement",
                            "singleUse", "viewerId", "viewerSessionVersion", "maximumResolution"})
    origins = fields.strings("allowedOrigins")
    for origin in origins:
        if not origin or "," in origin or origin != origin.strip():
            raise RequestInvalid("allowedOrigins: each origin must be non-empty, without commas or surrounding spaces")
    strict = fields.boolean("strictOriginEnforcement")
    if strict and not origins:
        raise RequestInvalid("strictOriginEnforcement needs allowedOrigins (it strengthens that restriction)")
    if strict and len(origins) > STRICT_ORIGINS_MAX:
        raise RequestInvalid(f"allowedOrigins: at most {STRICT_ORIGINS_MAX} origins with strictOriginEnforcement "
                             f"(IVS's limit), not {len(origins)}")
    viewer_id = fields.string("viewerId", 1, VIEWER_ID_MAX)
    version = fields.integer("viewerSessionVersion", *INT64)
    if version is not None and viewer_id is None:
        raise RequestInvalid("viewerSessionVersion needs viewerId (IVS: it does nothing on its own)")
    resolution = fields.string("maximumResolution", 1, 16)
    if resolution is not None and resolution not in MAXIMUM_RESOLUTIONS:
        raise RequestInvalid(f"maximumResolution must be one of {', '.join(MAXIMUM_RESOLUTIONS)}")
    request = PlaybackRequest(
        channel_arn=fields.arn("channelArn", CHANNEL_ARN, "channel"),
        lifetime_seconds=fields.integer("lifetimeSeconds", 1, 10 * 365 * 86400),
        allowed_origins=origins, strict_origin_enforcement=strict, single_use=fields.boolean("singleUse"),
        viewer_id=viewer_id, viewer_session_version=version, maximum_resolution=resolution,
    )
    limit = request.max_lifetime_seconds
    if limit is not None and request.lifetime_seconds is not None and request.lifetime_seconds > limit:
        raise RequestInvalid(f"lifetimeSeconds: at most {limit} with singleUse or viewerId (IVS's limit)")
    return request


def parse_participant(body: Mapping[str, Any]) -> ParticipantRequest:
    fields = _Fields(body, {"stageArn", "durationMinutes", "userId", "capabilities", "attributes"})
    capabilities = fields.strings("capabilities") if body.get("capabilities") is not None else None
    for capability in capabilities or ():
        if capability not in TOKEN_CAPABILITIES:
            raise RequestInvalid(f"capabilities: each must be one of {', '.join(TOKEN_CAPABILITIES)}")
    if capabilities is not None and len(set(capabilities)) != len(capabilities):
        raise RequestInvalid("capabilities: a capability is listed twice")
    return ParticipantRequest(
        stage_arn=fields.arn("stageArn", STAGE_ARN, "stage"),
        duration_minutes=fields.integer("durationMinutes", *DURATION_MINUTES),
        user_id=fields.string("userId", 0, USER_ID_MAX),
        capabilities=capabilities,
        attributes=fields.attributes("attributes"),
    )


@dataclass(frozen=True, slots=True)
class StageEndpoints:
    """What GetStage says of a stage that its tokens must carry."""

    events: str
    whip: str


def playback_token(request: PlaybackRequest, expires_at: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a playback token expiring at `expires_at` (Unix seconds)."""
    claims: dict[str, Any] = {"aws:channel-arn": request.channel_arn}
    if request.allowed_origins:
        claims["aws:access-control-allow-origin"] = ",".join(request.allowed_origins)
    if request.strict_origin_enforcement:
        claims["aws:strict-origin-enforcement"] = True
    if request.single_use:
        claims["aws:single-use-uuid"] = str(uuid.uuid4())
    if request.viewer_id is not None:
        claims["aws:viewer-id"] = request.viewer_id
    if request.viewer_session_version is not None:
        claims["aws:viewer-session-version"] = request.viewer_session_version
    if request.maximum_resolution is not None:
        claims["aws:maximum-resolution"] = request.maximum_resolution
    claims["exp"] = expires_at
    return {"alg": ALGORITHM, "typ": "JWT"}, claims


def participant_token(request: ParticipantRequest, endpoints: StageEndpoints, *, capabilities: tuple[str, ...],
                      key_arn: str, issued_at: int, expires_at: int,
                      participant_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a self-signed participant token; `kid` is the public key's ARN."""
    claims: dict[str, Any] = {
        "exp": expires_at,
        "iat": issued_at,
        "jti": participant_id,
        "resource": request.stage_arn,
        "topic": request.stage_arn.rsplit("/", 1)[1],
        "events_url": endpoints.events,
        "whip_url": endpoints.whip,
        "capabilities": {"allow_publish": "PUBLISH" in capabilities,
                         "allow_subscribe": "SUBSCRIBE" in capabilities},
        "version": PARTICIPANT_TOKEN_VERSION,
    }
    if request.user_id is not None:
        claims["user_id"] = request.user_id
    if request.attributes is not None:
        claims["attributes"] = dict(request.attributes)
    return {"alg": ALGORITHM, "typ": "JWT", "kid": key_arn}, claims


def new_participant_id() -> str:
    """A `jti`: 24 characters of [A-Za-z0-9_-], unique per token."""
    return secrets.token_urlsafe(18)


class _Fields:
    """The members of a request body, each read once with its type and range checked."""

    def __init__(self, body: Mapping[str, Any], known: set[str]) -> None:
        unknown = sorted(set(body) - known)
        if unknown:
            raise RequestInvalid(f"unknown member {unknown[0]!r}; known: {', '.join(sorted(known))}")
        self._body = body

    def arn(self, name: str, pattern: re.Pattern[str], what: str) -> str:
        value = self._body.get(name)
        if value is None:
            raise RequestInvalid(f"{name} is required")
        if not isinstance(value, str) or len(value) > ARN_MAX or not pattern.fullmatch(value):
            raise RequestInvalid(f"{name} must be an IVS {what} ARN (arn:aws:ivs:REGION:ACCOUNT:{what}/ID)")
        return value

    def string(self, name: str, shortest: int, longest: int) -> str | None:
        value = self._body.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not shortest <= len(value) <= longest:
            raise RequestInvalid(f"{name} must be a string of {shortest} to {longest} characters")
        return value

    def strings(self, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self._body.get(name)
        if value is None:
            return default
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RequestInvalid(f"{name} must be a list of strings")
        return tuple(value)

    def boolean(self, name: str) -> bool:
        value = self._body.get(name, False)
        if not isinstance(value, bool):
            raise RequestInvalid(f"{name} must be true or false")
        return value

    def integer(self, name: str, lowest: int, highest: int) -> int | None:
        value = self._body.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
            raise RequestInvalid(f"{name} must be an integer from {lowest} to {highest}")
        return value

    def attributes(self, name: str) -> dict[str, str] | None:
        value = self._body.get(name)
        if value is None:
            return None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise RequestInvalid(f"{name} must be an object of string values")
        size = sum(len(k.encode()) + len(v.encode()) for k, v in value.items())
        if size > ATTRIBUTES_MAX_BYTES:
            raise RequestInvalid(f"{name}: at most {ATTRIBUTES_MAX_BYTES} bytes of keys and values in total "
                                 f"(IVS's limit), not {size}")
        return dict(value)
