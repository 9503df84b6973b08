"""Retries, timeouts and upstream faults against a real loopback upstream that misbehaves
on cue (tests/support/fault_upstream.py): how many attempts each request gets, how long
the proxy waits between them, and what the caller sees when AWS's side breaks."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.app import Proxy, build_proxy
from proxy.aws.credentials import utc_now
from proxy.config import load_config
from tests.support import fault_upstream as fault
from tests.support.access_log import captured_access_lines
from tests.support.fault_upstream import FaultUpstream
from tests.support.inprocess import TEST_CREDENTIALS, StaticSource
from tests.support.net import free_port

JSON_HEADERS = {"Content-Type": "application/json"}
CREATE = ("/CreateChannel", b'{"name": "one"}')
LIST = ("/ListChannels", b"{}")
#: Short waits so that every test runs in well under a second (except where AWS asks for more).
FAST = {
    "retries.backoff_base_seconds": 0.01,
    "retries.throttling_backoff_base_seconds": 0.02,
    "upstream.attempt_timeout_seconds": 0.3,
    "upstream.read_timeout_seconds": 0.3,
    "upstream.total_timeout_seconds": 5.0,
}


def build(url: str, settings: dict[str, Any] | None = None, clock: Callable[[], datetime.datetime] = utc_now) -> Proxy:
    config = load_config(None, {**FAST, **(settings or {})})
    env = {"AWS_ENDPOINT_URL": url, "AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    return build_proxy(config, env, credential_source=StaticSource(), clock=clock)


@pytest.fixture
async def upstream(aiohttp_server) -> tuple[FaultUpstream, TestServer]:  # type: ignore[no-untyped-def]
    scripted = FaultUpstream(secret_key=TEST_CREDENTIALS.secret_key)
    return scripted, await aiohttp_server(scripted.app())


@pytest.fixture
def faults(upstream: tuple[FaultUpstream, TestServer]) -> FaultUpstream:
    return upstream[0]


@pytest.fixture
async def connect(aiohttp_client, upstream):  # type: ignore[no-untyped-def]
    """connect(settings) -> (client, proxy) in front of the fault upstream."""
    async def go(settings: dict[str, Any] | None = None, **kwargs: Any) -> tuple[TestClient, Proxy]:
        proxy = build(str(upstream[1].make_url("")).rstrip("/"), settings, **kwargs)
        return await aiohttp_client(proxy.data_app), proxy
    return go


async def call(client: TestClient, target: tuple[str, bytes], **headers: str) -> aiohttp.ClientResponse:
    path, body = target
    return await client.post(path, data=body, headers={**JSON_HEADERS, **headers})


def retries(proxy: Proxy, reason: str) -> float:
    return proxy.state.metrics.registry.get_sample_value("ivs_proxy_retries_total", {"reason": reason}) or 0.0


# -- what is retried ----------------------------------------------------------------------


async def test_a_burst_of_5xx_on_a_read_is_retried_and_each_attempt_is_signed_afresh(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.then(fault.aws_error(503, "ServiceUnavailable"), fault.aws_error(500, "InternalServerException"))
    seconds = iter(range(100))
    start = utc_now()

    def ticking() -> datetime.datetime:  # one second later at every look: a new X-Amz-Date per signing
        return start + datetime.timedelta(seconds=next(seconds))

    client, proxy = await connect(clock=ticking)
    with captured_access_lines() as lines:
        response = await call(client, LIST)
    assert response.status == 200
    assert len(faults.received) == 3
    assert all(r.signature_valid for r in faults.received)
    assert len(set(fault.amz_dates(faults))) == 3
    assert [line["attempts"] for line in lines] == [3]
    assert retries(proxy, "server_error") == 2


async def test_create_channel_answered_500_after_its_body_was_sent_is_attempted_exactly_once(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.aws_error(500, "InternalServerException")
    client, proxy = await connect()
    response = await call(client, CREATE)
    assert response.status == 500  # AWS's own answer, passed on: it may have made the channel
    assert "x-ivs-proxy-error" not in response.headers
    assert len(faults.received) == 1
    assert retries(proxy, "server_error") == 0


@pytest.mark.parametrize(
    ("behaviour", "status", "kind"),
    [
        (fault.stall(5), 504, "timeout"),
        (fault.reset(), 502, "reset"),
        (fault.truncated(declared=100, sent=10), 502, "reset"),
        (fault.malformed(), 502, "malformed"),
    ],
)
async def test_a_create_that_failed_mid_flight_is_not_repeated(connect, faults, behaviour, status, kind) -> None:  # type: ignore[no-untyped-def]
    faults.default = behaviour
    client, _ = await connect()
    with captured_access_lines() as lines:
        response = await call(client, CREATE)
    assert response.status == status
    assert response.headers["x-ivs-proxy-error"] in ("upstream_unreachable", "upstream_timeout")
    assert len(faults.received) == 1
    (line,) = lines
    assert (line["attempts"], line["upstream_error"]) == (1, kind)


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [(fault.stall(5), 504), (fault.reset(), 502), (fault.truncated(declared=100, sent=10), 502), (fault.malformed(), 502)],
)
async def test_a_read_that_failed_mid_flight_is_retried_and_a_partial_answer_is_never_a_200(connect, faults, behaviour, status) -> None:  # type: ignore[no-untyped-def]
    faults.default = behaviour
    client, _ = await connect()
    response = await call(client, LIST)
    assert response.status == status
    assert len(faults.received) == 3
    faults.default = fault.respond(body=b'{"channels": []}')
    faults.then(behaviour)
    recovered = await call(client, LIST)
    assert (recovered.status, await recovered.read()) == (200, b'{"channels": []}')


async def test_throttling_is_retried_even_for_a_create(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.then(fault.aws_error(429, "ThrottlingException"), fault.respond(status=400, body=b"{}",
                                                                          headers={"x-amzn-ErrorType": "ThrottlingException"}))
    client, proxy = await connect()
    response = await call(client, CREATE)
    assert response.status == 200
    assert len(faults.received) == 3
    assert retries(proxy, "throttled") == 2


async def test_connection_refused_is_retried_even_for_a_create(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    proxy = build(f"http://127.0.0.1:{free_port()}")
    client = await aiohttp_client(proxy.data_app)
    with captured_access_lines() as lines:
        response = await call(client, CREATE)
    assert response.status == 502
    assert (await response.json())["reason"] == "upstream_unreachable"
    (line,) = lines
    assert (line["attempts"], line["upstream_error"]) == (3, "connect")
    assert retries(proxy, "connect") == 2


async def test_retries_off(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.aws_error(503, "ServiceUnavailable")
    client, _ = await connect({"retries.max_attempts": 0})
    assert (await call(client, LIST)).status == 503
    assert len(faults.received) == 1


# -- how long it waits ---------------------------------------------------------------------


async def test_retry_after_is_waited_out_before_the_next_attempt(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.then(
        fault.aws_error(429, "ThrottlingException", {"Retry-After": "1"}),
        fault.aws_error(429, "ThrottlingException", {"x-amz-retry-after": "300"}),
    )
    client, _ = await connect()
    response = await call(client, CREATE)
    assert response.status == 200
    first, second = faults.gaps()
    assert first >= 1.0
    assert second >= 0.3


async def test_a_read_honours_x_amz_retry_after(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.then(fault.aws_error(503, "ServiceUnavailable", {"x-amz-retry-after": "300"}))
    client, _ = await connect()
    assert (await call(client, LIST)).status == 200
    (gap,) = faults.gaps()
    assert gap >= 0.3


async def test_a_retry_after_beyond_the_backoff_cap_goes_back_to_the_caller(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.aws_error(429, "ThrottlingException", {"Retry-After": "3600"})
    client, _ = await connect()
    response = await call(client, LIST)
    assert (response.status, response.headers["Retry-After"]) == (429, "3600")
    assert len(faults.received) == 1


async def test_backoff_between_attempts_stays_within_its_bounds(connect, faults) -> None:  # type: ignore[no-untyped-def]
    # Full jitter under a cap of 0.05 s: waits are never negative and never (much) above
    # the cap; the unit tests pin the exact formula.
    faults.default = fault.aws_error(500, "InternalServerException")
    client, _ = await connect({"retries.backoff_base_seconds": 0.05, "retries.max_backoff_seconds": 0.05,
                               "retries.max_attempts": 5})
    assert (await call(client, LIST)).status == 500
    assert len(faults.received) == 5
    assert all(0 <= gap < 0.05 + 0.5 for gap in faults.gaps())


async def test_the_callers_deadline_is_respected(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.aws_error(503, "ServiceUnavailable", {"Retry-After": "3"})
    client, _ = await connect()
    soon = (utc_now() + datetime.timedelta(seconds=2)).strftime("%Y%m%dT%H%M%SZ")
    response = await call(client, LIST, **{"amz-sdk-request": f"ttl={soon}; attempt=1; max=3"})
    assert response.status == 503  # waiting 3 s would outlive the caller: AWS's answer now
    assert len(faults.received) == 1
    gone = (utc_now() - datetime.timedelta(seconds=5)).strftime("%Y%m%dT%H%M%SZ")
    late = await call(client, LIST, **{"amz-sdk-request": f"attempt=2; ttl={gone}; max=3"})
    assert (late.status, (await late.json())["reason"]) == (408, "deadline_passed")
    assert len(faults.received) == 1  # the caller gave up already: nothing sent


async def test_the_overall_timeout_bounds_every_attempt_together(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.stall(5)
    client, _ = await connect({"upstream.total_timeout_seconds": 0.5, "retries.max_attempts": 10})
    response = await call(client, LIST)
    assert response.status == 504
    assert 1 <= len(faults.received) <= 2  # 0.3 s per attempt within 0.5 s


# -- the retry quota ----------------------------------------------------------------------


async def test_an_empty_retry_quota_stops_retries_until_successes_refill_it(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.aws_error(500, "InternalServerException")
    client, proxy = await connect({"retries.quota_tokens": 12})
    quota = proxy.state.pipeline.retrier.quota

    assert (await call(client, LIST)).status == 500
    assert (len(faults.received), quota.available) == (3, 2)  # two retries: 5 tokens each
    assert (await call(client, LIST)).status == 500
    assert (len(faults.received), quota.available) == (4, 2)  # too few tokens: one attempt

    faults.default = fault.respond()
    for _ in range(3):
        assert (await call(client, LIST)).status == 200  # each first-try success gives back 1
    assert quota.available == 5
    faults.default = fault.aws_error(500, "InternalServerException")
    faults.then(fault.aws_error(500, "InternalServerException"))
    assert (await call(client, LIST)).status == 500
    assert quota.available == 0
    gauge = proxy.state.metrics.registry.get_sample_value("ivs_proxy_retry_quota_tokens")
    assert gauge == 0


# -- large answers ------------------------------------------------------------------------


async def test_large_answers_are_relayed_whole(connect, faults) -> None:  # type: ignore[no-untyped-def]
    big = json.dumps({"channels": [{"arn": f"arn:aws:ivs:us-west-2:123456789012:channel/{i:012d}"}
                                   for i in range(8000)]}).encode()
    chunks = [b'{"channels": [', b'{"name": "a"}', b", ", b'{"name": "b"}', b"]}"]
    faults.then(fault.respond(body=big), fault.slow_body(chunks, interval=0.05))
    client, _ = await connect()
    whole = await call(client, LIST)
    assert (whole.status, whole.headers["Content-Length"]) == (200, str(len(big)))
    assert await whole.read() == big
    chunked = await call(client, LIST)
    assert (chunked.status, await chunked.read()) == (200, b"".join(chunks))


async def test_a_large_answer_cut_short_breaks_the_callers_connection(connect, faults) -> None:  # type: ignore[no-untyped-def]
    faults.default = fault.truncated(declared=300_000, sent=100_000)
    client, proxy = await connect()
    with captured_access_lines() as lines:
        response = await call(client, LIST)
        assert response.status == 200  # the headers had to go out before the body broke off
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    (line,) = lines
    assert line["upstream_error"] == "reset"
    registry = proxy.state.metrics.registry
    assert registry.get_sample_value("ivs_proxy_upstream_errors_total", {"kind": "reset"}) == 1
