"""The data port's routes for the proxy's own operations (proxy/gateway/own_access.py).

Each handler gets the request already read (within the data port's body limits) and its
caller already established; it parses its input with `json_object`, asks
`OwnAccess.authorize` once it knows the resources, and answers JSON (or a stream). Errors
are ProxyErrors, so they reach the caller in the same rest-json shape as every refusal,
and the access line and metrics name the operation (`service="ivs-proxy"`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from proxy.errors import RequestInvalid
from proxy.gateway.identity import PEER_CERTIFICATE, Caller
from proxy.gateway.own_access import OwnAccess, OwnOperation
from proxy.serve.http_server import Answer, AnyAnswer, HttpRequest


@dataclass(slots=True)
class OwnCall:
    """What the access line and metrics say of an own operation's request."""

    operation: OwnOperation
    caller: Caller | None = None
    region: str | None = None  # set by the handler once it chose one
    fields: dict[str, object] = field(default_factory=dict)  # extra access-line fields (never a secret)


@dataclass(frozen=True, slots=True)
class OwnRequest:
    caller: Caller
    body: bytes
    call: OwnCall


OwnHandler = Callable[[HttpRequest, OwnRequest], Awaitable[AnyAnswer]]
BodyReader = Callable[[HttpRequest], Awaitable[bytes]]


def own_route(operation: OwnOperation, access: OwnAccess, handler: OwnHandler,
              read_body: BodyReader) -> Callable[[HttpRequest], Awaitable[AnyAnswer]]:
    """The data port's handler for one own operation: body, caller, then `handler`."""

    async def handle(request: HttpRequest) -> AnyAnswer:
        call = request.own_call = OwnCall(operation)
        body = await read_body(request)
        call.caller = await access.identify(
            operation, tuple(request.headers.items()), PEER_CERTIFICATE.get(),
            path=request.path, query=request.query_string, body=body,
        )
        return await handler(request, OwnRequest(call.caller, body, call))

    return handle


def json_object(body: bytes) -> dict[str, Any]:
    """The request's JSON object; RequestInvalid (400) naming what is wrong, never quoting it."""
    if not body:
        raise RequestInvalid("the request needs a JSON object body")
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise RequestInvalid(f"the body is not valid JSON{where}") from None
    if not isinstance(decoded, dict):
        raise RequestInvalid(f"the body must be a JSON object, not {type(decoded).__name__}")
    return decoded


def json_response(payload: dict[str, Any], status: int = 200) -> Answer:
    return Answer(status, json.dumps(payload).encode(),
                  {"Content-Type": "application/json", "x-ivs-proxy-source": "ivs-proxy"})
