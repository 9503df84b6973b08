"""The proxy as an in-process aiohttp app in front of a RecordingUpstream."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from proxy.app import Proxy, build_proxy
from proxy.aws.credentials import CredentialSnapshot, utc_now
from proxy.aws.signing import FrozenCredentials
from proxy.config import load_config

TEST_CREDENTIALS = FrozenCredentials(
    "ASIATESTACCESSKEY000", "test/secret/key/that/is/not/real/0000000", "test-session-token"
)


class StaticSource:
    """A credential source that always answers with the same short-lived session."""

    def __init__(self, credentials: FrozenCredentials = TEST_CREDENTIALS, lifetime_seconds: float = 3600) -> None:
        self._credentials = credentials
        self._lifetime = datetime.timedelta(seconds=lifetime_seconds)

    def fetch(self) -> CredentialSnapshot:
        return CredentialSnapshot(self._credentials, utc_now() + self._lifetime, "static-test")


def proxy_for(
    upstream_url: str, settings: Mapping[str, Any] | None = None, region: str = "us-west-2", registry: Any = None
) -> Proxy:
    config = load_config(None, settings)
    env = {"AWS_ENDPOINT_URL": upstream_url, "AWS_REGION": region, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    return build_proxy(config, env, credential_source=StaticSource(), registry=registry)
