"""When an upstream attempt may be repeated, how long to wait first, and when to give up.

botocore's "standard" retry mode, where that is safe for a proxy:

* at most `max_attempts` attempts (3; 1 turns retries off);
* retry on throttling (HTTP 429, or a throttling error code), on 500/502/503/504 and on
  connection failures;
* full-jitter exponential backoff, `rand(0, 1) * min(base * 2**(n-1), 20 s)`, with
  botocore's bases: 1 s after throttling, 50 ms otherwise; AWS's `Retry-After` (seconds
  or an HTTP date) and `x-amz-retry-after` (ms) are waited out, never cut short;
* a process-wide retry quota (a token bucket of 500): a retry costs 5, a retry after a
  timeout 10, a success gives back 1 (or what its retry cost), so that an AWS brown-out
  is not multiplied by every replica's retries;
* every wait and attempt fits inside the request's deadline: `total_timeout_seconds`, or
  the caller's own (`amz-sdk-request: ttl=...`) when sooner.

Unlike an SDK, the proxy also has to decide whether a request is safe to repeat. An
operation that creates something or emits an event (`NON_IDEMPOTENT` below) is repeated
only when AWS provably never saw it (the connection could not be opened) or said it did
not process it (throttling); never after a 5xx, a timeout or a reset mid-flight, where a
repeat could make a second channel.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import json
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.config import RetriesConfig, UpstreamConfig
from proxy.errors import DeadlinePassed, UpstreamError
from proxy.model.catalog import Operation

#: botocore's `ThrottledRetryableChecker` codes: AWS refused the call before doing it.
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
})
#: botocore's transient statuses and codes: worth another try, if repeating is safe.
TRANSIENT_STATUSES = frozenset({500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"RequestTimeout", "RequestTimeoutException"})

#: Operations named with these verbs leave AWS as one call would when repeated: reads
#: (Get, List, BatchGet), setting given values (Update, Tag, Untag) and ending or removing
#: a named thing (Delete, Stop, Disconnect, Revoke; a repeat may answer "not found" for
#: something the first call did remove). Every other verb -- Create, Import, Start, Put,
#: Insert, Send, BatchStart, and any verb a future model brings -- counts as
#: non-idempotent: unknown means unsafe.
IDEMPOTENT_VERBS = frozenset({"Get", "List", "BatchGet", "Update", "Tag", "Untag", "Delete", "Stop",
                              "Disconnect", "Revoke"})

RETRY_COST = 5
TIMEOUT_RETRY_COST = 10
SUCCESS_REFUND = 1

_VERB = re.compile(r"(Batch)?[A-Z][a-z]+")
_TTL = re.compile(r"(?:^|;)\s*ttl=(\d{8}T\d{6}Z)\s*(?:;|$)")


def verb(operation_name: str) -> str:
    """The leading verb of an operation name; `Batch` takes the next word along."""
    match = _VERB.match(operation_name)
    return match[0] if match else operation_name


def is_idempotent(operation_name: str) -> bool:
    return verb(operation_name) in IDEMPOTENT_VERBS


def non_idempotent(operations: Iterable[Operation]) -> list[str]:
    """`service:Name` of every non-idempotent operation, sorted (docs/resilience.md lists them)."""
    return sorted({f"{op.service.name}:{op.name}" for op in operations if not is_idempotent(op.name)})


def idempotency_token_member(operation: Operation) -> str | None:
    """The input member that makes a repeat safe (AWS deduplicates on it), if the model has one."""
    shape = operation.model.input_shape
    members = shape.members if shape is not None else {}
    return next((name for name, member in members.items() if member.metadata.get("idempotencyToken")), None)


class Answer(Protocol):
    """What an attempt returns (forward.UpstreamResponse): AWS's status and chosen headers."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    async def discard(self) -> None: ...


def error_code(headers: Mapping[str, str], body: bytes) -> str | None:
    """The rest-json error code: `x-amzn-ErrorType` ("Code:uri"), else the body's `__type`/`code`."""
    header = headers.get("x-amzn-ErrorType")
    if header:
        return header.split(":", 1)[0].strip()
    if not body or len(body) > 65536:
        return None
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    code = document.get("__type") or document.get("code") or document.get("Code")
    return code.rsplit("#", 1)[-1] if isinstance(code, str) else None


def retry_reason(outcome: Answer | UpstreamError, repeatable: bool) -> str | None:
    """Why this outcome deserves another attempt (a metric label), or None if it does not.

    `repeatable`: repeating the operation is harmless even if AWS did process it.
    """
    if isinstance(outcome, UpstreamError):
        if not outcome.sent:
            return "connect" if outcome.kind == "connect" else None  # TLS verification: no
        return outcome.kind if repeatable and outcome.kind in ("timeout", "reset", "malformed") else None
    if outcome.status < 400:
        return None
    code = error_code(outcome.headers, outcome.body)
    if outcome.status == 429 or code in THROTTLING_CODES:
        return "throttled"  # AWS did not process it: safe for every operation
    if repeatable and (outcome.status in TRANSIENT_STATUSES or code in TRANSIENT_CODES):
        return "server_error"
    return None


def retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds AWS asked us to wait: `x-amz-retry-after` (ms) or `Retry-After` (s or date)."""
    millis = headers.get("x-amz-retry-after")
    if millis is not None and millis.strip().isdigit():
        return int(millis) / 1000
    value = headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def caller_seconds_left(amz_sdk_request: str | None, now: float) -> float | None:
    """Seconds until the caller's own deadline (`amz-sdk-request: ttl=YYYYMMDDTHHMMSSZ`)."""
    if not amz_sdk_request or "ttl=" not in amz_sdk_request:  # SDKs send a ttl rarely
        return None
    match = _TTL.search(amz_sdk_request)
    if match is None:
        return None
    try:
        ttl = datetime.datetime.strptime(match[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return ttl.timestamp() - now


class RetryQuota:
    """botocore's retry quota: a token bucket shared by every request of the process."""

    def __init__(self, capacity: int = 500) -> None:
        self.capacity = capacity
        self.available = capacity

    def acquire(self, cost: int) -> bool:
        if cost > self.available:
            return False
        self.available -= cost
        return True

    def release(self, amount: int) -> None:
        self.available = min(self.capacity, self.available + amount)


Attempt = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class RetrySettings:
    """What the retrier reads from the `retries` and `upstream` config sections; the
    defaults live there, once."""

    max_attempts: int
    backoff_base_seconds: float
    throttling_backoff_base_seconds: float
    max_backoff_seconds: float
    attempt_timeout_seconds: float
    total_timeout_seconds: float

    @classmethod
    def from_config(
        cls, retries: RetriesConfig | None = None, upstream: UpstreamConfig | None = None
    ) -> RetrySettings:
        retries = retries or RetriesConfig()
        upstream = upstream or UpstreamConfig()
        return cls(
            max_attempts=max(1, retries.max_attempts),  # 0 and 1 both mean: no retries
            backoff_base_seconds=retries.backoff_base_seconds,
            throttling_backoff_base_seconds=retries.throttling_backoff_base_seconds,
            max_backoff_seconds=retries.max_backoff_seconds,
            attempt_timeout_seconds=upstream.attempt_timeout_seconds,
            total_timeout_seconds=upstream.total_timeout_seconds,
        )


class Retrier:
    """Runs attempts until one may stand, within the deadline and the quota."""

    def __init__(
        self,
        settings: RetrySettings | None = None,
        quota: RetryQuota | None = None,
        *,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings or RetrySettings.from_config()
        self.quota = quota or RetryQuota()
        self._rng = rng
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall = wall
        # Operation -> True (idempotent by name) or its idempotency token member (or None):
        # both depend only on the operation, and the verb takes a regex to find.
        self._tokens: dict[Operation, str | bool | None] = {}

    @classmethod
    def from_config(cls, retries: RetriesConfig, upstream: UpstreamConfig) -> Retrier:
        return cls(RetrySettings.from_config(retries, upstream), RetryQuota(retries.quota_tokens))

    def repeatable(self, operation: Operation, document: Any) -> bool:
        """Harmless to repeat even if AWS did the first one: idempotent by name, or carrying
        the idempotency token its model defines (AWS then ignores the repeat)."""
        tokens = self._tokens
        if operation in tokens:
            token = tokens[operation]
        else:
            token = tokens[operation] = True if is_idempotent(operation.name) else idempotency_token_member(operation)
        if token is True:
            return True
        return isinstance(token, str) and isinstance(document, Mapping) and bool(document.get(token))

    def deadline(self, amz_sdk_request: str | None) -> float:
        """The monotonic time by which the last attempt must have ended."""
        budget = self.settings.total_timeout_seconds
        caller = caller_seconds_left(amz_sdk_request, self._wall())
        if caller is not None:
            budget = min(budget, caller)
        return self._monotonic() + budget

    def backoff(self, retry: int, reason: str) -> float:
        """Full jitter: rand(0, 1) * min(base * 2**(retry-1), cap); `retry` counts from 1."""
        s = self.settings
        base = s.throttling_backoff_base_seconds if reason == "throttled" else s.backoff_base_seconds
        return self._rng() * min(base * 2.0 ** (retry - 1), s.max_backoff_seconds)

    async def run(self, attempt: Attempt, *, repeatable: bool, deadline: float, retried: list[str]) -> Any:
        """Call `attempt(timeout)` until its answer may stand; reasons of retries go to `retried`.

        Returns the last answer (AWS's own error included), or raises the last UpstreamError.
        """
        acquired = 0
        number = 0
        outcome: Any = None
        while True:
            left = deadline - self._monotonic()
            if left <= 0:
                if number == 0:  # the caller's ttl was over on arrival
                    raise DeadlinePassed("the caller's deadline (amz-sdk-request ttl) has passed; nothing was sent")
                break  # a backoff overslept the deadline: the last outcome stands
            if not isinstance(outcome, (UpstreamError, type(None))):
                await outcome.discard()  # given up for the next attempt: frees its connection
            number += 1
            try:
                outcome = await attempt(min(self.settings.attempt_timeout_seconds, left))
            except UpstreamError as error:
                outcome = error
            reason = retry_reason(outcome, repeatable)
            if reason is None:
                break
            delay = self._delay(outcome, reason, number, deadline)
            cost = TIMEOUT_RETRY_COST if reason == "timeout" else RETRY_COST
            if delay is None or not self.quota.acquire(cost):
                break
            acquired = cost
            retried.append(reason)
            await self._sleep(delay)
        if isinstance(outcome, UpstreamError):
            raise outcome
        if 200 <= outcome.status < 300:
            self.quota.release(acquired or SUCCESS_REFUND)
        return outcome

    def _delay(self, outcome: Any, reason: str, number: int, deadline: float) -> float | None:
        """Seconds to wait before the next attempt, or None: no next attempt."""
        if number >= self.settings.max_attempts:
            return None
        delay = self.backoff(number, reason)
        if not isinstance(outcome, UpstreamError):
            asked = retry_after(outcome.headers, self._wall())
            if asked is not None:
                if asked > self.settings.max_backoff_seconds:
                    return None  # longer than we would ever wait: the caller gets AWS's answer
                delay = max(delay, asked)
        # Leave the next attempt some time of its own, or it is not worth making.
        if self._monotonic() + delay + 0.001 >= deadline:
            return None
        return delay
