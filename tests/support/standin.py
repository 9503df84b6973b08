"""The demo's local upstream for every IVS operation: moto where moto has the operation,
a stand-in answering from botocore's model where it has not, both behind a SigV4 check.

moto implements six `ivs` operations (the channel calls: `MOTO_OPERATIONS`, read from
moto's own URL table) and nothing of `ivs-realtime` or `ivschat`. Real IVS has one host
per service, so the stand-in listens on one loopback port per service and the proxy is
pointed at them with AWS_ENDPOINT_URL_IVS, _IVS_REALTIME and _IVSCHAT (`endpoint_env`).
Per request:

- an operation moto implements goes to moto unchanged (method, path, headers with the
  signed Host, body), and moto verifies the signature, the session token and the role's
  IAM policy. An IAM refusal moto writes in XML comes back in IVS's own rest-json form
  (`x-amzn-ErrorType: AccessDeniedException`, `{"message": ...}`), so an SDK shows its text.
- any other operation: the stand-in checks the request's SigV4 signature with botocore's
  signer against the credentials the demo gave the proxy (key, secret and session token),
  the credential scope's service and the clock, refuses a bad one with the 403 AWS sends,
  and answers from the operation's output shape (tests/support/standin_answers.py).

Every answer says who gave it: the header `x-ivs-proxy-demo-upstream: moto | stand-in`,
and the stand-in's request ids start with `stand-in-` (the proxy returns x-amzn-RequestId
to the SDK and logs it); its bodies also carry a `standIn` member. Nothing here is part of
the proxy or its image (.dockerignore admits only pyproject.toml, README.md, LICENSE, proxy/).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import signal
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import aiohttp
import botocore.session
from aiohttp import web
from botocore.model import OperationModel, ServiceModel
from moto.ivs.urls import url_paths as moto_ivs_paths

from tests.support.recording_upstream import AUTH, Received, expected_signature
from tests.support.standin_answers import AnswerBuilder

SERVICES = ("ivs", "ivs-realtime", "ivschat")
#: The operations moto serves, by service: its URL table's paths are the operation names.
MOTO_OPERATIONS = {"ivs": frozenset(path.rsplit("/", 1)[-1] for path in moto_ivs_paths)}
UPSTREAM_HEADER = "x-ivs-proxy-demo-upstream"
#: How far a request's x-amz-date may be from the clock, as AWS allows.
CLOCK_SKEW = datetime.timedelta(minutes=15)
_RELAYED_REQUEST_HEADERS_DROPPED = {"connection", "keep-alive", "transfer-encoding", "content-length"}
_RELAYED_ANSWER_HEADERS = ("Content-Type", "x-amzn-RequestId", "x-amzn-ErrorType", "Retry-After")
_EXPIRED = "Signature expired: the request's date is more than 15 minutes from the server's."
_MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.")
#: moto's XML IAM error codes, as IVS's rest-json error types.
_XML_ERROR_TYPES = {
    "AccessDenied": "AccessDeniedException",
    "InvalidClientTokenId": "UnrecognizedClientException",
    "SignatureDoesNotMatch": "InvalidSignatureException",
}


@dataclass(frozen=True)
class Answered:
    service: str
    operation: str
    upstream: str  # "moto" or "stand-in"
    status: int
    request_id: str


class Refused(Exception):
    """A request the stand-in turns away the way AWS's front end does."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class Routes:
    """One service's operations, found by method and path as the model writes them."""

    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        routes = []
        for name in model.operation_names:
            operation = model.operation_model(name)
            template = operation.http["requestUri"].split("?")[0]
            regex = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(template))
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", regex)
            literal = len(re.sub(r"\{[^}]*\}", "", template))
            routes.append((literal, operation.http["method"], re.compile(regex + "$"), operation))
        self._routes = [route[1:] for route in sorted(routes, key=lambda route: -route[0])]

    def match(self, method: str, raw_path: str) -> tuple[OperationModel, dict[str, str]] | None:
        path = raw_path.split("?")[0]
        for route_method, regex, operation in self._routes:
            found = regex.match(path) if route_method == method else None
            if found:
                return operation, {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
        return None


def request_params(operation: OperationModel, labels: Mapping[str, str], query: Mapping[str, str],
                   body: bytes) -> dict[str, Any]:
    """What the request named, by member name: body members, path labels, query members."""
    params: dict[str, Any] = {}
    try:
        decoded = json.loads(body) if body else {}
    except ValueError:
        decoded = {}
    if isinstance(decoded, dict):
        params.update(decoded)
    shape = operation.input_shape
    for name, member in (shape.members.items() if shape is not None else ()):
        location, wire_name = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire_name in labels:
            params[name] = labels[wire_name]
        elif location == "querystring" and wire_name in query:
            params[name] = query[wire_name]
    return params


class StandIn:
    """The three service endpoints in a background thread (the demo and the tests are
    synchronous callers); `credentials` maps each access key it accepts to (secret, token)."""

    def __init__(self, moto_url: str, credentials: Mapping[str, tuple[str, str | None]]) -> None:
        self.moto_url = moto_url
        self._credentials = dict(credentials)
        session = botocore.session.get_session()
        self._routes = {service: Routes(session.get_service_model(service)) for service in SERVICES}
        self.urls: dict[str, str] = {}
        self.answered: list[Answered] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="stand-in", daemon=True)
        self._runners: list[web.AppRunner] = []
        self._client: aiohttp.ClientSession | None = None

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=20)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def endpoint_env(self) -> dict[str, str]:
        """The proxy's endpoint overrides: each service to its stand-in port."""
        return {"AWS_ENDPOINT_URL_" + service.replace("-", "_").upper(): url for service, url in self.urls.items()}

    def upstream_of(self, operation: str, service: str = "ivs") -> str:
        return "moto" if operation in MOTO_OPERATIONS.get(service, ()) else "stand-in"

    def _serve(self) -> None:
        # Ctrl-C and SIGTERM are the main thread's (the demo waits for them with sigwait);
        # delivered here, they would go unnoticed.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        self._loop.run_forever()

    async def _start(self) -> None:
        self._client = aiohttp.ClientSession(auto_decompress=False)
        for service in SERVICES:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handler(service))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            host, port = runner.addresses[0][:2]
            self.urls[service] = f"http://{host}:{port}"
            self._runners.append(runner)

    async def _stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        if self._client is not None:
            await self._client.close()

    def _handler(self, service: str):  # type: ignore[no-untyped-def]
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            found = self._routes[service].match(request.method, request.raw_path)
            operation = found[0].name if found else "unknown"
            upstream = self.upstream_of(operation, service)
            try:
                if found is None:
                    raise Refused(404, "UnknownOperationException",
                                  f"no {service} operation at {request.method} {request.path}")
                if upstream == "moto":
                    response = await self._relay(request, body)
                else:
                    self._verify(service, request, body)
                    response = self._answer(found[0], found[1], request, body)
            except Refused as refused:
                response = _error(refused.status, refused.error_type, refused.message)
            response.headers[UPSTREAM_HEADER] = upstream
            request_id = response.headers.get("x-amzn-RequestId", "")
            self.answered.append(Answered(service, operation, upstream, response.status, request_id))
            return response
        return handle

    def _verify(self, service: str, request: web.Request, body: bytes) -> None:
        """AWS's checks, in AWS's order, with its error types and messages."""
        headers = {name.lower(): value for name, value in request.headers.items()}
        match = AUTH.match(headers.get("authorization", ""))
        if match is None:
            raise Refused(403, "MissingAuthenticationTokenException", "Missing Authentication Token")
        known = self._credentials.get(match["key"])
        if known is None or known[1] != headers.get("x-amz-security-token"):
            raise Refused(403, "UnrecognizedClientException", "The security token included in the request is invalid.")
        signing_name = self._routes[service].model.signing_name
        if match["service"] != signing_name:
            raise Refused(403, "InvalidSignatureException",
                          f"Credential should be scoped to correct service: '{signing_name}'.")
        if "host" not in match["signed"].split(";"):
            raise Refused(403, "InvalidSignatureException", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
        try:
            signed_at = datetime.datetime.strptime(headers.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ")
        except ValueError:
            raise Refused(403, "IncompleteSignatureException", "Date must be in ISO-8601 'basic format'.") from None
        if abs(datetime.datetime.now(datetime.UTC) - signed_at.replace(tzinfo=datetime.UTC)) > CLOCK_SKEW:
            raise Refused(403, "InvalidSignatureException", _EXPIRED)
        record = Received(request.method, request.raw_path, headers, body)
        if expected_signature(record, match, known[0]) != match["signature"]:
            raise Refused(403, "InvalidSignatureException", _MISMATCH)

    def _answer(self, operation: OperationModel, labels: Mapping[str, str], request: web.Request,
                body: bytes) -> web.Response:
        region = AUTH.match(request.headers["Authorization"])["region"]  # type: ignore[index]
        params = request_params(operation, labels, request.query, body)
        status, headers, payload = AnswerBuilder(operation, region, params).answer()
        headers = {**headers, "x-amzn-RequestId": f"stand-in-{uuid.uuid4()}"}
        if payload:
            headers["Content-Type"] = "application/json"
        return web.Response(status=status, body=payload, headers=headers)

    async def _relay(self, request: web.Request, body: bytes) -> web.Response:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _RELAYED_REQUEST_HEADERS_DROPPED}
        async with self._client.request(
            request.method, self.moto_url + request.raw_path, headers=headers, data=body,
            allow_redirects=False, skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent", "Accept"),
        ) as answer:
            payload = await answer.read()
            kept = {name: answer.headers[name] for name in _RELAYED_ANSWER_HEADERS if name in answer.headers}
            if answer.status >= 400 and payload.lstrip().startswith((b"<?xml", b"<ErrorResponse")):
                return _from_xml_error(answer.status, payload, kept)
            return web.Response(status=answer.status, body=payload, headers=kept)


def _error(status: int, error_type: str, message: str, request_id: str | None = None) -> web.Response:
    headers = {"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id or f"stand-in-{uuid.uuid4()}"}
    return web.json_response({"message": message}, status=status, headers=headers)


def _from_xml_error(status: int, payload: bytes, headers: Mapping[str, str]) -> web.Response:
    """moto's `<ErrorResponse><Errors><Error><Code>AccessDenied</Code>...` as IVS writes it."""
    try:
        root = ElementTree.fromstring(payload)
    except ElementTree.ParseError:
        return web.Response(status=status, body=payload, headers=headers)
    code = root.findtext(".//Code") or "AccessDenied"
    message = root.findtext(".//Message") or ""
    request_id = headers.get("x-amzn-RequestId") or root.findtext(".//RequestId")
    return _error(status, _XML_ERROR_TYPES.get(code, code), message, request_id)
