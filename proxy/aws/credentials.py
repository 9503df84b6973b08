"""The proxy's own AWS credentials: short-lived, renewed in the background, read as snapshots.

The request path calls `CredentialStore.current()`, which never touches the network: it
returns the snapshot the background task last fetched, or refuses (503) once that snapshot
is missing or (nearly) expired. Fetching goes through botocore's providers in a worker
thread, because they block (HTTP to STS, IMDS, SSO, container endpoints).

Schedule, for credentials that live `L` seconds (as seen when first fetched):

* stop signing `skew = min(30 s, L/10)` before expiry;
* renew at `expiry - lead`, `lead = min(15 min, L/2)`, moved up to 20 % of `lead` earlier
  at random so that replicas do not all call STS in the same second;
* after a failure, retry with capped exponential backoff (base `lead/50` within
  0.05-1 s, cap `lead/5` within 0.2-30 s, jittered) until a refresh succeeds, also after
  the credentials expired, so service resumes by itself when the source comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import structlog
from dateutil.parser import isoparse

from proxy.aws.signing import FrozenCredentials
from proxy.errors import ConfigError, SigningUnavailable

log = structlog.get_logger("ivs_proxy.credentials")

Clock = Callable[[], datetime.datetime]
Sleep = Callable[[float], Awaitable[None]]
#: Called after every refresh attempt with ("success" | "unchanged" | "failure", seconds).
RefreshHook = Callable[[str, float], None]
#: Best-effort "who are these credentials": an IAM ARN, or None if unknown.
IdentityLookup = Callable[[FrozenCredentials], "str | None"]
T = TypeVar("T")

MAX_SKEW = 30.0
MAX_LEAD = 15 * 60.0
JITTER = 0.2
#: Retry pacing before any credentials were obtained (their lifetime is not known yet).
UNKNOWN_LIFETIME = 3600.0


def what_to_do(profile: str | None = None) -> str:
    """What a person can do when the proxy has no credentials to sign with. Every message
    that says so ends with it: the 503 and `/readyz`, the failed refresh's log line, `whoami`."""
    name = profile or "NAME"
    laptop = (f"run `aws sso login --profile {name}`" if profile else
              "run `aws sso login --profile NAME` and start ivs-proxy with AWS_PROFILE=NAME")
    return (f"to fix: on a laptop, {laptop} (or `aws configure --profile {name}` for keys, with "
            "credentials.role_arn); in a pod, task or instance, check the role given to it "
            "(docs/credentials.md); `ivs-proxy whoami` shows what the chain finds. "
            "ivs-proxy keeps retrying: no restart needed")


LONG_LIVED_MESSAGE = (
    "the AWS credentials found ({source}) are long-lived access keys with no expiry; "
    "ivs-proxy signs only with short-lived credentials. Fix: set credentials.role_arn so the "
    "proxy assumes a role with them, or use an SSO profile (credentials.profile), or run where "
    "the platform issues role credentials (EKS IRSA or Pod Identity, ECS task role, EC2 "
    "instance profile). For local development only: credentials.allow_long_lived_credentials: true"
)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True, slots=True)
class CredentialSnapshot:
    credentials: FrozenCredentials
    expires_at: datetime.datetime | None  # None: long-lived keys
    source: str  # botocore's method name ("env", "container-role", "sso", ...) or ours
    identity: str | None = None  # the IAM ARN when the source knows it


class CredentialSource(Protocol):
    """Fetches one fresh set of credentials; blocking; called from a worker thread."""

    def fetch(self) -> CredentialSnapshot: ...


class SourceFailed(Exception):
    """A fetch failed; the message names the source and the reason, never a secret."""

    def __init__(self, source: str, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"{source}: {reason}")
        self.source = source


class LongLivedRefused(SourceFailed):
    """The source gave keys without an expiry and `allow_long_lived_credentials` is off."""

    def __init__(self, source: str) -> None:
        super().__init__(source, LONG_LIVED_MESSAGE.format(source=source))


