"""TLS to the upstream is verified against the CA bundle an SDK would use."""

from __future__ import annotations

import ssl

import trustme

from proxy.app import build_proxy
from proxy.config import load_config
from tests.support.inprocess import TEST_CREDENTIALS, StaticSource
from tests.support.recording_upstream import RecordingUpstream

JSON_HEADERS = {"Content-Type": "application/json"}


async def tls_upstream(aiohttp_server, ca: trustme.CA) -> tuple[RecordingUpstream, str]:  # type: ignore[no-untyped-def]
    upstream = RecordingUpstream(secret_key=TEST_CREDENTIALS.secret_key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await aiohttp_server(upstream.app(), ssl=context)
    return upstream, f"https://127.0.0.1:{server.port}"


def proxy_env(url: str, tmp_path, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    config_file = tmp_path / "aws-config"
    config_file.write_text(extra.pop("profile_text", ""))
    return {"AWS_ENDPOINT_URL": url, "AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": str(config_file),
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", **extra}


async def call(aiohttp_client, env: dict[str, str], expect_tls_errors: int = 0) -> int:  # type: ignore[no-untyped-def]
    proxy = build_proxy(load_config(None), env, credential_source=StaticSource())
    client = await aiohttp_client(proxy.data_app)
    response = await client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)
    registry = proxy.state.metrics.registry
    assert (registry.get_sample_value("ivs_proxy_upstream_errors_total", {"kind": "tls"}) or 0) == expect_tls_errors
    return response.status


async def test_aws_ca_bundle_is_trusted(aiohttp_server, aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    upstream, url = await tls_upstream(aiohttp_server, ca)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    assert await call(aiohttp_client, proxy_env(url, tmp_path, AWS_CA_BUNDLE=str(bundle))) == 200
    assert upstream.received[0].signature_valid


async def test_profile_ca_bundle_is_trusted(aiohttp_server, aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ca = trustme.CA()
    upstream, url = await tls_upstream(aiohttp_server, ca)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    env = proxy_env(url, tmp_path, profile_text=f"[default]\nca_bundle = {bundle}\n")
    assert await call(aiohttp_client, env) == 200
    assert upstream.received[0].signature_valid


async def test_an_untrusted_certificate_is_a_502_and_nothing_is_sent(aiohttp_server, aiohttp_client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    upstream, url = await tls_upstream(aiohttp_server, trustme.CA())
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    assert await call(aiohttp_client, proxy_env(url, tmp_path, AWS_CA_BUNDLE=str(other)), expect_tls_errors=1) == 502
    assert upstream.received == []
