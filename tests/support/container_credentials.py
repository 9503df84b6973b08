"""Loopback peers for credential rotation tests.

`ContainerCredentialsServer` speaks the container credentials contract exactly as botocore
does for ECS task roles and EKS Pod Identity (`AWS_CONTAINER_CREDENTIALS_FULL_URI` plus
`AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`): GET with `Authorization: <token>`, answered with
JSON `{AccessKeyId, SecretAccessKey, Token, Expiration}`. Every answer is a new key that
lives `lifetime_seconds`. It also answers STS GetCallerIdentity for keys it issued, so the
proxy can learn its identity. It can be switched to fail (500) or hang.

`KeyCheckingUpstream` is an IVS stand-in that checks each request's SigV4 signature with
botocore against the key it names, and whether that key had expired when the request
arrived.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import secrets
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/ivs-proxy-pod/eks-pod-identity"
AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class IssuedKey:
    access_key: str
    secret_key: str
    token: str
    expires_at: datetime.datetime


@dataclass
class ContainerCredentialsServer:
    auth_token: str
    lifetime_seconds: float
    mode: str = "ok"  # "ok" | "fail" (HTTP 500) | "hang" (no answer for 30 s)
    issued: dict[str, IssuedKey] = field(default_factory=dict)
    requests: int = 0
    hanging: int = 0
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/credentials", self._credentials)
        app.router.add_post("/", self._sts)
        return app

    def release(self) -> None:
        """End every hang now (so the server can shut down without waiting 30 s)."""
        self._release.set()

    async def _credentials(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != self.auth_token:
            return web.json_response({"message": "bad token"}, status=401)
        if self.mode == "hang":
            self.hanging += 1
            try:
                await asyncio.wait_for(self._release.wait(), timeout=30)
            except TimeoutError:
                pass
            finally:
                self.hanging -= 1
        if self.mode == "fail":
            return web.json_response({"message": "the credential agent is unavailable"}, status=500)
        return web.json_response(self._issue())

    def _issue(self) -> dict[str, str]:
        # Whole seconds, as the real endpoints send.
        expires = (utc_now() + datetime.timedelta(seconds=self.lifetime_seconds)).replace(microsecond=0)
        key = IssuedKey(
            f"ASIA{len(self.issued):016d}", secrets.token_urlsafe(30), secrets.token_urlsafe(60), expires
        )
        self.issued[key.access_key] = key
        return {
            "AccessKeyId": key.access_key,
            "SecretAccessKey": key.secret_key,
            "Token": key.token,
            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "RoleArn": ROLE_ARN,
        }

    async def _sts(self, request: web.Request) -> web.Response:
        form = parse_qs((await request.read()).decode())
        match = AUTH.match(request.headers.get("Authorization", ""))
        if form.get("Action") != ["GetCallerIdentity"] or not match or match["key"] not in self.issued:
            return web.Response(status=403, text=_STS_ERROR, content_type="text/xml")
        return web.Response(text=_IDENTITY.format(arn=ROLE_ARN, account=ACCOUNT), content_type="text/xml")


_IDENTITY = """<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult><Arn>{arn}</Arn><UserId>AROAEXAMPLE:pod</UserId><Account>{account}</Account>
  </GetCallerIdentityResult><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"""
_STS_ERROR = """<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>
<Code>InvalidClientTokenId</Code><Message>unknown key</Message></Error><RequestId>1</RequestId></ErrorResponse>"""


@dataclass
class Checked:
    access_key: str
    known_key: bool
    signature_valid: bool
    token_matches: bool
    expired_on_arrival: bool
    arrived_at: datetime.datetime


@dataclass
class KeyCheckingUpstream:
    issued: dict[str, IssuedKey]
    received: list[Checked] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = utc_now()
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        match = AUTH.match(headers.get("authorization", ""))
        key = self.issued.get(match["key"]) if match else None
        record = Checked(match["key"] if match else "", key is not None, False, False, False, arrived)
        if match and key is not None:
            record.signature_valid = _signature(request, headers, body, key, match) == match["signature"]
            record.token_matches = headers.get("x-amz-security-token") == key.token
            record.expired_on_arrival = arrived >= key.expires_at
        self.received.append(record)
        return web.json_response({"channels": []})


def _signature(
    request: web.Request, headers: dict[str, str], body: bytes, key: IssuedKey, match: re.Match[str]
) -> str:
    signed = {name: headers.get(name, "") for name in match["signed"].split(";")}
    prepared = AWSRequest(method=request.method, url=f"http://{headers['host']}{request.raw_path}", headers=signed, data=body)
    prepared.context["timestamp"] = headers.get("x-amz-date", "")
    auth = SigV4Auth(Credentials(key.access_key, key.secret_key, key.token), match["service"], match["region"])
    return auth.signature(auth.string_to_sign(prepared, auth.canonical_request(prepared)), prepared)
