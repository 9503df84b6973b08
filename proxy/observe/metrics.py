"""Every Prometheus metric the proxy exports, declared in one place.

Label values are bounded by construction: service and operation names come from the
catalog (or "unknown"), codes are HTTP statuses, reasons and kinds are fixed tokens from
`errors.py` and `aws/upstream.py`. Nothing a caller sends (a path, an ARN, a header) ever
becomes a label value. The registry is passed in so each test gets a fresh one.

With `workers: N` (proxy/serve/workers.py) every worker writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR and the supervisor serves their aggregate: counters and
histograms add up by themselves; each gauge says how it combines (`multiprocess_mode`,
ignored by a single process). The `live*` modes drop a worker's value once it is gone.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from math import isnan
from typing import Any

import botocore
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from proxy import __version__

#: Latency buckets for an API whose calls take tens of milliseconds.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Signing takes microseconds; buckets that can tell 10 µs from 100 µs.
SIGNING_BUCKETS = (0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.001, 0.01)
#: Event delivery: EventBridge's time has whole seconds, and events can be hours late.
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
REFRESH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

UNKNOWN = "unknown"
#: The `region` label of a request refused before its region was chosen.
NO_REGION = "none"


def multiprocess_enabled() -> bool:
    """Whether prometheus_client keeps values in PROMETHEUS_MULTIPROC_DIR files (a worker)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class SampledGauge(Gauge):
    """A gauge whose value a function gives. A single process reads the function at each
    scrape. A worker's supervisor reads files, not functions: there `sample()` (called
    periodically by the worker) copies the function's value into the file."""

    _source: Callable[[], float] | None = None

    def set_function(self, f: Callable[[], float]) -> None:
        self._source = f
        if not multiprocess_enabled():
            super().set_function(f)

    def sample(self) -> None:
        if self._source is not None:
            self.set(self._source())


# The per-request series below update their values in place instead of through
# prometheus_client's inc/observe, which take a lock per value and walk the buckets (about
# 0.5 µs a counter, 0.8-1 µs a histogram, per request). Without the lock is safe because every
# update of these series happens on the event loop's thread (one thread: nothing interleaves
# with a `+=`); a scrape still reads them under their lock, and gets the same numbers. Only
# a single process's plain values take this path: a worker's values live in
# PROMETHEUS_MULTIPROC_DIR files (MmapedValue), which prometheus_client's own methods write.


def _in_place(value: object) -> Any:
    """The value to update in place, or None when prometheus_client must do it."""
    return value if type(value) is values.MutexValue else None


class LoopCounter(Counter):
    """A Counter whose `inc` on a single process's child skips the lock (see above)."""

    _plain: Any = None

    def _metric_init(self) -> None:
        super()._metric_init()
        self._plain = _in_place(self._value)

    def inc(self, amount: float = 1, exemplar: dict[str, str] | None = None) -> None:
        plain = self._plain
        if plain is not None and amount >= 0 and not exemplar:
            plain._value += amount
        else:  # a labelled parent (raises), a negative amount (raises), an exemplar, a worker
            super().inc(amount, exemplar)


class LoopGauge(Gauge):
    """A Gauge whose `inc`/`dec` on a single process's child skip the lock (see above)."""

    _plain: Any = None

    def _metric_init(self) -> None:
        super()._metric_init()
        if self._multiprocess_mode not in self._MOST_RECENT_MODES:  # (_is_most_recent is set after this)
            self._plain = _in_place(self._value)

    def inc(self, amount: float = 1) -> None:
        plain = self._plain
        if plain is not None:
            plain._value += amount
        else:
            super().inc(amount)

    def dec(self, amount: float = 1) -> None:
        plain = self._plain
        if plain is not None:
            plain._value -= amount
        else:
            super().dec(amount)


