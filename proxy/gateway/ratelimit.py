"""Per-caller rate limits: token buckets, per process or shared through Redis.

Each rule of `rate_limits.rules` (and, with `defaults: ivs-quotas`, IVS's published call
rates) gives a caller buckets: one per operation (`per: operation`), one for every
operation the rule matches (`per: caller`), or one per operation and ARN named
(`per: resource`, e.g. PutMetadata's 5 TPS per channel). A request takes one token from
every bucket that applies to it, or from none: it is refused (429 ThrottlingException
with Retry-After) as soon as one is empty, and then costs nothing.

Without Redis the buckets are per process, so N replicas allow N times the rate. With
Redis they are shared (one Lua script, atomic, on Redis's clock). If Redis fails, the
per-process buckets take over at once (fail open for limits only: authentication and
policy never depend on Redis), and `shared_state.py` says so in logs and metrics.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from proxy.config import RateLimitRule, RateLimitsConfig
from proxy.errors import ProxyError
from proxy.gateway.shared_state import SharedState, SharedStateDown
from proxy.model.catalog import Operation
from proxy.policy import wildcard

#: IVS's published API call-rate quotas, per account and region (TPS; not adjustable):
#: docs.aws.amazon.com/ivs/latest/{LowLatency,RealTime,Chat}UserGuide/service-quotas.html.
#: Operations not listed get COMMON_QUOTA. PutMetadata also has 5 TPS per channel.
IVS_QUOTAS: dict[tuple[str, str], float] = {
    ("ivs", "PutMetadata"): 155,
    **{("ivs", op): 3 for op in ("DeletePlaybackKeyPair", "GetPlaybackKeyPair", "ImportPlaybackKeyPair",
                                  "ListPlaybackKeyPairs", "CreateRecordingConfiguration",
                                  "DeleteRecordingConfiguration", "GetRecordingConfiguration",
                                  "ListRecordingConfigurations")},
    ("ivs", "BatchStartViewerSessionRevocation"): 2,
    ("ivs-realtime", "CreateParticipantToken"): 50,
    **{("ivs-realtime", op): 3 for op in ("DeletePublicKey", "GetPublicKey", "ImportPublicKey", "ListPublicKeys")},
    **{(svc, op): 10 for svc in ("ivs-realtime", "ivschat")
       for op in ("ListTagsForResource", "TagResource", "UntagResource")},
    **{("ivschat", op): 100 for op in ("DeleteMessage", "DisconnectUser", "SendEvent")},
    ("ivschat", "CreateChatToken"): 200,
    **{("ivschat", op): 3 for op in ("CreateLoggingConfiguration", "DeleteLoggingConfiguration",
                                      "GetLoggingConfiguration", "ListLoggingConfigurations",
                                      "UpdateLoggingConfiguration")},
}
IVS_PER_RESOURCE_QUOTAS: dict[tuple[str, str], float] = {("ivs", "PutMetadata"): 5}
COMMON_QUOTA = 5.0


class Throttled(ProxyError):
    status = 429
    error_type = "ThrottlingException"
    reason = "throttled"


@dataclass(frozen=True, slots=True)
class Limit:
    rule: str  # stable id: replicas with the same rule share its buckets
    rate: float
    burst: float
    per: str
    description: str


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    limit: Limit


class RateLimits:
    """Which limits apply to a caller's call of an operation; resolved once per pair."""

    def __init__(self, config: RateLimitsConfig) -> None:
        self._rules = tuple((rule, wildcard(rule.action, ignore_case=True)) for rule in config.rules)
        self._defaults = config.defaults == "ivs-quotas"
        self._share = config.default_share
        self._cache: dict[tuple[str, Operation], tuple[Limit, ...]] = {}

    @property
    def active(self) -> bool:
        return bool(self._rules) or self._defaults

    def limits_for(self, caller: str, operation: Operation) -> tuple[Limit, ...]:
        found = self._cache.get((caller, operation))
        if found is None:
            found = self._cache[(caller, operation)] = tuple(self._resolve(caller, operation))
        return found

    def buckets(self, caller: str, operation: Operation, resources: Sequence[str]) -> list[Bucket]:
        op = f"{operation.service.name}:{operation.name}"  # not the IAM action: ivs-realtime shares "ivs:"
        buckets = []
        for limit in self.limits_for(caller, operation):
            if limit.per == "caller":
                buckets.append(Bucket(f"{limit.rule}|{caller}", limit))
            elif limit.per == "resource" and resources:
                buckets += [Bucket(f"{limit.rule}|{caller}|{op}|{arn}", limit) for arn in dict.fromkeys(resources)]
            else:
                buckets.append(Bucket(f"{limit.rule}|{caller}|{op}", limit))
        return buckets

    def _resolve(self, caller: str, operation: Operation) -> Iterable[Limit]:
        for rule, pattern in self._rules:
            if ("*" in rule.callers or caller in rule.callers) and pattern.fullmatch(operation.iam_action):
                yield _limit(rule)
        if self._defaults:
            key = (operation.service.name, operation.name)
            rate = IVS_QUOTAS.get(key, COMMON_QUOTA) * self._share
            yield Limit(f"q:{key[0]}:{key[1]}", rate, max(1.0, rate), "operation", f"{rate:g}/s (IVS quota)")
            per_resource = IVS_PER_RESOURCE_QUOTAS.get(key)
            if per_resource is not None:
                rate = per_resource * self._share
                yield Limit(f"qr:{key[0]}:{key[1]}", rate, max(1.0, rate), "resource",
                            f"{rate:g}/s per resource (IVS quota)")


