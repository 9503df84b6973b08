"""Answers built from an operation's output shape in botocore's model, for the demo's
stand-in upstream (tests/support/standin.py).

Every member the shape has is filled with a value shaped like a real one: ARNs of the
resource type the pattern names, 12-character ids, enums from the model, numbers inside
their range, timestamps in the member's wire format. What the request named (a channel's
`arn`, a stage's `name`, a room's `tags`) comes back where the output has a member of that
name, so `GetStage(arn=X)` answers a stage whose arn is X. Listings end after one page
(no `nextToken`) and batch calls report no errors, so paginators and callers terminate.

The answers are stateless: a created channel is not listed afterwards. The stand-in is a
demonstration of the proxy's path, not an emulator; moto keeps the operations it has.
"""

from __future__ import annotations

import datetime
import json
import re
import zlib
from collections.abc import Mapping
from typing import Any

from botocore.model import OperationModel, Shape

ACCOUNT = "123456789012"
#: Marks every answer body; SDKs ignore members their model does not name.
LABEL_MEMBER = "standIn"
LABEL = "answered by the ivs-proxy demo's local stand-in upstream (tests/support/standin.py), not by AWS"

#: Members never filled: a next page (a paginator would never stop) and batch errors.
_LEFT_EMPTY = {"nextToken": None, "errors": []}

_HEADER_VALUES = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "x-amzn-RequestId",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

_PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE\n-----END PUBLIC KEY-----"
#: Plausible numbers where the range alone would give a strange one (a 2-pixel video).
_NUMBERS = {
    "Width": 1280, "Height": 720, "Framerate": 30.0, "Bitrate": 2_500_000,
    "RoomMaxMessageLength": 500, "RoomMaxMessageRatePerSecond": 10,
    "ParticipantTokenDurationMinutes": 720, "ThumbnailIntervalSeconds": 60,
}