class LoopHistogram(Histogram):
    """A Histogram whose `observe` on a single process's child skips the locks and finds the
    bucket by bisection: the first bound >= the amount, which is the one prometheus_client's
    scan finds (it keeps per-bucket counts and adds them up at a scrape)."""

    _plain_sum: Any = None

    def _metric_init(self) -> None:
        super()._metric_init()
        self._plain_sum = _in_place(self._sum)

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        total = self._plain_sum
        # NaN is in no bucket of the scan but in bucket 0 of a bisection: left to the scan.
        if total is not None and not exemplar and not isnan(amount):
            total._value += amount
            self._buckets[bisect_left(self._upper_bounds, amount)]._value += 1
        else:
            super().observe(amount, exemplar)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = LoopCounter(
            "ivs_proxy_requests", "Requests answered, by operation, region and HTTP status.",
            ["service", "operation", "region", "code"], registry=r,
        )
        self.request_duration = LoopHistogram(
            "ivs_proxy_request_duration_seconds", "Whole request time, from first byte read to answer.",
            ["service", "operation"], buckets=REQUEST_BUCKETS, registry=r,
        )
        self.upstream_duration = LoopHistogram(
            "ivs_proxy_upstream_duration_seconds", "Time spent waiting on AWS.",
            ["service", "operation", "region"], buckets=REQUEST_BUCKETS, registry=r,
        )
        self.upstream_errors = LoopCounter(
            "ivs_proxy_upstream_errors", "Failures talking to AWS, by kind (connect, timeout, reset, tls, malformed).",
            ["kind"], registry=r,
        )
        self.rejected = LoopCounter(
            "ivs_proxy_rejected", "Requests the proxy refused itself, by reason.", ["reason"], registry=r,
        )
        self.inflight = LoopGauge(
            "ivs_proxy_inflight_requests", "Requests being handled now.", registry=r, multiprocess_mode="livesum",
        )
        self.slots_held = LoopGauge(
            "ivs_proxy_slots_held", "Slots held now, by phase: body_read (a body still arriving, "
            "limits.max_body_reads) and in_flight (body in, being handled; limits.max_inflight_requests).",
            ["phase"], registry=r, multiprocess_mode="livesum",
        )
        self.slow_bodies_cut = LoopCounter(
            "ivs_proxy_slow_bodies_cut", "Request bodies cut off (408) for arriving too slowly, by rule "
            "(min_rate, timeout).", ["rule"], registry=r,
        )
        self.retries = LoopCounter(
            "ivs_proxy_retries", "Upstream attempts repeated, by reason (throttled, server_error, connect, "
            "timeout, reset, malformed).", ["reason"], registry=r,
        )
        # Each worker has its own quota. The least of them, not the sum: "0: no retries"
        # must still show when one worker has run dry while the others have tokens left.
        self.retry_quota = SampledGauge(
            "ivs_proxy_retry_quota_tokens", "Tokens left in the retry quota (0: no retries until successes refill it).",
            registry=r, multiprocess_mode="livemin",
        )
        # Each worker holds its own credentials: the earliest expiry is the one to alert on
        # (0, a worker with none loaded, is the earliest of all).
        self.credentials_expiry = SampledGauge(
            "ivs_proxy_credentials_expiry_timestamp_seconds",
            "Unix time at which the current AWS credentials expire (0: none loaded).", registry=r,
            multiprocess_mode="livemin",
        )
        self.credential_refresh = Counter(
            "ivs_proxy_credential_refresh", "Credential refresh attempts, by result.", ["result"], registry=r,
        )
        self.credential_refresh_duration = Histogram(
            "ivs_proxy_credential_refresh_duration_seconds", "Time a credential refresh took.",
            buckets=REFRESH_BUCKETS, registry=r,
        )
        self.signing_duration = LoopHistogram(
            "ivs_proxy_signing_duration_seconds", "Time spent computing SigV4 signatures.",
            buckets=SIGNING_BUCKETS, registry=r,
        )
        # Gateway mode. Caller names come from config, so the caller label is bounded.
        self.authentication_failures = Counter(
            "ivs_proxy_authentication_failures", "Requests refused 401, by method and fixed reason token.",
            ["method", "reason"], registry=r,
        )
        self.authorization_decisions = Counter(
            "ivs_proxy_authorization_decisions", "Policy decisions, by caller and decision (allow, deny).",
            ["caller", "decision"], registry=r,
        )
        self.throttled = Counter(
            "ivs_proxy_throttled", "Requests refused 429 by the gateway's rate limits, by caller.", ["caller"], registry=r,
        )
        self.redis_up = Gauge(
            "ivs_proxy_redis_up",
            "1 while the shared Redis answers; 0 while rate limits (and, if so configured, the replay "
            "window) are per process.", registry=r, multiprocess_mode="livemin",  # 0 if any worker lost Redis
        )
        self.redis_errors = Counter(
            "ivs_proxy_redis_errors", "Failed Redis operations, by operation.", ["operation"], registry=r,
        )
        self.token_reloads = Counter(
            "ivs_proxy_token_reloads", "Bearer token file reloads (SIGHUP), by result.", ["result"], registry=r,
        )
        # IVS events (proxy/events/): `type` is a detail-type of envelope.KNOWN_TYPES or "other".
        self.events_received = Counter(
            "ivs_proxy_events_received", "IVS events read from SQS and stored for delivery, by type.", ["type"],
            registry=r,
        )
        self.events_duplicates = Counter(
            "ivs_proxy_events_duplicates", "Events dropped because their id was already stored (EventBridge and "
            "SQS deliver at least once).", registry=r,
        )
        self.events_unreadable = Counter(
            "ivs_proxy_events_unreadable", "SQS messages that were no IVS event (deleted, never delivered).",
            registry=r,
        )
        self.events_delivered = Counter(
            "ivs_proxy_events_delivered", "Events written to subscribers, by type.", ["type"], registry=r,
        )
        self.events_filtered = Counter(
            "ivs_proxy_events_filtered", "Events not sent to a subscriber, by reason (subscription: its own "
            "filters; policy: it may see none of the ARNs the event names).", ["reason"], registry=r,
        )
        self.events_subscribers = Gauge(
            "ivs_proxy_events_subscribers", "Event subscribers connected now.", registry=r,
            multiprocess_mode="livesum",
        )
        self.events_subscribers_cut = Counter(
            "ivs_proxy_events_subscribers_cut", "Subscribers disconnected by the proxy, by reason (behind: "
            "their buffer filled; write_timeout: they stopped reading).", ["reason"], registry=r,
        )
        self.events_lag = Histogram(
            "ivs_proxy_events_lag_seconds", "From the event's time (EventBridge's, whole seconds) to its "
            "delivery to a subscriber.", buckets=LAG_BUCKETS, registry=r,
        )
        self.events_sqs_errors = Counter(
            "ivs_proxy_events_sqs_errors", "Failed SQS calls, by kind (throttled, server_error, denied, refused, "
            "unreachable, delete_failed).", ["kind"], registry=r,
        )
        self.events_delayed = Gauge(
            "ivs_proxy_events_delayed", "1 while events wait in the queue: SQS failing, or the store "
            "(Redis) down; API calls are unaffected.", registry=r, multiprocess_mode="livemax",
        )
        self.tokens_minted = Counter(
            "ivs_proxy_tokens_minted", "Playback and participant token requests, by kind (playback, participant) "
            "and outcome (minted, refused: 4xx, failed: 5xx).", ["kind", "outcome"], registry=r,
        )
        self.build_info = Gauge(
            "ivs_proxy_build_info", "Always 1; the labels say what is running.",
            ["version", "botocore_version"], registry=r, multiprocess_mode="livemax",  # one series, not one per worker
        )
        self.build_info.labels(version=__version__, botocore_version=botocore.__version__).set(1)

    def credentials_refreshed(self, outcome: str, seconds: float) -> None:
        self.credential_refresh.labels(result=outcome).inc()
        self.credential_refresh_duration.observe(seconds)

    def sample(self) -> None:
        """Copy the function-backed gauges into this worker's metrics files."""
        self.retry_quota.sample()
        self.credentials_expiry.sample()


class SupervisorMetrics:
    """What the supervisor of `workers: N` serves on /metrics: the workers' metrics summed
    from `multiproc_dir`, and its own about the workers themselves."""

    def __init__(self, multiproc_dir: str, configured: int, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        MultiProcessCollector(r, path=multiproc_dir)
        self.workers = Gauge("ivs_proxy_workers", "Worker processes running now.", registry=r)
        self.workers_configured = Gauge(
            "ivs_proxy_workers_configured", "Worker processes the supervisor keeps running (workers:).", registry=r,
        )
        self.workers_configured.set(configured)
        self.worker_restarts = Counter(
            "ivs_proxy_worker_restarts", "Workers started again after one exited unexpectedly.", registry=r,
        )