def _limit(rule: RateLimitRule) -> Limit:
    burst = rule.burst if rule.burst is not None else max(1.0, rule.rate)
    text = f"{rule.action}|{rule.rate}|{burst}|{rule.per}|{','.join(sorted(rule.callers))}"
    rule_id = "r:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    return Limit(rule_id, rule.rate, burst, rule.per, f"{rule.rate:g}/s per {rule.per}")


class LocalBuckets:
    """Per-process buckets; at most `max_buckets` (least recently used ones are forgotten,
    which only ever lets a forgotten caller start again with a full bucket)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self._clock = clock
        self._max = max_buckets
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def take(self, buckets: Sequence[Bucket]) -> tuple[float, int]:
        """(0.0, -1) if a token was taken from every bucket; else (seconds until that is
        possible, index of the bucket that is emptiest)."""
        now = self._clock()
        waits = []
        levels = []
        for bucket in buckets:
            tokens, at = self._state.get(bucket.key, (bucket.limit.burst, now))
            level = min(bucket.limit.burst, tokens + (now - at) * bucket.limit.rate)
            levels.append(level)
            waits.append((1 - level) / bucket.limit.rate if level < 1 else 0.0)
        wait = max(waits)
        if wait > 0:
            return wait, waits.index(wait)
        for bucket, level in zip(buckets, levels):
            self._state[bucket.key] = (level - 1, now)
            self._state.move_to_end(bucket.key)
        while len(self._state) > self._max:
            self._state.popitem(last=False)
        return 0.0, -1


#: KEYS: bucket keys; ARGV: rate1, burst1, rate2, burst2, ... Returns "WAIT INDEX" (0-based
#: index of the emptiest bucket) or "0 -1" when a token was taken from each.
#: Redis's own clock, so replicas with skewed clocks still share one refill rate.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local levels = {}
local wait, worst = 0, -1
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', key, 'tokens', 'at')
  local tokens, at = tonumber(state[1]) or burst, tonumber(state[2]) or now
  local level = math.min(burst, tokens + math.max(0, now - at) * rate)
  levels[i] = level
  if level < 1 and (1 - level) / rate > wait then wait, worst = (1 - level) / rate, i - 1 end
end
if wait > 0 then return tostring(wait) .. ' ' .. worst end
for i, key in ipairs(KEYS) do
  local rate, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  redis.call('HSET', key, 'tokens', tostring(levels[i] - 1), 'at', tostring(now))
  redis.call('PEXPIRE', key, math.ceil(burst / rate * 1000) + 1000)
end
return "0 -1"
"""


class RateLimiter:
    def __init__(self, limits: RateLimits, local: LocalBuckets, shared: SharedState | None = None) -> None:
        self.limits = limits
        self._local = local
        self._shared = shared
        self._script = shared.client.register_script(_TAKE) if shared is not None else None

    async def check(self, caller: str, operation: Operation, resources: Sequence[str]) -> None:
        buckets = self.limits.buckets(caller, operation, resources)
        if not buckets:
            return
        wait, index = await self._take(buckets)
        if wait > 0:
            raise Throttled(
                f"caller {caller!r} is over its rate limit for {operation.iam_action} "
                f"({buckets[index].limit.description}); "
                f"retry after {math.ceil(wait)} s", headers={"Retry-After": str(max(1, math.ceil(wait)))})

    async def _take(self, buckets: Sequence[Bucket]) -> tuple[float, int]:
        if self._shared is not None and self._script is not None:
            shared, script = self._shared, self._script
            keys = [f"{shared.prefix}rl:{b.key}" for b in buckets]
            args = [v for b in buckets for v in (b.limit.rate, b.limit.burst)]
            try:
                answer = await shared.call("rate_limit", lambda client: script(keys=keys, args=args, client=client))
                wait, _, index = (answer.decode() if isinstance(answer, bytes) else str(answer)).partition(" ")
                return float(wait), int(index)
            except SharedStateDown:
                pass  # fail open to per-process limits, never to no limits
        return self._local.take(buckets)