@dataclass(frozen=True, slots=True)
class CredentialStatus:
    """Read-only view for metrics, readiness and `whoami`. Never holds key material."""

    source: str | None
    identity: str | None
    expires_at: datetime.datetime | None
    usable_until: datetime.datetime | None
    valid: bool
    last_outcome: str | None
    last_refresh_ok: bool | None
    last_error: str | None
    last_refresh_seconds: float | None
    last_refresh_at: datetime.datetime | None
    next_refresh_at: datetime.datetime | None
    consecutive_failures: int


# -- schedule -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Timings derived from a credential set's lifetime, in seconds."""

    lifetime: float

    @property
    def skew(self) -> float:
        # AWS checks the token's expiry when the request arrives, by its clock: leave room
        # for clock error and time in flight. Lifetimes of seconds exist only in tests,
        # where 30 s would exceed the lifetime itself, hence the 10 % cap.
        return min(MAX_SKEW, self.lifetime / 10)

    @property
    def lead(self) -> float:
        # 15 min is botocore's own advisory window (and its cache's expiry window). It
        # leaves room for several slow failed attempts (an STS attempt is bounded at about
        # 30 s) and their retries before the skew. IMDS and ECS may hand out the next set
        # only minutes before expiry: until then a renewal is "unchanged", retried on backoff.
        return min(MAX_LEAD, self.lifetime / 2)

    def refresh_delay(self, rng: random.Random) -> float:
        """Seconds from the fetch until the next planned refresh."""
        return self.lifetime - self.lead * (1 + JITTER * rng.random())

    def retry_delay(self, attempt: int, rng: random.Random) -> float:
        base = min(1.0, max(0.05, self.lead / 50))
        cap = min(30.0, max(0.2, self.lead / 5))
        grown: float = base * 2.0 ** min(attempt - 1, 30)
        return min(cap, grown) * (0.5 + 0.5 * rng.random())


@dataclass(frozen=True, slots=True)
class _Held:
    snapshot: CredentialSnapshot
    usable_until: datetime.datetime | None
    schedule: Schedule | None


# -- the store ----------------------------------------------------------------------------


