"""The replay window: a SigV4 signature is accepted once while its date is acceptable.

A signature covers the method, path, query, signed headers, body and the second it was
made, so two requests with one signature are the same request sent twice. SDK retries
are not affected: each attempt is signed afresh and carries a new `amz-sdk-request:
attempt=N` header. A signature is remembered only after it verified, so nobody can burn
a caller's signature by sending garbage under it first, and it is spent only when its
request is forwarded: refused at the gateway, it is released again (see `release`).

Per process, the window is a dict pruned in order of expiry. With Redis (`redis.url`)
every replica also does `SET NX EX` on a shared key, so a request replayed to another
replica is refused too. If Redis is down: `replay_on_outage: refuse` answers SDK-native
callers 503 (a replay to another replica could not be told apart), `local` accepts them
with the per-process window only (replays across replicas get through while it lasts).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from collections import deque
from collections.abc import Callable

from proxy.errors import ProxyError
from proxy.gateway.shared_state import SharedState, SharedStateDown

#: Redis TTLs get this on top of the signature's own remaining life: replicas' clocks
#: may disagree by a little.
CLOCK_MARGIN_SECONDS = 30


class ReplayWindowUnavailable(ProxyError):
    status = 503
    error_type = "ServiceUnavailableException"
    reason = "replay_window_unavailable"


class ReplayWindow:
    def __init__(self, max_skew_seconds: float, shared: SharedState | None = None, on_outage: str = "refuse",
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A date is accepted within +-skew of now, so a signature first seen now is
        # acceptable for at most 2 * skew more: remember it that long (plus a margin).
        self._local_ttl = 2 * max_skew_seconds + CLOCK_MARGIN_SECONDS
        self._shared = shared
        self._on_outage = on_outage
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._expiry: deque[tuple[float, str]] = deque()  # in insertion order = expiry order

    def __len__(self) -> int:
        return len(self._seen)

    async def first_use(self, signature: str, remaining_seconds: float) -> bool:
        """True the first time `signature` is seen; `remaining_seconds`: how long it stays valid."""
        fingerprint = hashlib.sha256(signature.encode()).hexdigest()[:32]  # never store the signature
        now = self._clock()
        self._prune(now)
        if fingerprint in self._seen:
            return False
        if self._shared is not None:
            ttl = max(1, math.ceil(remaining_seconds)) + CLOCK_MARGIN_SECONDS
            key = f"{self._shared.prefix}replay:{fingerprint}"
            try:
                first = await self._shared.call("replay", lambda client: client.set(key, b"1", nx=True, ex=ttl))
            except SharedStateDown:
                if self._on_outage == "refuse":
                    raise ReplayWindowUnavailable(
                        "the replay window shared between gateway replicas is unavailable; retry shortly",
                        headers={"Retry-After": "1"}) from None
                first = True
            if not first:
                return False
        self._seen[fingerprint] = now + self._local_ttl
        self._expiry.append((now + self._local_ttl, fingerprint))
        return True

    async def release(self, signature: str) -> None:
        """Forget a signature whose request was refused before it was forwarded (our own
        429, a policy denial): nothing was done with it, so the SDK's retry, which in the
        same second carries the same signature, must not be taken for a replay."""
        fingerprint = hashlib.sha256(signature.encode()).hexdigest()[:32]
        self._seen.pop(fingerprint, None)  # its _expiry entry just expires later
        if self._shared is not None:
            key = f"{self._shared.prefix}replay:{fingerprint}"
            with contextlib.suppress(SharedStateDown):
                await self._shared.call("replay", lambda client: client.delete(key))

    def _prune(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, fingerprint = self._expiry.popleft()
            self._seen.pop(fingerprint, None)
