"""The aiohttp applications: the data listener (the proxy) and the admin listener.

The data app has a single catch-all route: routing is the catalog's job, so that a miss is
explained in the rest-json error shape instead of aiohttp's plain-text 404.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from proxy.credentials import CredentialStore
from proxy.errors import BodyTooLarge, ProxyError, RequestInvalid, UpstreamError
from proxy.forward import Upstream
from proxy.metrics import UNKNOWN, Metrics
from proxy.pipeline import Exchange, IncomingRequest, Pipeline

log = structlog.get_logger("ivs_proxy.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: A caller's X-Request-Id is reused only if it looks like an id: it ends up in logs and
#: in our answer, so it must not carry newlines, markup or a novel.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/=+-]{1,128}")


@dataclass
class ProxyState:
    pipeline: Pipeline
    upstream: Upstream
    credentials: CredentialStore
    max_body_bytes: int
    metrics: Metrics
    draining: bool = False


STATE = web.AppKey("state", ProxyState)
EXCHANGE = web.RequestKey("exchange", Exchange)
ERROR = web.RequestKey("error", ProxyError)


def error_response(error: ProxyError) -> web.Response:
    headers = {"x-amzn-ErrorType": error.error_type, "x-ivs-proxy-error": error.reason, **error.headers}
    return web.Response(
        status=error.status,
        body=json.dumps(error.body()).encode(),
        content_type="application/json",
        headers=headers,
    )


def request_id_for(request: web.Request) -> str:
    offered = request.headers.get("X-Request-Id", "")
    return offered if SANE_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: one access line and one set of metrics per request, whatever happened."""
    metrics = request.app[STATE].metrics
    request_id = request_id_for(request)
    started = time.perf_counter()
    metrics.inflight.inc()
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        finally:
            metrics.inflight.dec()
        response.headers["X-Request-Id"] = request_id
        record_request(request, response, time.perf_counter() - started)
    return response


@web.middleware
async def proxy_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProxyError as error:
        request[ERROR] = error
        return error_response(error)


def record_request(request: web.Request, response: web.StreamResponse, seconds: float) -> None:
    metrics = request.app[STATE].metrics
    exchange: Exchange | None = request.get(EXCHANGE)
    route = exchange.route if exchange is not None else None
    service = route.operation.service.name if route else UNKNOWN
    operation = route.operation.name if route else UNKNOWN
    error: ProxyError | None = request.get(ERROR)
    metrics.requests.labels(service, operation, str(response.status)).inc()
    metrics.request_duration.labels(service, operation).observe(seconds)
    fields: dict[str, object] = {}
    if exchange is not None and exchange.upstream_seconds:
        metrics.upstream_duration.labels(service, operation).observe(exchange.upstream_seconds)
        fields["upstream_ms"] = round(exchange.upstream_seconds * 1000, 3)
    if exchange is not None and exchange.signing_seconds:
        metrics.signing_duration.observe(exchange.signing_seconds)
        fields["signing_ms"] = round(exchange.signing_seconds * 1000, 3)
    if isinstance(error, UpstreamError):
        metrics.upstream_errors.labels(error.kind).inc()
        fields["upstream_error"] = error.kind
    elif error is not None:
        metrics.rejected.labels(error.reason).inc()
        fields["refused"] = error.reason
    if exchange is not None and exchange.upstream_status:
        fields["upstream_status"] = exchange.upstream_status
        fields["amzn_request_id"] = exchange.amzn_request_id
    log.info(
        "request",
        method=request.method,
        caller=exchange.caller.name if exchange is not None and exchange.caller is not None else None,
        service=service,
        operation=operation,
        region=exchange.region if exchange is not None and exchange.region else None,
        status=response.status,
        duration_ms=round(seconds * 1000, 3),
        bytes_in=len(exchange.request.body) if exchange is not None else 0,
        bytes_out=response.content_length or 0,
        **fields,
    )


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
    path, query = split_target(request.raw_path)
    exchange = Exchange(IncomingRequest(request.method, path, query, tuple(request.headers.items()), request.body_exists))
    request[EXCHANGE] = exchange
    state.pipeline.check_head(exchange)
    state.pipeline.prepare(exchange, await read_body(request, state.max_body_bytes))
    upstream = await state.pipeline.send(exchange)
    exchange.upstream_status = upstream.status
    exchange.amzn_request_id = upstream.headers.get("x-amzn-RequestId")
    return web.Response(status=upstream.status, body=upstream.body, headers=upstream.headers)


def create_data_app(state: ProxyState) -> web.Application:
    app = web.Application(middlewares=[observe, proxy_errors], client_max_size=state.max_body_bytes)
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
        # Answering at all proves the event loop is turning; the lag says how freely.
        return web.json_response({"status": "ok", "loop_lag_ms": round(await loop_lag() * 1000, 3)})

    async def readyz(_: web.Request) -> web.Response:
        if state.draining:
            return web.json_response({"ready": False, "reason": "draining"}, status=503)
        detail = state.credentials.unavailable_reason()
        if detail is None:
            return web.json_response({"ready": True})
        return web.json_response({"ready": False, "reason": "credentials_unavailable", "detail": detail}, status=503)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(state.metrics.registry), headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def loop_lag() -> float:
    """How late a zero-length sleep resumes: the loop's current backlog."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    return time.perf_counter() - started
