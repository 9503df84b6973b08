"""The dev credential endpoint: short-lived, narrowed AWS credentials for SDKs on a laptop.

It speaks the contract of the SDKs' container credential provider, so any AWS SDK or CLI
picks it up from two environment variables and no code change:

    AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9911/credentials
    AWS_CONTAINER_AUTHORIZATION_TOKEN=<token>

GET with `Authorization: <token>`, answered with JSON `{AccessKeyId, SecretAccessKey,
Token, Expiration}`.

Whoever can call it gets AWS credentials, so:

* it binds loopback addresses only (refused at start-up otherwise): nothing off this
  machine can connect;
* the token is random, shown once at start-up, and compared in constant time;
* the Host header must name the address it listens on: a web page whose DNS name was
  rebound to 127.0.0.1 sends its own name and is refused, as is any request a browser
  marks with `Origin` (SDKs never send one);
* it serves role session credentials that a session policy narrows to the IVS actions of
  the served services, renewed in the background by a `CredentialStore` - never the
  profile's own credentials, which may be long-lived keys or a broad SSO role.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import botocore.session
import structlog

from proxy.aws.credential_sources import AssumeRoleSource, RoleToAssume, served_services_policy
from proxy.aws.credentials import CredentialStore
from proxy.config import parse_host_port
from proxy.errors import ConfigError, SigningUnavailable
from proxy.serve.http_server import Answer, HttpRequest

log = structlog.get_logger("ivs_proxy.broker")

CREDENTIALS_PATH = "/credentials"
#: One hour: the longest AWS allows when the profile's credentials are themselves a role
#: session (role chaining, the SSO case). Renewed from 15 min before expiry, so what is
#: served always has more than botocore's 10-minute mandatory-refresh window left.
SESSION_SECONDS = 3600
SESSION_NAME = "ivs-proxy-dev-broker"

def loopback_address(value: str, key: str) -> tuple[str, int]:
    """HOST:PORT with a loopback HOST (`localhost` means 127.0.0.1); ConfigError otherwise."""
    host, port = parse_host_port(value, key)
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(key, f"{value!r} is not a loopback address; use 127.0.0.1:PORT (or [::1]:PORT)")
    return host, port


def new_token() -> str:
    return secrets.token_urlsafe(32)


def narrowed_role_source(
    session: botocore.session.Session,
    role_arn: str,
    services: Iterable[str],
    *,
    region: str | None,
    external_id: str | None = None,
) -> AssumeRoleSource:
    """Assume `role_arn` with a session policy that allows only the served services' actions."""
    role = RoleToAssume(role_arn, SESSION_NAME, external_id, SESSION_SECONDS, served_services_policy(services))
    return AssumeRoleSource(session, role, region=region)


def url_host(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Broker:
    """Answers credential requests from the store, after the Host, Origin and token checks."""

    def __init__(self, store: CredentialStore, token: str, host: str, port: int) -> None:
        self.store = store
        self._token = token.encode()
        self.url = f"http://{url_host(host, port)}{CREDENTIALS_PATH}"
        names = {url_host(host, port)}
        if ipaddress.ip_address(host).version == 4:
            names.add(f"localhost:{port}")  # botocore allows localhost URIs too
        self._hosts = frozenset(names)

    def export_lines(self) -> str:
        """What a developer pastes into the shell that runs their app (shown once)."""
        return (
            f"export AWS_CONTAINER_CREDENTIALS_FULL_URI={self.url}\n"
            f"export AWS_CONTAINER_AUTHORIZATION_TOKEN={self._token.decode()}"
        )

    def refusal(self, request: HttpRequest) -> Answer | None:
        """The answer to a request that fails a check, or None if it passes them all."""
        if (request.headers.get("Host") or "").lower() not in self._hosts:
            return _refuse(403, "foreign_host", "the Host header does not name this endpoint")
        if "Origin" in request.headers:
            return _refuse(403, "browser_origin", "requests from web pages are refused")
        presented = (request.headers.get("Authorization") or "").encode("utf-8", "surrogateescape")
        # Constant time: how long a comparison takes must not tell how much of a guess was right.
        if not hmac.compare_digest(presented, self._token):
            return _refuse(401, "token", "missing or wrong Authorization token")
        return None

    def credentials(self) -> Answer:
        try:
            frozen = self.store.current()
        except SigningUnavailable as exc:
            log.warning("credentials_unavailable", detail=exc.message)
            return _json({"message": exc.message}, 503)
        snapshot = self.store.snapshot
        # current() and snapshot are read with no await between them: the same set.
        assert snapshot is not None and snapshot.credentials == frozen and snapshot.expires_at is not None
        expires = snapshot.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        log.info("credentials_served", expires_at=expires)
        body = {
            "AccessKeyId": frozen.access_key,
            "SecretAccessKey": frozen.secret_key,
            "Token": frozen.token,
            "Expiration": expires,
        }
        answer = _json(body)
        answer.headers["Cache-Control"] = "no-store"
        return answer


def _json(payload: dict[str, Any], status: int = 200) -> Answer:
    return Answer(status, json.dumps(payload).encode(), content_type="application/json; charset=utf-8")


def _refuse(status: int, reason: str, message: str) -> Answer:
    log.warning("credentials_request_refused", reason=reason, status=status)
    return _json({"message": f"ivs-proxy dev credentials: {message}"}, status)


class BrokerApp:
    """The endpoint, on the proxy's own HTTP server: every request is checked first (Host,
    Origin, token), then only GET of CREDENTIALS_PATH is served. Its credential store is
    started and renewed while the app serves."""

    peer_certificates = False

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.cleanup_ctx: list[Callable[[BrokerApp], AsyncIterator[None]]] = [self._renew]

    async def handle(self, request: HttpRequest) -> Answer:
        refusal = self.broker.refusal(request)
        if refusal is not None:
            return refusal
        if request.path != CREDENTIALS_PATH:
            return _json({"message": f"ivs-proxy dev credentials: the endpoint is {CREDENTIALS_PATH}"}, 404)
        if request.method not in ("GET", "HEAD"):
            answer = _json({"message": "ivs-proxy dev credentials: GET only"}, 405)
            answer.headers["Allow"] = "GET"
            return answer
        return self.broker.credentials()

    async def _renew(self, _: BrokerApp) -> AsyncIterator[None]:
        store = self.broker.store
        await store.start()
        task = asyncio.create_task(store.run(), name="broker-credential-refresh")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_broker_app(broker: Broker) -> BrokerApp:
    return BrokerApp(broker)