class CredentialStore:
    """Holds the current snapshot; `run()` keeps it fresh.

    Only the event loop's thread mutates the store; a snapshot is published by one
    reference assignment, so `current()` never sees a key from one refresh and a token
    from another.
    """

    def __init__(
        self,
        source: CredentialSource,
        *,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        allow_long_lived: bool = False,
        identify: IdentityLookup | None = None,
        advice: str | None = None,
    ) -> None:
        self._source = source
        self._advice = advice or what_to_do()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._allow_long_lived = allow_long_lived
        self._identify = identify
        self._held: _Held | None = None
        self._identity: tuple[str, str | None] | None = None  # (access key, ARN)
        self._next_at: datetime.datetime | None = None
        self._retries = 0  # attempts since the last renewal: paces the backoff
        self._failures = 0  # consecutive failed attempts
        self._refused_long_lived: str | None = None  # the source that offered long-lived keys
        self._attempt_started: float | None = None  # perf_counter() of the fetch in flight
        self._last_outcome: str | None = None
        self._last_error: str | None = None
        self._last_seconds: float | None = None
        self._last_at: datetime.datetime | None = None
        self.on_refresh: list[RefreshHook] = []

    @property
    def snapshot(self) -> CredentialSnapshot | None:
        held = self._held
        return held.snapshot if held else None

    def current(self) -> FrozenCredentials:
        """The credentials to sign with now; SigningUnavailable (503) if none are valid."""
        held = self._held
        if held is not None and (held.usable_until is None or self._clock() < held.usable_until):
            return held.snapshot.credentials
        raise SigningUnavailable(self.unavailable_reason() or "the AWS credentials just expired")

    def unavailable_reason(self) -> str | None:
        """Why nothing can be signed now (names the source, never a secret); None if valid."""
        held = self._held
        error = self._last_error
        if held is None:
            if error is None:
                return "ivs-proxy has no AWS credentials yet (the first fetch is still running)"
            return f"ivs-proxy has no AWS credentials yet ({error}); {self._advice}"
        if held.usable_until is None or self._clock() < held.usable_until:
            return None
        expiry = held.snapshot.expires_at.isoformat() if held.snapshot.expires_at else "?"
        if error is None and self._attempt_started is not None:
            waited = time.perf_counter() - self._attempt_started
            error = f"a renewal has been waiting on the source for {waited:.1f} s"
        return (
            f"ivs-proxy's AWS credentials from {held.snapshot.source} expire at {expiry} and could "
            f"not be renewed ({error or 'renewal pending'}); {self._advice}"
        )

    def is_valid(self) -> bool:
        return self.unavailable_reason() is None

    @property
    def status(self) -> CredentialStatus:
        held = self._held
        snapshot = held.snapshot if held else None
        identity = snapshot.identity if snapshot else None
        if snapshot and identity is None and self._identity:
            key, arn = self._identity
            identity = arn if key == snapshot.credentials.access_key else None
        return CredentialStatus(
            source=snapshot.source if snapshot else None,
            identity=identity,
            expires_at=snapshot.expires_at if snapshot else None,
            usable_until=held.usable_until if held else None,
            valid=self.is_valid(),
            last_outcome=self._last_outcome,
            last_refresh_ok=None if self._last_outcome is None else self._last_outcome != "failure",
            last_error=self._last_error,
            last_refresh_seconds=self._last_seconds,
            last_refresh_at=self._last_at,
            next_refresh_at=self._next_at,
            consecutive_failures=self._failures,
        )

    async def start(self) -> None:
        """The first fetch, at start-up. Long-lived keys that are not allowed are a ConfigError
        (exit code 2); any other failure leaves the proxy not ready while `run()` retries."""
        await self.refresh()
        if self._held is None and self._refused_long_lived:
            raise ConfigError("credentials", LONG_LIVED_MESSAGE.format(source=self._refused_long_lived))

    async def run(self) -> None:
        """The background refresh loop; returns only for long-lived keys; cancelled at shutdown."""
        if self._next_at is None and self._held is None:
            self._next_at = self._clock()
        while True:
            await self._identify_current()
            if self._next_at is None:
                return
            await self._sleep(max(0.0, (self._next_at - self._clock()).total_seconds()))
            await self.refresh()

    async def refresh(self) -> str:
        """One attempt: fetch, check, publish. Returns the outcome; never raises."""
        self._attempt_started = started = time.perf_counter()
        try:
            snapshot = self._checked(await _off_loop(self._source.fetch))
        except Exception as exc:  # noqa: BLE001 (any provider failure: keep serving what we have)
            return self._failed(exc, time.perf_counter() - started)
        finally:
            self._attempt_started = None
        return self._publish(snapshot, time.perf_counter() - started)

    def _checked(self, snapshot: CredentialSnapshot) -> CredentialSnapshot:
        if snapshot.expires_at is None:
            if not self._allow_long_lived:
                raise LongLivedRefused(snapshot.source)
            return snapshot
        expires_at = parse_expiry(snapshot.expires_at)  # a custom source may hand over naive times
        if expires_at <= self._clock():
            raise SourceFailed(snapshot.source, f"returned credentials that expired at {expires_at.isoformat()}")
        return dataclasses.replace(snapshot, expires_at=expires_at)

    def _publish(self, snapshot: CredentialSnapshot, seconds: float) -> str:
        now = self._clock()
        previous = self._held
        unchanged = (
            previous is not None
            and previous.snapshot.credentials == snapshot.credentials
            and previous.snapshot.expires_at == snapshot.expires_at
        )
        if snapshot.expires_at is None:
            self._held = _Held(snapshot, None, None)
            self._next_at = None  # long-lived keys (explicitly allowed): nothing to renew
        else:
            if unchanged and previous is not None and previous.schedule is not None:
                schedule = previous.schedule  # same set again: keep its original lifetime
            else:
                schedule = Schedule((snapshot.expires_at - now).total_seconds())
            usable = snapshot.expires_at - datetime.timedelta(seconds=schedule.skew)
            self._held = _Held(snapshot, usable, schedule)
            if unchanged:
                # The source has nothing newer yet (IMDS and ECS rotate late; env never does).
                self._retries += 1
                delay = schedule.retry_delay(self._retries, self._rng)
            else:
                self._retries = 0
                delay = schedule.refresh_delay(self._rng)
            self._next_at = now + datetime.timedelta(seconds=delay)
        self._failures = 0
        self._last_error = None
        self._refused_long_lived = None
        return self._record("unchanged" if unchanged else "success", seconds, now)

    def _failed(self, exc: Exception, seconds: float) -> str:
        now = self._clock()
        self._failures += 1
        self._retries += 1
        self._last_error = _safe_reason(exc, self._held)
        self._refused_long_lived = exc.source if isinstance(exc, LongLivedRefused) else None
        held = self._held
        schedule = held.schedule if held and held.schedule else Schedule(UNKNOWN_LIFETIME)
        self._next_at = now + datetime.timedelta(seconds=schedule.retry_delay(self._retries, self._rng))
        return self._record("failure", seconds, now)

    def _record(self, outcome: str, seconds: float, now: datetime.datetime) -> str:
        self._last_outcome, self._last_seconds, self._last_at = outcome, seconds, now
        status = self.status
        level = logging.INFO if outcome != "failure" else (logging.WARNING if status.valid else logging.ERROR)
        log.log(
            level,
            "credentials_refresh",
            outcome=outcome,
            source=status.source,
            identity=status.identity,
            expires_at=_iso(status.expires_at),
            valid=status.valid,
            seconds=round(seconds, 4),
            failures=self._failures,
            next_refresh_at=_iso(self._next_at),
            error=self._last_error,
            **({} if status.valid else {"fix": self._advice}),  # nothing can be signed: say what to do
        )
        for hook in tuple(self.on_refresh):
            try:
                hook(outcome, seconds)
            except Exception:  # a broken metrics hook must not stop renewals
                log.exception("credentials_refresh_hook_failed")
        return outcome

    async def _identify_current(self) -> None:
        held = self._held
        if self._identify is None or held is None or held.snapshot.identity is not None:
            return
        key = held.snapshot.credentials.access_key
        if self._identity is not None and self._identity[0] == key:
            return
        lookup = self._identify
        try:
            arn = await _off_loop(lambda: lookup(held.snapshot.credentials))
        except Exception:  # noqa: BLE001 (best effort: unknown identity is not a refresh failure)
            arn = None
        self._identity = (key, arn)
        log.info("credentials_identity", source=held.snapshot.source, identity=arn)


