"""The benchmark's requests and the upstream's canned IVS answers.

Request bodies use the member names of botocore's ivs model (the proxy validates every
body against it, so a wrong name would benchmark the 400 path instead of a forward).
Responses are shaped like real IVS answers (CreateChannel: channel + streamKey;
ListChannels: a page of ChannelSummary objects padded to 64 KiB).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "123456789012"
REGION = "us-west-2"
CHANNEL_ARN = f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/AbCdEfGhIjKl"
REQUEST_ID = "8c5bd0b2-6f7e-4c1a-9d3e-2b7f0a1c9e44"
LIST_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Scenario:
    name: str  # the operation
    path: str
    body: bytes
    expect_status: int
    small: bool  # counts for the ">= 5k req/s for small requests" target


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(", ", ": ")).encode()


PUT_METADATA = Scenario(
    "PutMetadata",
    "/PutMetadata",
    _dumps({"channelArn": CHANNEL_ARN, "metadata": json.dumps({"score": 1})}),
    204,
    small=True,
)
CREATE_CHANNEL = Scenario(
    "CreateChannel",
    "/CreateChannel",
    _dumps({
        "name": "bench-channel-01",
        "latencyMode": "LOW",
        "type": "STANDARD",
        "tags": {"team": "video", "env": "bench", "cost-center": "1234"},
    }),
    200,
    small=True,
)
LIST_CHANNELS = Scenario("ListChannels", "/ListChannels", b"{}", 200, small=False)

SCENARIOS = (PUT_METADATA, CREATE_CHANNEL, LIST_CHANNELS)


def _channel(index: int) -> dict[str, object]:
    channel_id = f"Ch{index:010d}"
    return {
        "arn": f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/{channel_id}",
        "name": f"bench-channel-{index:05d}",
        "latencyMode": "LOW",
        "authorized": False,
        "recordingConfigurationArn": "",
        "tags": {"team": "video", "env": "bench"},
        "insecureIngest": False,
        "type": "STANDARD",
        "preset": "",
        "playbackRestrictionPolicyArn": "",
    }


def create_channel_response() -> bytes:
    channel_id = "AbCdEfGhIjKl"
    ingest = "a1b2c3d4e5f6"
    body = {
        "channel": {
            "arn": CHANNEL_ARN,
            "name": "bench-channel-01",
            "latencyMode": "LOW",
            "type": "STANDARD",
            "recordingConfigurationArn": "",
            "ingestEndpoint": f"{ingest}.global-contribute.live-video.net",
            "playbackUrl": (
                f"https://{ingest}.{REGION}.playback.live-video.net/api/video/v1/"
                f"{REGION}.{ACCOUNT}.channel.{channel_id}.m3u8"
            ),
            "authorized": False,
            "tags": {"team": "video", "env": "bench", "cost-center": "1234"},
            "insecureIngest": False,
            "preset": "",
            "srt": {"endpoint": f"{ingest}.srt.live-video.net", "passphrase": "q7Vh2nXk9LmP4sRt8wYz3bCd6fGj1kN5"},
            "playbackRestrictionPolicyArn": "",
            "multitrackInputConfiguration": {"enabled": False, "policy": "ALLOW", "maximumResolution": "FULL_HD"},
            "containerFormat": "TS",
        },
        "streamKey": {
            "arn": f"arn:aws:ivs:{REGION}:{ACCOUNT}:stream-key/g1H2I3j4k5L6",
            "value": "sk_us-west-2_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
            "channelArn": CHANNEL_ARN,
            "tags": {"team": "video", "env": "bench", "cost-center": "1234"},
        },
    }
    data = json.dumps(body, separators=(",", ":")).encode()
    # nginx's `return` text interpolates $variables and is single-quoted in the config.
    assert b"$" not in data and b"'" not in data and b"\\" not in data
    return data


def list_channels_response(size: int = LIST_RESPONSE_BYTES) -> bytes:
    """A ListChannels page of exactly `size` bytes (padded through nextToken)."""
    channels: list[dict[str, object]] = []
    token = ""
    while True:
        candidate = channels + [_channel(len(channels))]
        data = json.dumps({"channels": candidate, "nextToken": token}, separators=(",", ":")).encode()
        if len(data) > size - 64:
            break
        channels = candidate
    base = len(json.dumps({"channels": channels, "nextToken": ""}, separators=(",", ":")).encode())
    token = "A" * (size - base)
    data = json.dumps({"channels": channels, "nextToken": token}, separators=(",", ":")).encode()
    assert len(data) == size, len(data)
    return data


def write_docroot(directory: Path) -> dict[str, Path]:
    """Response files for the upstreams and request-body files for the load generators."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "create_channel_response": directory / "CreateChannel.json",
        "list_channels_response": directory / "ListChannels.json",
    }
    files["create_channel_response"].write_bytes(create_channel_response())
    files["list_channels_response"].write_bytes(list_channels_response())
    for scenario in SCENARIOS:
        path = directory / f"{scenario.name}.request.json"
        path.write_bytes(scenario.body)
        files[f"{scenario.name}_request"] = path
    return files
