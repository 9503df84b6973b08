"""The optional Redis that several gateway replicas share, and whether it is usable now.

Rate-limit buckets and the replay window live here when `redis.url` is set, so that they
hold across replicas behind one Kubernetes Service. Redis failing must not take the
gateway down: after a failure, callers of `call` get `SharedStateDown` at once (no
per-request timeouts) for `retry_seconds`, then one request tries Redis again. The
transitions are logged and `ivs_proxy_redis_up` follows them; what each user does while
Redis is down is its own policy (rate limits fall back to per-process buckets; the replay
window refuses or falls back as `redis.replay_on_outage` says).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from proxy.config import RedisConfig
from proxy.errors import ConfigError
from proxy.observe.metrics import Metrics

log = structlog.get_logger("ivs_proxy")
T = TypeVar("T")


class SharedStateDown(Exception):
    """Redis is not usable for this request."""


class SharedState:
    def __init__(self, config: RedisConfig, metrics: Metrics, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - the extra is part of the dev install
            raise ConfigError("redis.url", "needs the redis client library: pip install 'ivs-proxy[redis]'") from None
        assert config.url is not None
        password = _read_password(config.password_file)
        self.prefix = config.key_prefix
        self._timeout = config.timeout_seconds
        self._retry_seconds = config.retry_seconds
        self._metrics = metrics
        self._clock = clock
        self._down_until = 0.0
        self._up: bool | None = None
        # No client-side retries: one failure is enough to know, and the breaker below
        # decides when to try again.
        self.client: Any = aioredis.Redis.from_url(
            config.url, password=password, socket_timeout=config.timeout_seconds,
            socket_connect_timeout=config.timeout_seconds, retry=Retry(NoBackoff(), 0),
        )
        self.errors: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError, asyncio.TimeoutError)
        self._url, self._password = config.url, password

    def blocking_client(self, read_timeout: float) -> Any:
        """A client of its own for blocking reads (XREAD BLOCK): its socket timeout outlasts
        the block, and a long read never holds one of `client`'s connections."""
        import redis.asyncio as aioredis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return aioredis.Redis.from_url(self._url, password=self._password, socket_timeout=read_timeout,
                                       socket_connect_timeout=self._timeout, retry=Retry(NoBackoff(), 0))

    @property
    def up(self) -> bool:
        return bool(self._up)

    async def call(self, operation: str, work: Callable[[Any], Awaitable[T]]) -> T:
        """Run `work(client)`; SharedStateDown if Redis is marked down or fails now."""
        if self._clock() < self._down_until:
            raise SharedStateDown
        try:
            result = await asyncio.wait_for(work(self.client), self._timeout)
        except self.errors as exc:
            self._failed(operation, exc)
            raise SharedStateDown from None
        if self._up is not True:
            self._transition(True)
        return result

    async def probe(self) -> bool:
        """Ping once (at start-up): sets the gauge and logs, never raises."""
        try:
            await self.call("ping", lambda client: client.ping())
        except SharedStateDown:
            return False
        return True

    async def close(self) -> None:
        await self.client.aclose()

    def _failed(self, operation: str, exc: BaseException) -> None:
        self._metrics.redis_errors.labels(operation).inc()
        self._down_until = self._clock() + self._retry_seconds
        if self._up is not False:
            self._transition(False, error=type(exc).__name__)

    def _transition(self, up: bool, error: str | None = None) -> None:
        self._up = up
        self._metrics.redis_up.set(1 if up else 0)
        if up:
            log.info("shared_state_available", backend="redis")
        else:
            log.warning("shared_state_unavailable", backend="redis", error=error, retry_seconds=self._retry_seconds,
                        effect="rate limits are per process until Redis answers again")


def _read_password(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("redis.password_file", f"cannot read: {exc.strerror}") from None
