"""The admin port: liveness, readiness, metrics and a stop request, served by the same
HTTP/1.1 server as the data port (proxy/serve/http_server.py), so that `serve` never
imports aiohttp's web framework (~14 MiB and ~0.1 s of start-up for four routes)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from proxy.serve.http_server import Answer, AnyAnswer, HttpRequest
from proxy.serve.server import ProxyState


def json_answer(payload: dict[str, Any], status: int = 200) -> Answer:
    return Answer(status, json.dumps(payload).encode(), content_type="application/json; charset=utf-8")


Route = tuple[str, Callable[[HttpRequest], Awaitable[Answer]]]


class RoutedApp:
    """A few fixed routes: path -> (method, handler); a miss is a JSON 404 or 405."""

    peer_certificates = False

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.cleanup_ctx: list[Callable[[Any], AsyncIterator[None]]] = []

    async def handle(self, request: HttpRequest) -> AnyAnswer:
        route = self.routes.get(request.path)
        if route is None:
            return json_answer({"message": f"no such admin path; the admin port serves {', '.join(self.routes)}"},
                               404)
        method, handler = route
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            answer = json_answer({"message": f"{request.path} takes {method} only"}, 405)
            answer.headers["Allow"] = method
            return answer
        return await handler(request)


class AdminApp(RoutedApp):
    """GET /healthz, GET /readyz, GET /metrics, POST /quitquitquit."""

    def __init__(self, state: ProxyState) -> None:
        super().__init__({
            "/healthz": ("GET", self.healthz),
            "/readyz": ("GET", self.readyz),
            "/metrics": ("GET", self.metrics),
            "/quitquitquit": ("POST", self.quitquitquit),
        })
        self.state = state

    async def healthz(self, _: HttpRequest) -> Answer:
        # Answering at all proves the event loop is turning; the lag says how freely.
        return json_answer({"status": "ok", "loop_lag_ms": round(await loop_lag() * 1000, 3)})

    async def readyz(self, _: HttpRequest) -> Answer:
        state = self.state
        if state.draining:
            return json_answer({"ready": False, "reason": "draining"}, 503)
        detail = state.credentials.unavailable_reason()
        if detail is None:
            return json_answer({"ready": True})
        return json_answer({"ready": False, "reason": "credentials_unavailable", "detail": detail}, 503)

    async def metrics(self, request: HttpRequest) -> Answer:
        return metrics_answer(request, self.state.metrics.registry)

    async def quitquitquit(self, request: HttpRequest) -> Answer:
        # Only from this pod/host: the admin port listens on the pod IP for probes, and a
        # neighbour must not be able to stop the sidecar.
        if not is_loopback_address(request.peer_address()):
            return json_answer({"stopping": False, "reason": "only accepted from loopback"}, 403)
        # The caller (a Job's main container, done) is the only client: no drain delay.
        self.state.drain.request_stop("quitquitquit", skip_delay=True)
        return json_answer({"stopping": True})


def metrics_answer(request: HttpRequest, registry: CollectorRegistry) -> Answer:
    """The registry in the exposition format the scraper asks for (Accept)."""
    encoder, content_type = choose_encoder(request.headers.get("Accept") or "")
    return Answer(200, encoder(registry), content_type=content_type)


def create_admin_app(state: ProxyState) -> AdminApp:
    return AdminApp(state)


def is_loopback_address(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except (ValueError, TypeError):
        return False


async def loop_lag() -> float:
    """How late a zero-length sleep resumes: the loop's current backlog."""
    started = time.perf_counter()
    await asyncio.sleep(0)
    return time.perf_counter() - started
