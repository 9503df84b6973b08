"""A local upstream that records what reaches it and checks each request's SigV4 signature
with botocore's own signer (an independent implementation from the proxy's)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
    r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass
class Received:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    region: str = ""
    service: str = ""
    signed_headers: tuple[str, ...] = ()
    signature_valid: bool = False


@dataclass
class RecordingUpstream:
    """Answers every request with `status` and `body`, keeping what it received."""

    secret_key: str
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_seconds: float = 0.0
    received: list[Received] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def record(self, request: web.Request) -> Received:
        """Keep what arrived, with its credential scope and whether its signature holds."""
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = Received(request.method, request.raw_path, headers, body)
        match = AUTH.match(headers.get("authorization", ""))
        if match:
            record.region, record.service = match["region"], match["service"]
            record.signed_headers = tuple(match["signed"].split(";"))
            record.signature_valid = expected_signature(record, match, self.secret_key) == match["signature"]
        self.received.append(record)
        return record

    async def _handle(self, request: web.Request) -> web.Response:
        await self.record(request)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        return web.Response(status=self.status, body=self.body, headers=self.headers)



def expected_signature(record: Received, match: re.Match[str], secret_key: str) -> str:
    """The signature botocore computes for what arrived, with the credential scope and
    signed headers its Authorization header (`AUTH`) names and `secret_key`."""
    signed = {name: record.headers.get(name, "") for name in match["signed"].split(";")}
    request = AWSRequest(
        method=record.method,
        url=f"http://{record.headers['host']}{record.raw_path}",
        headers=signed,
        data=record.body,
    )
    request.context["timestamp"] = record.headers.get("x-amz-date", "")
    credentials = Credentials(match["key"], secret_key, record.headers.get("x-amz-security-token"))
    auth = SigV4Auth(credentials, match["service"], match["region"])
    canonical = auth.canonical_request(request)
    return auth.signature(auth.string_to_sign(request, canonical), request)
