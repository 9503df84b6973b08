"""Gateway-mode helpers: two teams, their credentials and policies, signed raw requests,
and captured log lines (access and audit)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from proxy.app import Proxy, build_proxy
from proxy.aws.credentials import Clock, utc_now
from proxy.config import load_config
from proxy.observe.logs import configure_logging
from tests.support.inprocess import StaticSource

REGION = "us-west-2"
ACCOUNT = "123456789012"


def channel(name: str, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:ivs:{region}:{account}:channel/{name}"


@dataclass(frozen=True)
class Team:
    name: str
    access_key_id: str
    secret: str = field(repr=False)
    token: str = field(repr=False)

    @property
    def secret_env(self) -> str:
        return f"SECRET_{self.name.upper().replace('-', '_')}"

    @property
    def token_digest(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()


VIDEO = Team("video-team", "GWVIDEOTEAM000000001", "video-internal-secret-0123456789", "video-token-AbCdEf0123456789")
CHAT = Team("chat-team", "GWCHATTEAM0000000001", "chat-internal-secret-0123456789", "chat-token-ZyXwVu9876543210")
TEAMS = (VIDEO, CHAT)

#: The worked example of docs/running-a-gateway.md's "Shared gateway" section: video may only PutMetadata on its own
#: channels; chat reads channels and runs its rooms, never touching video's channels.
POLICY: dict[str, Any] = {
    "video-team": {"Statement": [
        {"Sid": "PutMetadataOnOwnChannels", "Effect": "Allow", "Action": "ivs:PutMetadata",
         "Resource": [channel("VideoMain001"), channel("VideoBackup01")]},
    ]},
    "chat-team": {"Statement": [
        {"Sid": "ReadChannels", "Effect": "Allow", "Action": ["ivs:GetChannel", "ivs:ListChannels",
                                                              "ivs:BatchGetChannel"], "Resource": "*"},
        {"Sid": "RunChatRooms", "Effect": "Allow", "Action": "ivschat:*",
         "Resource": f"arn:aws:ivschat:{REGION}:{ACCOUNT}:room/*"},
        {"Sid": "ListRooms", "Effect": "Allow", "Action": "ivschat:ListRooms", "Resource": "*"},
        {"Sid": "RoomsWithOwnReviewHandler", "Effect": "Allow", "Action": ["ivschat:CreateRoom", "ivschat:UpdateRoom"],
         "Resource": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:chat-review-*"},
        {"Sid": "NeverVideoChannels", "Effect": "Deny", "Action": "ivs:*", "Resource": channel("Video*")},
    ]},
}


def gateway_settings(**sections: Any) -> dict[str, Any]:
    """Gateway mode with SigV4 keys and bearer tokens for both teams, and POLICY."""
    settings: dict[str, Any] = {
        "mode": "gateway",
        "auth": {
            "sigv4": {"keys": [{"caller": t.name, "access_key_id": t.access_key_id, "secret_env": t.secret_env}
                               for t in TEAMS]},
            "bearer": {"tokens": {t.name: [t.token_digest] for t in TEAMS}},
        },
        "policy": {"callers": POLICY},
    }
    settings.update(sections)
    return settings


def secrets_env() -> dict[str, str]:
    return {t.secret_env: t.secret for t in TEAMS}


def gateway_for(upstream_url: str, settings: Mapping[str, Any] | None = None, *, clock: Clock = utc_now,
                registry: Any = None, source: Any = None) -> Proxy:
    config = load_config(None, dict(settings if settings is not None else gateway_settings()))
    env = {"AWS_ENDPOINT_URL": upstream_url, "AWS_REGION": REGION, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **secrets_env()}
    return build_proxy(config, env, credential_source=source or StaticSource(), clock=clock, registry=registry)


def sdk_client(service: str, endpoint_url: str, team: Team = VIDEO, *, secret: str | None = None,
               region: str = REGION, access_key_id: str | None = None,
               verify: str | bool | None = None):  # type: ignore[no-untyped-def]
    """An ordinary boto3 client with the team's internal keys, no retries."""
    return boto3.client(
        service, endpoint_url=endpoint_url, region_name=region, verify=verify,
        aws_access_key_id=access_key_id or team.access_key_id, aws_secret_access_key=secret or team.secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def sign(method: str, url: str, body: bytes, team: Team = VIDEO, *, secret: str | None = None,
         service: str = "ivs", region: str = REGION, headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """Headers for a raw request, signed now by botocore exactly as an SDK signs."""
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Type": "application/json", **(headers or {})})
    SigV4Auth(Credentials(team.access_key_id, secret or team.secret), service, region).add_auth(request)
    return dict(request.headers.items())


@dataclass
class Logs:
    stream: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line.startswith("{")]

    def audit(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("logger") == "ivs_proxy.audit"]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == "request"]


@contextmanager
def captured_logs() -> Iterator[Logs]:
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        yield Logs(stream)
    finally:
        configure_logging()