def _resource_id(seed: str, length: int = 12) -> str:
    """A stable, id-like string (the same request gets the same id)."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    value, out = zlib.crc32(seed.encode()) or 1, []
    while len(out) < length:
        value = (value * 1103515245 + 12345) % 2**31
        out.append(alphabet[value % len(alphabet)])
    return "".join(out)


class AnswerBuilder:
    """One answer: the operation's output shape filled for `region`, echoing `params`."""

    def __init__(self, operation: OperationModel, region: str, params: Mapping[str, Any]) -> None:
        self._operation = operation
        self._region = region
        self._params = params
        self._now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers bound by the output shape, and the JSON body."""
        status = int(self._operation.http.get("responseCode", 200))
        shape = self._operation.output_shape
        if shape is None or status == 204:
            return status, {}, b""
        headers, body = {}, {}
        for name, member in shape.members.items():
            location = member.serialization.get("location")
            if location == "header":
                header = member.serialization["name"]
                headers[header] = _HEADER_VALUES.get(header, "demo")
            elif location is None and name not in _LEFT_EMPTY:
                body[name] = self.value(member, name)
            elif location is None and _LEFT_EMPTY[name] is not None:
                body[name] = _LEFT_EMPTY[name]
        body[LABEL_MEMBER] = LABEL
        return status, headers, json.dumps(body).encode()

    def value(self, shape: Shape, name: str, depth: int = 0) -> Any:
        echoed = self._echo(shape, name)
        if echoed is not None:
            return echoed
        kind = shape.type_name
        if kind == "structure":
            members = shape.members
            if shape.metadata.get("union"):
                first = next(iter(members))
                return {first: self.value(members[first], first, depth + 1)}
            return {
                member_name: self.value(member, member_name, depth + 1)
                for member_name, member in members.items()
                if member_name not in _LEFT_EMPTY and (depth < 4 or member_name in shape.required_members)
            }
        if kind == "list":
            count = max(int(shape.metadata.get("min", 1)), 1)
            return [self.value(shape.member, name, depth + 1) for _ in range(count)]
        if kind == "map":
            return {"team": self.value(shape.value, "team", depth + 1)}
        if kind == "string":
            return self.string(shape, name)
        if kind in ("integer", "long"):
            return int(self._number(shape, 10))
        if kind in ("float", "double"):
            return float(self._number(shape, 10.0))
        if kind == "boolean":
            return False
        if kind == "timestamp":
            return self._timestamp(shape, name)
        raise NotImplementedError(f"{shape.name}: {kind}")

    def _echo(self, shape: Shape, name: str) -> Any:
        """What the request sent under this member's name, if it fits the output shape."""
        sent = self._params.get(name)
        if sent is None or shape.type_name not in ("string", "integer", "long", "boolean", "map", "list"):
            return None
        if shape.type_name == "string":
            return sent if isinstance(sent, str) and string_fits(shape, sent) else None
        expected = {"integer": int, "long": int, "boolean": bool, "map": dict, "list": list}[shape.type_name]
        if shape.type_name == "list" and not all(isinstance(item, str) for item in sent):
            return None
        return sent if isinstance(sent, expected) else None

    def _number(self, shape: Shape, default: float) -> float:
        low = shape.metadata.get("min", 0)
        high = shape.metadata.get("max", 10**9)
        return min(max(_NUMBERS.get(shape.name, default), low), high)

    def _timestamp(self, shape: Shape, name: str) -> Any:
        # Tokens and sessions expire later (a participant token's default lifetime is 12 h);
        # everything else was created or changed now.
        when = self._now + datetime.timedelta(hours=12) if "xpir" in name else self._now
        if shape.serialization.get("timestampFormat") == "iso8601":
            return when.strftime("%Y-%m-%dT%H:%M:%SZ")
        return int(when.timestamp())

    def string(self, shape: Shape, name: str) -> str:
        metadata = shape.metadata
        if "enum" in metadata:
            return str(metadata["enum"][0])
        pattern = metadata.get("pattern", "")
        seed = f"{self._operation.name}/{shape.name}/{json.dumps(self._params, sort_keys=True, default=str)}"
        special = self._special_string(shape.name, seed)
        if shape.name == "StageEndpoint":
            special = self._stage_endpoint(name, seed)
        if special is not None:
            return special
        if "arn:aws:" in pattern:
            return self._arn(pattern, seed)
        low, high = int(metadata.get("min", 0)), int(metadata.get("max", 128))
        if pattern.startswith("st-"):
            return "st-" + _resource_id(seed, low - 3)
        if low == high and "[a-zA-Z0-9]+" in pattern:
            return _resource_id(seed, low)
        if "a-z0-9-." in pattern:
            return "ivs-demo-recordings"
        text = _plain_text(name, shape)
        return (text + "x" * max(low - len(text), 0))[:high]

    def _special_string(self, shape_name: str, seed: str) -> str | None:
        region, key = self._region, _resource_id(seed, 12)
        values = {
            "IngestEndpoint": f"{key.lower()}.global-contribute.live-video.net",
            "PlaybackURL": f"https://{key.lower()}.{region}.playback.live-video.net/api/video/v1/"
                           f"{region}.{ACCOUNT}.channel.{key}.m3u8",
            "SrtEndpoint": f"{key.lower()}.srt.live-video.net",
            "SrtPassphrase": _resource_id(seed + "srt", 32),
            "StreamKeyValue": f"sk_{region}_{_resource_id(seed + 'sk', 30)}",
            "StreamKey": f"rt_{ACCOUNT}_{region}_{key}_{_resource_id(seed + 'sk', 30)}",
            "ParticipantTokenString": "eyJhbGciOiJLTVMiLCJ0eXAiOiJKV1QifQ." + _resource_id(seed + "token", 64),
            "ChatToken": "AQICAHg" + _resource_id(seed + "chat", 80),
            "PlaybackKeyPairFingerprint": _fingerprint(seed),
            "PublicKeyFingerprint": _fingerprint(seed),
            "PublicKeyMaterial": _PUBLIC_KEY,
            "PlaybackRestrictionPolicyAllowedCountry": "US",
            "PlaybackRestrictionPolicyAllowedOrigin": "https://www.example.com",
            "LogGroupName": "/aws/ivschat/demo",
            "DeliveryStreamName": "ivschat-demo",
            "LambdaArn": f"arn:aws:lambda:{region}:{ACCOUNT}:function:review-messages",
            "MediaTailorPlaybackConfigurationArn": f"arn:aws:mediatailor:{region}:{ACCOUNT}:playbackConfiguration/ads",
        }
        return values.get(shape_name)

    def _stage_endpoint(self, protocol: str, seed: str) -> str:
        key = _resource_id(seed, 12).lower()
        return {
            "events": "wss://global.events.live-video.net",
            "whip": f"https://{key}.global-bm.whip.live-video.net",
            "rtmp": f"rtmp://{key}.global-contribute-staging.live-video.net/app/",
            "rtmps": f"rtmps://{key}.global-contribute-staging.live-video.net:443/app/",
        }.get(protocol, "wss://global.events.live-video.net")

    def _arn(self, pattern: str, seed: str) -> str:
        service = "ivschat" if "ivschat" in pattern else "ivs"
        kind = re.search(r":([a-z][a-z-]+)/", pattern)
        resource = kind.group(1) if kind else "channel"
        return f"arn:aws:{service}:{self._region}:{ACCOUNT}:{resource}/{_resource_id(seed)}"


def _fingerprint(seed: str) -> str:
    hex_digits = f"{zlib.crc32(seed.encode()):08x}{zlib.crc32(seed[::-1].encode()):08x}"
    return ":".join(hex_digits[i:i + 2] for i in range(0, 16, 2))


def _plain_text(name: str, shape: Shape) -> str:
    """A name-like value for a free-form string member: `demo-<member>`."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
    text = "demo-" + re.sub(r"[^a-z0-9-]", "", words)
    pattern = shape.metadata.get("pattern")
    return text if pattern is None or string_fits(shape, text) else "demo"


def string_fits(shape: Shape, value: str) -> bool:
    """`value` is within the shape's length limits and matches its pattern (AWS patterns
    are searched, not anchored; the Unicode classes `\\p{..}` are read as `\\w` and `\\s`)."""
    metadata = shape.metadata
    if "enum" in metadata:
        return value in metadata["enum"]
    if not int(metadata.get("min", 0)) <= len(value) <= int(metadata.get("max", 10**6)):
        return False
    pattern = metadata.get("pattern")
    if pattern is None:
        return True
    pattern = pattern.replace(r"\p{L}", r"\w").replace(r"\p{N}", r"\d").replace(r"\p{Z}", r"\s")
    return re.search(pattern, value) is not None
