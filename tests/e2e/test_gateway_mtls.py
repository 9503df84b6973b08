"""Mutual TLS on the data listener, with real certificates made by trustme: accepted with a
good client certificate, refused with none, an expired one, or one from another CA."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import yaml

from proxy.config import load_config
from proxy.serve.tls import server_context
from tests.support.gateway import CHAT, POLICY, VIDEO, captured_logs, gateway_for
from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.proxy_process import ProxyProcess

JSON = {"Content-Type": "application/json"}


@dataclass
class Pki:
    ca_file: str
    settings: dict[str, Any]
    clients: dict[str, trustme.LeafCert | None]

    def context(self, name: str) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        cert = self.clients[name]
        if cert is not None:
            cert.configure_cert(context)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.cert_chain_pems[0].write_to_path(str(root / "server.crt"))
    server.private_key_pem.write_to_path(str(root / "server.key"))
    ca.cert_pem.write_to_path(str(root / "ca.crt"))
    now = datetime.datetime.now(datetime.UTC)
    clients = {
        "good": ca.issue_cert("chat-backend.chat.svc"),
        "by-cn": ca.issue_cert("encoder-7.video.svc", common_name="video-encoder"),
        "stranger": ca.issue_cert("stranger.elsewhere.svc"),
        "expired": ca.issue_cert("chat-backend.chat.svc", not_before=now - datetime.timedelta(days=2),
                                 not_after=now - datetime.timedelta(days=1)),
        "other-ca": other_ca.issue_cert("chat-backend.chat.svc"),
        "none": None,
    }
    settings = {
        "mode": "gateway",
        "tls": {"cert_file": str(root / "server.crt"), "key_file": str(root / "server.key"),
                "client_ca_file": str(root / "ca.crt")},
        "auth": {
            "mtls": {"identities": {"chat-team": ["DNS:chat-backend.chat.svc"], "video-team": ["CN:video-encoder"]}},
            "bearer": {"tokens": {t.name: [t.token_digest] for t in (VIDEO, CHAT)}},
        },
        "policy": {"callers": POLICY},
    }
    return Pki(str(root / "ca.crt"), settings, clients)


async def call(url: str, context: ssl.SSLContext, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as session, session.post(
        f"{url}/ListChannels", data=b"{}", headers={**JSON, **(headers or {})}, ssl=context
    ) as response:
        return response.status


async def test_client_certificates_decide_who_gets_in(aiohttp_server, recording, pki: Pki) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    proxy = gateway_for(str(upstream_server.make_url("")).rstrip("/"), pki.settings)
    server = await aiohttp_server(proxy.data_app, ssl=server_context(load_config(None, pki.settings).tls))
    url = f"https://127.0.0.1:{server.port}"
    with captured_logs() as logs:
        assert await call(url, pki.context("good")) == 200
        for refused in ("none", "expired", "other-ca"):
            # refused in the TLS handshake: no HTTP request ever reaches the gateway
            with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
                await call(url, pki.context(refused))
        assert await call(url, pki.context("stranger")) == 401  # a valid certificate of nobody we know
        assert await call(url, pki.context("by-cn")) == 403  # video-team by subject CN; may not list
        conflict = {"Authorization": f"Bearer {VIDEO.token}"}  # cert says chat-team
        assert await call(url, pki.context("good"), conflict) == 401
        same = {"Authorization": f"Bearer {CHAT.token}"}
        assert await call(url, pki.context("good"), same) == 200
    assert len(upstream.received) == 2 and all(r.signature_valid for r in upstream.received)
    audit = [(a["event"], a["decision"], a.get("caller"), a.get("reason")) for a in logs.audit()]
    assert audit == [
        ("authorization", "allow", "chat-team", "allowed"),
        ("authentication", "deny", None, "unknown_certificate"),
        ("authorization", "deny", "video-team", "no_allow"),
        ("authentication", "deny", None, "conflict"),
        ("authorization", "allow", "chat-team", "allowed"),
    ]
    assert [line["caller"] for line in logs.access()] == ["chat-team", None, "video-team", None, "chat-team"]


async def test_the_served_process_speaks_mtls(aiohttp_server, recording, pki: Pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({**pki.settings, "region": "us-west-2"}))
    env = {"AWS_ENDPOINT_URL": str(upstream_server.make_url("")).rstrip("/"), "AWS_REGION": "us-west-2",
           "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key, "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
           "AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "", "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    process = ProxyProcess(env, args=("--drain-delay", "0"), config=config)
    process.start()
    try:
        url = f"https://127.0.0.1:{process.port}"
        assert await call(url, pki.context("good")) == 200
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            await call(url, pki.context("none"))
        with pytest.raises(aiohttp.ClientError):  # plain HTTP is not served on a TLS listener
            async with aiohttp.ClientSession() as session, session.post(
                f"http://127.0.0.1:{process.port}/ListChannels", data=b"{}", headers=JSON
            ):
                pass
    finally:
        output = process.stop()
    # The process's start-up STS GetCallerIdentity (POST /) reaches the same upstream.
    assert len([r for r in upstream.received if r.raw_path != "/"]) == 1, output
    assert '"caller": "chat-team"' in output
