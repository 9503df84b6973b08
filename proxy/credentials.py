"""The proxy's own AWS credentials: resolved off the event loop, read as frozen snapshots.

The request path calls `CredentialStore.current()`, which never touches the network: it
returns the snapshot the background task last fetched, or refuses (503) if that snapshot
is missing or expired. Fetching goes through botocore's standard provider chain in a worker
thread, because botocore's providers block (HTTP to STS, IMDS, SSO, container endpoints).
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import botocore.credentials
import botocore.session
import structlog

from proxy.errors import SigningUnavailable
from proxy.signing import FrozenCredentials

log = structlog.get_logger("ivs_proxy.credentials")

Clock = Callable[[], datetime.datetime]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


@dataclass(frozen=True, slots=True)
class CredentialSnapshot:
    credentials: FrozenCredentials
    expires_at: datetime.datetime | None  # None: long-lived keys
    source: str  # botocore's method name, e.g. "assume-role", "env", "container-role"


class CredentialSource(Protocol):
    """Fetches one set of credentials; blocking; called from a worker thread."""

    def fetch(self) -> CredentialSnapshot: ...


class BotocoreChainSource:
    """botocore's standard chain: env, profiles, SSO, assume-role, web identity, container, IMDS."""

    def __init__(self, session: botocore.session.Session) -> None:
        self._session = session
        self._resolved: botocore.credentials.Credentials | None = None

    def fetch(self) -> CredentialSnapshot:
        if self._resolved is None:
            self._resolved = self._session.get_credentials()
            if self._resolved is None:
                raise LookupError("botocore's provider chain found no credentials")
        frozen = self._resolved.get_frozen_credentials()
        expiry = getattr(self._resolved, "_expiry_time", None)
        return CredentialSnapshot(
            FrozenCredentials(frozen.access_key, frozen.secret_key, frozen.token),
            expiry,
            self._resolved.method or "unknown",
        )


class CredentialStore:
    """Holds the current snapshot; a background task keeps it fresh."""

    def __init__(
        self,
        source: CredentialSource,
        *,
        clock: Clock = utc_now,
        refresh_margin: datetime.timedelta = datetime.timedelta(minutes=15),
        retry_interval: datetime.timedelta = datetime.timedelta(seconds=10),
    ) -> None:
        self._source = source
        self._clock = clock
        self._margin = refresh_margin
        self._retry = retry_interval
        self._snapshot: CredentialSnapshot | None = None
        self._last_error: str | None = None

    @property
    def snapshot(self) -> CredentialSnapshot | None:
        return self._snapshot

    def current(self) -> FrozenCredentials:
        snapshot = self._snapshot
        if snapshot is None:
            raise SigningUnavailable(f"no AWS credentials are available ({self._last_error or 'not loaded yet'})")
        if snapshot.expires_at is not None and snapshot.expires_at <= self._clock():
            raise SigningUnavailable(
                f"the proxy's AWS credentials from {snapshot.source} expired and could not be renewed "
                f"({self._last_error or 'refresh pending'})"
            )
        return snapshot.credentials

    def is_valid(self) -> bool:
        try:
            self.current()
        except SigningUnavailable:
            return False
        return True

    async def refresh(self) -> bool:
        try:
            snapshot = await asyncio.to_thread(self._source.fetch)
        except Exception as exc:  # any provider failure: keep serving with what we have
            self._last_error = f"{type(exc).__name__}: {_safe_reason(exc)}"
            log.warning("credentials_refresh_failed", error=self._last_error)
            return False
        self._snapshot = snapshot
        self._last_error = None
        log.info(
            "credentials_refreshed",
            source=snapshot.source,
            expires_at=snapshot.expires_at.isoformat() if snapshot.expires_at else None,
        )
        return True

    def _next_delay(self, succeeded: bool) -> float:
        snapshot = self._snapshot
        if not succeeded or snapshot is None:
            return self._retry.total_seconds()
        if snapshot.expires_at is None:
            return 3600.0
        due = snapshot.expires_at - self._margin - self._clock()
        return max(due.total_seconds(), self._retry.total_seconds())

    async def run(self) -> None:
        """The background refresh loop; cancelled at shutdown."""
        succeeded = self._snapshot is not None
        while True:
            await asyncio.sleep(self._next_delay(succeeded))
            succeeded = await self.refresh()


def _safe_reason(exc: Exception) -> str:
    # Provider errors can quote a profile or URL but botocore never puts secrets in them;
    # still, keep it short so a misbehaving provider cannot dump a response body here.
    text = str(exc).replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."
