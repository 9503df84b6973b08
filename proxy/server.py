"""The aiohttp applications: the data listener (the proxy) and the admin listener.

The data app has a single catch-all route: routing is the catalog's job, so that a miss is
explained in the rest-json error shape instead of aiohttp's plain-text 404.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from proxy.credentials import CredentialStore
from proxy.errors import BodyTooLarge, ProxyError, RequestInvalid
from proxy.forward import Upstream
from proxy.pipeline import IncomingRequest, Pipeline

log = structlog.get_logger("ivs_proxy.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ProxyState:
    pipeline: Pipeline
    upstream: Upstream
    credentials: CredentialStore
    max_body_bytes: int


STATE = web.AppKey("state", ProxyState)


def error_response(error: ProxyError) -> web.Response:
    headers = {"x-amzn-ErrorType": error.error_type, "x-ivs-proxy-error": error.reason, **error.headers}
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def proxy_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as error:
        log.info("request_refused", method=request.method, reason=error.reason, status=error.status)
        return error_response(error)


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing (413) as soon as it exceeds the limit."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise BodyTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def split_target(target: str) -> tuple[str, str]:
    if not target.startswith("/"):
        # absolute-form ("GET http://host/...") would name a host; only we choose hosts.
        raise RequestInvalid("the request target must be a path (origin-form), not a URL")
    path, _, query = target.partition("?")
    return path, query


async def handle_proxy(request: web.Request) -> web.Response:
    state = request.app[STATE]
    started = time.perf_counter()
    path, query = split_target(request.raw_path)
    incoming = IncomingRequest(request.method, path, query, tuple(request.headers.items()), request.body_exists)
    exchange = state.pipeline.check_head(incoming)
    exchange = state.pipeline.prepare(exchange, await read_body(request, state.max_body_bytes))
    upstream = await state.pipeline.send(exchange)
    log.info(
        "request",
        method=request.method,
        service=exchange.operation.service.name,
        operation=exchange.operation.name,
        region=exchange.region,
        status=upstream.status,
        amzn_request_id=upstream.headers.get("x-amzn-RequestId"),
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return web.Response(status=upstream.status, body=upstream.body, headers=upstream.headers)


def create_data_app(state: ProxyState) -> web.Application:
    app = web.Application(middlewares=[proxy_errors], client_max_size=state.max_body_bytes)
    app[STATE] = state
    app.router.add_route("*", "/{tail:.*}", handle_proxy)

    async def upstream_session(app: web.Application):  # type: ignore[no-untyped-def]
        await state.upstream.start()
        yield
        await state.upstream.close()

    app.cleanup_ctx.append(upstream_session)
    return app


def create_admin_app(state: ProxyState) -> web.Application:
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        detail = state.credentials.unavailable_reason()
        if detail is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": "credentials_unavailable", "detail": detail}, status=503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
