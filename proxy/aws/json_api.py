"""Calls the proxy makes on its own behalf to AWS JSON-protocol services (KMS, SQS), and
to the IVS rest-json operations it needs itself (GetStage, GetChannel: `AwsRestJsonClient`).

Off the request path, but held to the request path's rules: the proxy's own short-lived
credentials (`CredentialStore`), its own SigV4 signer, the endpoint an SDK would use
(`EndpointTable`: endpoint rules, `AWS_ENDPOINT_URL_<SERVICE>`, FIPS, dual-stack) and an
`Upstream` (TLS verified like an SDK). The protocol details (JSON version, target prefix)
come from botocore's model metadata, never from a hand list.

A call returns the decoded answer or raises:
- `AwsCallFailed` when AWS answered with an error (its error code and message kept);
- `UpstreamError` (502/504) when AWS could not be reached, `SigningUnavailable` (503)
  when the proxy holds no valid credentials.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.aws.credentials import Clock, CredentialStore, utc_now
from proxy.aws.endpoints import EndpointTable
from proxy.aws.signing import SigV4Signer
from proxy.aws.upstream import Upstream, UpstreamResponse
from proxy.errors import UpstreamUnreachable
from proxy.model.botocore_data import create_loader

#: Enough for the largest JSON answer these calls get (an SQS batch: 10 x 256 KiB).
MAX_ANSWER_BYTES = 4 * 1024 * 1024

#: Throttling codes AWS's JSON services use; the SDKs treat them as retryable.
_THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "RequestLimitExceeded", "LimitExceededException",
    "KMSInternalException", "RequestThrottled",
})
_XML_CODE = re.compile(rb"<Code>([^<]{1,128})</Code>")


@dataclass(frozen=True, slots=True)
class JsonProtocol:
    """How one service speaks AWS JSON: `Content-Type` and the `X-Amz-Target` prefix."""

    content_type: str
    target_prefix: str

    @classmethod
    def of(cls, service: str) -> JsonProtocol:
        metadata = create_loader().service_metadata(service)
        if metadata.get("protocol") != "json" and "json" not in metadata.get("protocols", ()):
            raise ValueError(f"{service} does not speak the AWS JSON protocol")
        return cls(f"application/x-amz-json-{metadata.get('jsonVersion', '1.0')}", metadata["targetPrefix"])


class AwsCallFailed(Exception):
    """AWS answered a call with an error. `code` is the error type without its namespace
    (`NotFoundException`), `message` AWS's own text (never request content)."""

    def __init__(self, service: str, operation: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service} {operation}: HTTP {status} {code}: {message}")
        self.service = service
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message

    @property
    def retryable(self) -> bool:
        """Worth trying again later: throttling or a server-side failure."""
        return self.status >= 500 or self.status == 429 or self.code in _THROTTLING


class _SignedCalls:
    """What both protocols share: the endpoint, the proxy's credentials and signer, one
    attempt over the Upstream, and the answer decoded or turned into an error."""

    def __init__(
        self,
        service: str,
        endpoints: EndpointTable,
        credentials: CredentialStore,
        upstream: Upstream,
        *,
        clock: Clock = utc_now,
        signer: SigV4Signer | None = None,
    ) -> None:
        self.service = service
        self._endpoints = endpoints
        self._credentials = credentials
        self._upstream = upstream
        self._clock = clock
        self._signer = signer or SigV4Signer()
        self._read_model()

    def _read_model(self) -> None:
        """What this protocol needs of the service's botocore model, read once at construction."""
        raise NotImplementedError

    async def _send(self, operation: str, method: str, request_uri: str, headers: dict[str, str],
                    params: Mapping[str, Any], region: str, timeout: float | None) -> dict[str, Any]:
        endpoint = self._endpoints.lookup(self.service, region)
        body = json.dumps(params, separators=(",", ":")).encode()
        signed = self._signer.sign(
            method=method, host=endpoint.host, path=endpoint.base_path + request_uri, query="", headers=headers,
            body=body, service=endpoint.signing_name, region=endpoint.signing_region,
            credentials=self._credentials.current(), now=self._clock(),
        )
        response = await self._upstream.send(
            method, endpoint.url_for(request_uri), {**headers, **dict(signed.items())}, body, timeout=timeout
        )
        return _decoded(self.service, operation, response.status, response.headers, await _read_whole(response))


