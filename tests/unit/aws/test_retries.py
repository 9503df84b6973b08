"""The retry rules (proxy/aws/retries.py): which operations may be repeated, which outcomes
deserve a retry, the backoff formula, the quota, and the deadline; with a fake clock."""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from proxy.aws.retries import (
    Retrier,
    RetryQuota,
    RetrySettings,
    caller_seconds_left,
    error_code,
    is_idempotent,
    non_idempotent,
    retry_after,
    retry_reason,
    verb,
)
from proxy.config import UpstreamConfig
from proxy.errors import DeadlinePassed, UpstreamTimeout, UpstreamUnreachable
from proxy.model.catalog import Catalog

DOC = Path(__file__).resolve().parents[3] / "docs" / "resilience.md"
NOW = 1_800_000_000.0


@dataclass
class FakeAnswer:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    discarded: bool = False

    async def discard(self) -> None:
        self.discarded = True


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def retrier(settings: RetrySettings | None = None, quota: int = 500, rng: float = 1.0) -> tuple[Retrier, FakeTime]:
    clock = FakeTime()
    return Retrier(settings or RetrySettings.from_config(), RetryQuota(quota), rng=lambda: rng, sleep=clock.sleep,
                   monotonic=clock.monotonic, wall=lambda: NOW), clock


def script(*outcomes: FakeAnswer | Exception):  # type: ignore[no-untyped-def]
    pending = list(outcomes)
    timeouts: list[float] = []

    async def attempt(timeout: float) -> FakeAnswer:
        timeouts.append(timeout)
        outcome = pending.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    attempt.timeouts = timeouts  # type: ignore[attr-defined]
    return attempt


# -- the rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [("BatchGetChannel", "BatchGet"), ("BatchStartViewerSessionRevocation", "BatchStart"),
     ("CreateChannel", "Create"), ("ListTagsForResource", "List"), ("PutMetadata", "Put"), ("Weird", "Weird")],
)
def test_verb(name: str, expected: str) -> None:
    assert verb(name) == expected


def test_the_rule_gives_the_expected_non_idempotent_operations() -> None:
    listed = non_idempotent(Catalog.load().operations)
    for name in ("ivs:CreateChannel", "ivs:PutMetadata", "ivs:InsertAdBreak", "ivs:StartViewerSessionRevocation",
                 "ivs:BatchStartViewerSessionRevocation", "ivs:ImportPlaybackKeyPair", "ivs-realtime:CreateStage",
                 "ivs-realtime:CreateParticipantToken", "ivs-realtime:StartComposition", "ivschat:SendEvent",
                 "ivschat:CreateChatToken"):
        assert name in listed
    for name in ("GetChannel", "ListChannels", "BatchGetChannel", "UpdateChannel", "DeleteChannel", "TagResource",
                 "UntagResource", "StopStream", "DisconnectUser", "RevokeConnectionToken"):
        assert is_idempotent(name)
    # Every verb in the models is one the rule knows about on purpose; a new one fails here
    # so that someone decides, and until then it counts as non-idempotent.
    reviewed = {"Get", "List", "BatchGet", "Update", "Tag", "Untag", "Delete", "Stop", "Disconnect", "Revoke",
                "Create", "Import", "Start", "BatchStart", "Put", "Insert", "Send"}
    assert {verb(op.name) for op in Catalog.load().operations} <= reviewed


def test_the_documented_list_is_the_rules_list() -> None:
    section = DOC.read_text().split("<!-- non-idempotent:begin -->")[1].split("<!-- non-idempotent:end -->")[0]
    documented = re.findall(r"`([a-z-]+:[A-Za-z]+)`", section)
    assert documented == non_idempotent(Catalog.load().operations)


