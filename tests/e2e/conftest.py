from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from tests.support.moto import REGION, MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess
from tests.support.standin import StandIn


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def role_credentials(moto: MotoServer) -> SessionCredentials:
    return moto.role_credentials()


def proxy_env(moto: MotoServer, credentials: SessionCredentials) -> dict[str, str]:
    return {**credentials.env(), "AWS_ENDPOINT_URL": moto.url, "AWS_REGION": REGION}


@pytest.fixture(scope="module")
def proxy(moto: MotoServer, role_credentials: SessionCredentials) -> Iterator[ProxyProcess]:
    process = ProxyProcess(proxy_env(moto, role_credentials))
    process.start()
    yield process
    process.stop()


def unsigned_client(service: str, endpoint_url: str):  # type: ignore[no-untyped-def]
    """An app's client: no credentials at all, pointed at the proxy."""
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="session")
def standin(moto: MotoServer, role_credentials: SessionCredentials) -> Iterator[StandIn]:
    """The demo's upstream: moto for its operations, the stand-in for the others."""
    server = StandIn(moto.url, {role_credentials.access_key: (role_credentials.secret_key, role_credentials.token)})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def demo_proxy(standin: StandIn, role_credentials: SessionCredentials) -> Iterator[ProxyProcess]:
    """The proxy as `make demo` runs it: every service's endpoint is the stand-in's."""
    process = ProxyProcess({**role_credentials.env(), "AWS_REGION": REGION, **standin.endpoint_env()})
    process.start()
    yield process
    process.stop()