class AwsJsonClient(_SignedCalls):
    """One JSON-protocol service, e.g. `AwsJsonClient("kms", endpoints, credentials, upstream)`."""

    def _read_model(self) -> None:
        self._protocol = JsonProtocol.of(self.service)

    async def call(
        self, operation: str, params: Mapping[str, Any], *, region: str, timeout: float | None = None
    ) -> dict[str, Any]:
        """One signed attempt of `operation`; retrying is the caller's decision (`retryable`)."""
        headers = {
            "Content-Type": self._protocol.content_type,
            "X-Amz-Target": f"{self._protocol.target_prefix}.{operation}",
        }
        return await self._send(operation, "POST", "/", headers, params, region, timeout)


class AwsRestJsonClient(_SignedCalls):
    """The rest-json operations whose whole input is a JSON body on a fixed path (IVS's
    `POST /GetStage {"arn": ...}`), e.g. `AwsRestJsonClient("ivs-realtime", ...)`. The
    method and path come from the botocore model; the endpoint, signer and credentials
    are the proxy's own, as for `AwsJsonClient`."""

    def _read_model(self) -> None:
        self._operations = create_loader().load_service_model(self.service, "service-2")["operations"]

    async def call(
        self, operation: str, params: Mapping[str, Any], *, region: str, timeout: float | None = None
    ) -> dict[str, Any]:
        http = self._operations[operation]["http"]
        if "{" in http["requestUri"]:
            raise ValueError(f"{self.service} {operation} takes path parameters; not a body-only operation")
        headers = {"Content-Type": "application/json"}
        return await self._send(operation, http["method"], http["requestUri"], headers, params, region, timeout)


def _decoded(service: str, operation: str, status: int, headers: Mapping[str, str], answer: bytes) -> dict[str, Any]:
    if status >= 300:
        raise AwsCallFailed(service, operation, status, *_error_of(headers, answer))
    try:
        decoded = json.loads(answer) if answer else {}
    except ValueError:
        raise UpstreamUnreachable(f"{service} answered {operation} with a body that is not JSON",
                                  kind="malformed") from None
    if not isinstance(decoded, dict):
        raise UpstreamUnreachable(f"{service} answered {operation} with JSON that is not an object",
                                  kind="malformed")
    return decoded


async def _read_whole(response: UpstreamResponse) -> bytes:
    if response.stream is None:
        return response.body
    parts: list[bytes] = []
    size = 0
    async for chunk in response.stream.chunks():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            response.stream.close()
            raise UpstreamUnreachable(f"an answer larger than {MAX_ANSWER_BYTES} bytes", kind="malformed")
        parts.append(chunk)
    return b"".join(parts)


def _error_of(headers: Mapping[str, str], body: bytes) -> tuple[str, str]:
    """(code, message) of an AWS error answer: JSON `__type` (or `x-amzn-ErrorType`), or
    the XML `<Code>` AWS's front end (and moto's IAM check) answers with."""
    code = ""
    message = ""
    try:
        decoded = json.loads(body)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        code = str(decoded.get("__type") or decoded.get("code") or "")
        message = str(decoded.get("message") or decoded.get("Message") or "")
    if not code:
        code = headers.get("x-amzn-ErrorType", "")
    if not code and (match := _XML_CODE.search(body)):
        code = match.group(1).decode("utf-8", "replace")
    # "com.amazonaws.kms#NotFoundException" and "NotFoundException:http://..." both name the same error.
    code = code.rsplit("#", 1)[-1].split(":", 1)[0].strip() or "UnknownError"
    return code, message[:300]