def test_an_idempotency_token_makes_a_start_repeatable() -> None:
    composition = next(op for op in Catalog.load().operations if op.name == "StartComposition")
    stage = next(op for op in Catalog.load().operations if op.name == "CreateStage")
    r, _ = retrier()
    assert r.repeatable(composition, {"stageArn": "a", "idempotencyToken": "t-1"})
    assert not r.repeatable(composition, {"stageArn": "a"})
    assert not r.repeatable(stage, {"idempotencyToken": "not a member of CreateStage"})


# -- which outcomes deserve a retry ----------------------------------------------------


def answer(status: int, code: str | None = None, body: bytes = b"") -> FakeAnswer:
    return FakeAnswer(status, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/"} if code else {}, body)


@pytest.mark.parametrize(
    ("outcome", "repeatable", "reason"),
    [
        (answer(200), False, None),
        (answer(404, "ResourceNotFoundException"), True, None),
        (answer(429), False, "throttled"),
        (answer(429, "ThrottlingException"), False, "throttled"),
        (answer(400, "ThrottlingException"), False, "throttled"),
        (answer(400, body=b'{"__type": "com.amazon#ThrottlingException"}'), False, "throttled"),
        (answer(500, "InternalServerException"), True, "server_error"),
        (answer(500, "InternalServerException"), False, None),
        (answer(503, "ServiceUnavailable"), True, "server_error"),
        (answer(501), True, None),
        (answer(400, "RequestTimeoutException"), True, "server_error"),
        (UpstreamUnreachable("refused", kind="connect", sent=False), False, "connect"),
        (UpstreamTimeout("connect timeout", kind="connect", sent=False), False, "connect"),
        (UpstreamUnreachable("bad certificate", kind="tls", sent=False), True, None),
        (UpstreamTimeout("stall", kind="timeout"), True, "timeout"),
        (UpstreamTimeout("stall", kind="timeout"), False, None),
        (UpstreamUnreachable("reset", kind="reset"), True, "reset"),
        (UpstreamUnreachable("reset", kind="reset"), False, None),
        (UpstreamUnreachable("garbage", kind="malformed"), False, None),
    ],
)
def test_retry_reason(outcome: FakeAnswer | UpstreamUnreachable, repeatable: bool, reason: str | None) -> None:
    assert retry_reason(outcome, repeatable) == reason


def test_error_code_sources() -> None:
    assert error_code({"x-amzn-ErrorType": "ThrottlingException:http://x/"}, b"") == "ThrottlingException"
    assert error_code({}, b'{"code": "SlowDown"}') == "SlowDown"
    assert error_code({}, b"not json") is None
    assert error_code({}, b"[1]") is None


def test_retry_after_forms() -> None:
    assert retry_after({"Retry-After": "3"}, NOW) == 3
    assert retry_after({"x-amz-retry-after": "250", "Retry-After": "9"}, NOW) == 0.25
    date = email.utils.formatdate(NOW + 7, usegmt=True)
    assert retry_after({"Retry-After": date}, NOW) == pytest.approx(7)
    assert retry_after({"Retry-After": email.utils.formatdate(NOW - 60, usegmt=True)}, NOW) == 0
    assert retry_after({"Retry-After": "soon"}, NOW) is None
    assert retry_after({}, NOW) is None


def test_caller_deadline_from_amz_sdk_request() -> None:
    assert caller_seconds_left("attempt=1; max=3", NOW) is None
    assert caller_seconds_left(None, NOW) is None
    assert caller_seconds_left(f"ttl={_stamp(NOW + 42)}; attempt=2; max=3", NOW) == 42
    assert caller_seconds_left(f"attempt=2;ttl={_stamp(NOW - 3)}", NOW) == -3
    assert caller_seconds_left("attempt=2; ttl=nonsense", NOW) is None
    assert caller_seconds_left("ttl=20271399T000000Z", NOW) is None


# -- backoff, quota, deadline ----------------------------------------------------------


def test_full_jitter_backoff_bounds() -> None:
    low, _ = retrier(rng=0.0)
    high, _ = retrier(rng=0.999999)
    for n in range(1, 12):
        assert low.backoff(n, "server_error") == 0
        assert high.backoff(n, "server_error") == pytest.approx(min(0.05 * 2 ** (n - 1), 20) * 0.999999)
        assert high.backoff(n, "throttled") == pytest.approx(min(1.0 * 2 ** (n - 1), 20) * 0.999999)
    assert high.backoff(30, "throttled") <= 20


async def test_run_waits_the_backoff_and_stops_at_max_attempts() -> None:
    r, clock = retrier(rng=0.5)
    failing = [answer(503, "ServiceUnavailable") for _ in range(3)]
    retried: list[str] = []
    last = await r.run(script(*failing), repeatable=True, deadline=clock.now + 20, retried=retried)
    assert last is failing[2]
    assert clock.slept == [0.025, 0.05]
    assert retried == ["server_error", "server_error"]
    assert failing[0].discarded and failing[1].discarded and not failing[2].discarded


async def test_run_waits_at_least_retry_after() -> None:
    r, clock = retrier(rng=0.0)
    await r.run(script(FakeAnswer(429, {"Retry-After": "4"}), answer(200)), repeatable=False,
                deadline=clock.now + 20, retried=[])
    assert clock.slept == [4]


async def test_run_never_waits_past_the_deadline() -> None:
    r, clock = retrier(rng=0.0)
    attempt = script(FakeAnswer(429, {"Retry-After": "4"}), answer(200))
    last = await r.run(attempt, repeatable=True, deadline=clock.now + 3, retried=[])
    assert last.status == 429 and clock.slept == []
    # and each attempt's timeout is cut to what is left
    r2, clock2 = retrier(RetrySettings.from_config(upstream=UpstreamConfig(attempt_timeout_seconds=10)), rng=0.0)
    attempt2 = script(UpstreamTimeout("stall", kind="timeout"), answer(200))
    clock2.now = 100.0
    await r2.run(attempt2, repeatable=True, deadline=104.0, retried=[])
    assert attempt2.timeouts == [4.0, 4.0]  # type: ignore[attr-defined]


async def test_run_refuses_to_start_after_the_deadline() -> None:
    r, clock = retrier()
    with pytest.raises(DeadlinePassed):
        await r.run(script(answer(200)), repeatable=True, deadline=clock.now - 1, retried=[])


async def test_quota_costs_and_refunds() -> None:
    r, clock = retrier(quota=20, rng=0.0)
    await r.run(script(UpstreamTimeout("t", kind="timeout"), answer(200)), repeatable=True,
                deadline=clock.now + 20, retried=[])
    assert r.quota.available == 20  # a timeout retry costs 10; its success gives the 10 back
    await r.run(script(UpstreamTimeout("t", kind="timeout"), answer(500, "InternalServerException"),
                       answer(500, "InternalServerException")), repeatable=True, deadline=clock.now + 20, retried=[])
    assert r.quota.available == 5  # 10 + 5 spent, nothing back for a failure
    with pytest.raises(UpstreamTimeout):
        await r.run(script(UpstreamTimeout("t", kind="timeout")), repeatable=True, deadline=clock.now + 20,
                    retried=[])
    assert r.quota.available == 5  # 10 needed, 5 left: no retry
    await r.run(script(answer(200)), repeatable=True, deadline=clock.now + 20, retried=[])
    assert r.quota.available == 6
    quota = RetryQuota(3)
    quota.release(10)
    assert quota.available == 3


def test_deadline_is_the_sooner_of_total_timeout_and_the_callers_ttl() -> None:
    r, clock = retrier(RetrySettings.from_config(upstream=UpstreamConfig(total_timeout_seconds=20)))
    assert r.deadline(None) == clock.now + 20
    soon = "ttl=" + _stamp(NOW + 5)
    assert r.deadline(soon) == pytest.approx(clock.now + 5)
    assert r.deadline("ttl=" + _stamp(NOW + 500)) == clock.now + 20


def _stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
