"""Builds the event feature from config: the SQS source, the store, the fanout, the SSE
route, and the one app context that runs them while the data app serves."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.aws.credentials import CredentialStore
from proxy.aws.endpoints import EndpointTable
from proxy.aws.json_api import AwsJsonClient
from proxy.aws.upstream import Upstream
from proxy.config import ProxyConfig
from proxy.errors import ConfigError
from proxy.events.fanout import Fanout, FanoutCounts, follow
from proxy.events.http import OPERATION, EventDelivery
from proxy.events.source import SourceCounts, SqsSource
from proxy.events.store import EventStore, MemoryEventStore, RedisEventStore
from proxy.gateway.own_access import OwnAccess, OwnOperation
from proxy.gateway.shared_state import SharedState
from proxy.observe.metrics import Metrics
from proxy.serve.own_routes import OwnHandler
from proxy.serve.server import DataApp

log = structlog.get_logger("ivs_proxy.events")

#: What the proxy's role must allow on the queue (docs/events.md), and the session policy
#: of `credentials.role_arn` with `session_policy: served-services` adds.
EVENTS_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:DeleteMessageBatch")

#: How long one blocking read of the Redis stream waits before it asks again.
FOLLOW_BLOCK_SECONDS = 5.0

AppContext = Callable[[DataApp], AsyncIterator[None]]


@dataclass(frozen=True)
class Events:
    route: tuple[OwnOperation, OwnHandler]
    context: AppContext
    delivery: EventDelivery
    source: SqsSource


def build_events(config: ProxyConfig, env: Mapping[str, str], *, profile: str | None, default_region: str | None,
                 credentials: CredentialStore, metrics: Metrics, access: OwnAccess, shared: SharedState | None,
                 ca_bundle: str | None) -> Events:
    settings = config.events
    assert settings.queue_url is not None
    region = settings.region or default_region
    if region is None:
        raise ConfigError("events.region", "the queue's region is needed (events.region, or a default region)")
    endpoints = EndpointTable.build(("sqs",), {"sqs": (region,)}, env, profile)
    # Its own client, not the API path's: a long poll must outlast upstream.read_timeout_seconds,
    # and must never hold one of the API's pooled connections.
    poll_budget = settings.wait_time_seconds + 10.0
    upstream = Upstream(dataclasses.replace(config.upstream, read_timeout_seconds=poll_budget,
                                            attempt_timeout_seconds=poll_budget, max_connections=4),
                        ca_bundle=ca_bundle)
    sqs = AwsJsonClient("sqs", endpoints, credentials, upstream)
    own_shared = shared is None and config.redis.url is not None
    if own_shared:
        shared = SharedState(config.redis, metrics)
    reader: Any = None
    store: EventStore
    if shared is not None:
        reader = shared.blocking_client(FOLLOW_BLOCK_SECONDS + config.redis.timeout_seconds + 1.0)
        store = RedisEventStore(shared, reader, settings.stream_max_length, settings.dedupe_seconds)
    else:
        store = MemoryEventStore(settings.stream_max_length, settings.dedupe_seconds)
        if config.mode == "gateway":
            log.warning("events_without_redis", effect="each replica delivers only the events it received itself, "
                        "and a restart loses the resume buffer; set redis.url when running more than one")
    source = SqsSource(sqs, settings.queue_url, region, store, wait_seconds=settings.wait_time_seconds,
                       max_messages=settings.max_messages, max_backoff_seconds=settings.max_backoff_seconds,
                       counts=_source_counts(metrics))
    fanout = Fanout(FanoutCounts(filtered=lambda reason: metrics.events_filtered.labels(reason).inc()))
    delivery = EventDelivery(store, fanout, access, metrics, buffer=settings.subscriber_buffer,
                             max_subscribers=settings.max_subscribers, heartbeat_seconds=settings.heartbeat_seconds)

    async def run_events(app: DataApp) -> AsyncIterator[None]:
        await upstream.start()
        if own_shared and shared is not None:
            await shared.probe()
        tasks = [
            asyncio.create_task(source.run(), name="events-sqs"),
            asyncio.create_task(follow(store, fanout, block_seconds=FOLLOW_BLOCK_SECONDS,
                                       on_down=_log_store_state), name="events-follow"),
            asyncio.create_task(_end_streams_on_stop(app, fanout), name="events-drain"),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await upstream.close()
        if reader is not None:
            await reader.aclose()
        if own_shared and shared is not None:
            await shared.close()

    return Events((OPERATION, delivery.handle), run_events, delivery, source)


def _source_counts(metrics: Metrics) -> SourceCounts:
    return SourceCounts(
        received=lambda event: metrics.events_received.labels(event.type_label).inc(),
        duplicate=metrics.events_duplicates.inc,
        unreadable=lambda reason: metrics.events_unreadable.inc(),
        sqs_error=lambda kind: metrics.events_sqs_errors.labels(kind).inc(),
        delayed=lambda delayed: metrics.events_delayed.set(1 if delayed else 0),
    )


def _log_store_state(down: bool) -> None:
    if down:
        log.warning("events_store_unavailable", effect="subscribers get heartbeats only until it answers; "
                    "events wait in the queue")
    else:
        log.info("events_store_available")


async def _end_streams_on_stop(app: DataApp, fanout: Fanout) -> None:
    """SSE streams never finish by themselves: on a stop request they end at once, so the
    drain does not wait its timeout for them (clients reconnect, to a replica that stays)."""
    await app.state.drain.stop_requested.wait()
    fanout.close_all()
