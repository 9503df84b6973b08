"""Realistic, valid inputs for any IVS operation, built from the model's shapes.

Only required members are filled, with values shaped like real ones (ARNs of the right
resource type, 12-character ids, PEM keys), so every operation's request is one AWS would
accept in form.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.model import Shape

REGION = "us-west-2"
ACCOUNT = "123456789012"

_SPECIAL_STRINGS = {
    "StreamId": "st-1A2b3C4d5E6f7G8h9I0jKlMn",
    "StageSessionId": "st-1A2b3C4d5E6fG",
    "PublicKeyMaterial": "-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE\n-----END PUBLIC KEY-----",
    "StreamKey": "rt_123456789012_us-west-2_AbCdEfGhIjKl_sk_secret",
    "PlaybackRestrictionPolicyAllowedCountry": "US",
}


def example_arn(shape: Shape) -> str:
    pattern = shape.metadata.get("pattern", "")
    service = "ivschat" if "ivschat" in pattern else "ivs"
    if "lambda" in pattern:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:review-messages"
    if "mediatailor" in pattern:
        return f"arn:aws:mediatailor:{REGION}:{ACCOUNT}:playbackConfiguration/ads"
    kind = re.search(r":([a-z][a-z-]+)/", pattern)
    resource_type = kind.group(1) if kind else ("room" if service == "ivschat" else "channel")
    return f"arn:aws:{service}:{REGION}:{ACCOUNT}:{resource_type}/AbCdEfGhIjKl"


def example_value(shape: Shape, depth: int = 0) -> Any:
    kind = shape.type_name
    if kind == "structure":
        members = shape.members
        if shape.metadata.get("union"):
            name = next(iter(members))
            return {name: example_value(members[name], depth + 1)}
        required = shape.metadata.get("required", [])
        return {
            name: example_value(members[name], depth + 1)
            for name in required
            if members[name].serialization.get("location") is None
        }
    if kind == "list":
        count = max(shape.metadata.get("min", 1), 1)
        return [example_value(shape.member, depth + 1) for _ in range(count)]
    if kind == "map":
        return {"team": example_value(shape.value, depth + 1)}
    if kind == "string":
        return example_string(shape)
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return float(shape.metadata.get("min", 1))
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return 1767225600
    raise NotImplementedError(kind)


def example_string(shape: Shape) -> str:
    if "enum" in shape.metadata:
        return str(shape.metadata["enum"][0])
    if shape.name in _SPECIAL_STRINGS:
        return _SPECIAL_STRINGS[shape.name]
    pattern = shape.metadata.get("pattern", "")
    if shape.name.endswith("Arn") or shape.name.endswith("Identifier") or "arn:" in pattern:
        return example_arn(shape)
    low = int(shape.metadata.get("min", 1))
    if "a-z0-9-." in pattern:  # bucket names
        return "ivs-recordings"
    if "[a-zA-Z0-9]+" in pattern and low == 12:
        return "AbCdEfGhIjKl"
    text = "example-" + shape.name.lower()
    text = re.sub(r"[^a-z0-9-]", "", text)
    high = int(shape.metadata.get("max", max(low, len(text))))
    if len(text) < low:
        text = text + "x" * (low - len(text))
    return text[:high]


def example_uri_and_query(shape: Shape) -> dict[str, Any]:
    """The required members that live in the path or query string."""
    params = {}
    for name in shape.metadata.get("required", []):
        member = shape.members[name]
        if member.serialization.get("location") in ("uri", "querystring"):
            params[name] = example_value(member)
    return params