async def _off_loop(call: Callable[[], T]) -> T:
    """Run a blocking call in a fresh daemon thread and await its result.

    Not `asyncio.to_thread`: the default executor is joined when `asyncio.run()` ends and
    at interpreter exit, so a source stuck in a long STS read would hold up a SIGTERM
    shutdown; a daemon thread is simply abandoned. The refresh loop awaits each call, so at
    most one runs at a time and a hanging source cannot pile up threads.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():  # the awaiting task was cancelled (shutdown)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = call()
        except BaseException as exc:  # noqa: BLE001 (handed to the awaiting task, which decides)
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we were blocked
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name="ivs-proxy-credentials", daemon=True).start()
    return await future


def parse_expiry(value: str | datetime.datetime) -> datetime.datetime:
    parsed = value if isinstance(value, datetime.datetime) else isoparse(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _safe_reason(exc: Exception, held: _Held | None) -> str:
    # botocore never puts secrets in its errors, but a misbehaving endpoint's error body can
    # be quoted in them: blank out the secrets we hold and keep the text short.
    text = str(exc) if isinstance(exc, SourceFailed) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    if held is not None:
        for secret in (held.snapshot.credentials.secret_key, held.snapshot.credentials.token):
            if secret:
                text = text.replace(secret, "***")
    return text if len(text) <= 600 else text[:597] + "..."
