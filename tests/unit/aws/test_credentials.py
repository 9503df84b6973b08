"""proxy.aws.credentials: schedule, expiry, failures and recovery, with an injected clock.

A scripted source stands in for the network here (the e2e tests use real peers); the
clock and the store's sleep are fake, so hours of credential lifetime take milliseconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import http.server
import json
import random
import sys
import threading
import time
from collections.abc import Iterator

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import botocore.loaders
import botocore.session
import pytest
import structlog.testing

from proxy.aws.credential_sources import (
    IAM_PREFIXES,
    BotocoreChainSource,
    CallerIdentity,
    served_services_policy,
    source_from_config,
)
from proxy.aws.credentials import (
    CredentialSnapshot,
    CredentialStore,
    Schedule,
    SourceFailed,
    parse_expiry,
    what_to_do,
)
from proxy.aws.signing import FrozenCredentials
from proxy.config import load_config
from proxy.errors import ConfigError, SigningUnavailable

UTC = datetime.UTC
START = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
HOUR = 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START
        self.slept: list[float] = []

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += datetime.timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)


class ScriptedSource:
    """A new key on every fetch, valid `lifetime` seconds from the fake clock's now."""

    def __init__(self, clock: FakeClock, lifetime: float | None = HOUR) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.failure: str | None = None
        self.repeat = False  # answer with the previous set again (as IMDS does before rotating)
        self.calls = 0
        self.last: CredentialSnapshot | None = None

    def fetch(self) -> CredentialSnapshot:
        self.calls += 1
        if self.failure:
            raise SourceFailed("scripted", self.failure)
        if self.repeat and self.last:
            return self.last
        n = self.calls
        expires = None if self.lifetime is None else self.clock() + datetime.timedelta(seconds=self.lifetime)
        self.last = CredentialSnapshot(FrozenCredentials(f"ASIA{n:016d}", f"secret-{n}", f"token-{n}"), expires, "scripted")
        return self.last


def store_for(source: ScriptedSource, clock: FakeClock, **kwargs: object) -> CredentialStore:
    return CredentialStore(source, clock=clock, sleep=clock.sleep, rng=random.Random(7), **kwargs)  # type: ignore[arg-type]


class StopLoop(Exception):
    pass


async def run_for(store: CredentialStore, clock: FakeClock, iterations: int) -> None:
    """Run the refresh loop for `iterations` sleep-then-refresh rounds (a bounded loop); it
    stops at the next sleep, after the last round's identity lookup."""
    rounds = 0

    async def bounded(seconds: float) -> None:
        nonlocal rounds
        if rounds >= iterations:
            raise StopLoop
        rounds += 1
        await clock.sleep(seconds)

    store._sleep = bounded
    with pytest.raises(StopLoop):
        await store.run()


# -- the schedule -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "skew", "lead", "base", "cap"),
    [
        (HOUR, 30.0, 900.0, 1.0, 30.0),  # STS default: renew 45-42 min in, stop signing 30 s early
        (900.0, 30.0, 450.0, 1.0, 30.0),  # the shortest STS session
        (6 * HOUR, 30.0, 900.0, 1.0, 30.0),  # IMDS / ECS
        (60.0, 6.0, 30.0, 0.6, 6.0),
        (3.0, 0.3, 1.5, 0.05, 0.3),  # the e2e tests' lifetimes
    ],
)
def test_schedule_numbers(lifetime: float, skew: float, lead: float, base: float, cap: float) -> None:
    schedule = Schedule(lifetime)
    assert schedule.skew == pytest.approx(skew)
    assert schedule.lead == pytest.approx(lead)
    rng = random.Random(1)
    delays = [schedule.refresh_delay(rng) for _ in range(200)]
    # Jitter only moves the refresh earlier, by up to 20 % of the lead.
    assert lifetime - 1.2 * lead <= min(delays) and max(delays) <= lifetime - lead
    assert max(delays) - min(delays) > 0.1 * lead
    first = [schedule.retry_delay(1, rng) for _ in range(200)]
    assert base / 2 <= min(first) and max(first) <= base
    late = [schedule.retry_delay(40, rng) for _ in range(200)]
    assert cap / 2 <= min(late) and max(late) <= cap


def test_after_a_failed_refresh_retries_fit_before_the_skew() -> None:
    schedule = Schedule(HOUR)
    rng = random.Random(3)
    elapsed, attempts = schedule.refresh_delay(rng), 0
    while elapsed < HOUR - schedule.skew:
        attempts += 1
        elapsed += schedule.retry_delay(attempts, rng)
    assert attempts >= 20


# -- current(): never sign with expired credentials ---------------------------------------


async def test_current_returns_the_snapshot_until_the_skew_before_expiry() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=HOUR)
    store = store_for(source, clock)
    with pytest.raises(SigningUnavailable, match="no AWS credentials yet"):
        store.current()
    await store.start()
    first = store.current()
    assert first == FrozenCredentials("ASIA0000000000000001", "secret-1", "token-1")
    clock.advance(HOUR - 30.001)
    assert store.current() is first
    clock.advance(0.001)
    with pytest.raises(SigningUnavailable) as refused:
        store.current()
    assert refused.value.status == 503
    assert "credentials from scripted expire at 2026-01-01T13:00:00+00:00" in refused.value.message
    assert not store.is_valid()


async def test_key_secret_and_token_always_come_from_one_refresh() -> None:
    clock = FakeClock()
    store = store_for(ScriptedSource(clock), clock)
    await store.start()
    seen = set()
    for _ in range(5):
        credentials = store.current()
        with pytest.raises(dataclasses.FrozenInstanceError):
            credentials.secret_key = "x"  # type: ignore[misc]
        n = credentials.access_key[-1]
        assert (credentials.secret_key, credentials.token) == (f"secret-{n}", f"token-{n}")
        seen.add(n)
        await store.refresh()
    assert len(seen) == 5


# -- the loop -----------------------------------------------------------------------------


async def test_loop_renews_before_expiry_and_credentials_never_lapse() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=HOUR)
    store = store_for(source, clock)
    await store.start()
    await run_for(store, clock, iterations=10)
    assert source.calls == 11  # start() and ten renewals
    for delay in clock.slept[1:]:
        assert HOUR - 1.2 * 900 <= delay <= HOUR - 900
    assert store.is_valid()
    assert store.status.last_outcome == "success" and store.status.consecutive_failures == 0


async def test_failures_back_off_while_valid_then_refuse_then_recover() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=HOUR)
    store = store_for(source, clock)
    outcomes: list[tuple[str, float]] = []
    store.on_refresh.append(lambda outcome, seconds: outcomes.append((outcome, seconds)))
    await store.start()
    source.failure = "Could not connect to the endpoint URL: http://169.254.170.23/v1/credentials"

    await run_for(store, clock, iterations=3)
    assert store.is_valid() and store.current().access_key.endswith("1")  # requests keep flowing
    status = store.status
    assert status.last_refresh_ok is False and status.consecutive_failures == 3
    assert status.last_error is not None and "169.254.170.23" in status.last_error
    assert clock.slept[1] < clock.slept[0] / 100  # the retry comes soon, not at the next plan

    clock.slept.clear()
    await run_for(store, clock, iterations=80)
    assert all(delay <= 30 for delay in clock.slept[1:])
    assert clock.now > START + datetime.timedelta(seconds=HOUR - 30)
    with pytest.raises(SigningUnavailable, match="could not be renewed .scripted: Could not connect"):
        store.current()
    assert "scripted" in (store.unavailable_reason() or "")

    source.failure = None
    clock.slept.clear()
    await run_for(store, clock, iterations=1)
    assert store.is_valid() and store.status.consecutive_failures == 0
    assert [o for o, _ in outcomes][:2] == ["success", "failure"] and outcomes[-1][0] == "success"
    assert all(seconds >= 0 for _, seconds in outcomes)


async def test_a_source_that_repeats_itself_is_retried_without_resetting_the_lifetime() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=HOUR)
    store = store_for(source, clock)
    await store.start()
    source.repeat = True
    await run_for(store, clock, iterations=4)
    status = store.status
    assert status.last_outcome == "unchanged" and status.last_refresh_ok is True
    # Still stops 30 s before expiry: the skew comes from the original one-hour lifetime.
    assert status.usable_until == START + datetime.timedelta(seconds=HOUR - 30)
    assert all(delay <= 30 for delay in clock.slept[1:])


async def test_a_hanging_fetch_never_blocks_current() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock)
    store = store_for(source, clock)
    await store.start()
    release = threading.Event()
    fetch = source.fetch
    source.fetch = lambda: (release.wait(5), fetch())[1]  # type: ignore[method-assign]
    refresh = asyncio.create_task(store.refresh())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    for _ in range(1000):
        store.current()
    assert time.perf_counter() - started < 0.5
    assert not refresh.done()
    release.set()
    assert await asyncio.wait_for(refresh, 5) == "success"


async def test_a_failing_hook_does_not_stop_refreshes() -> None:
    clock = FakeClock()
    store = store_for(ScriptedSource(clock), clock)

    def broken(outcome: str, seconds: float) -> None:
        raise RuntimeError("metrics are down")

    store.on_refresh.append(broken)
    await store.start()
    assert await store.refresh() == "success"


async def test_identity_is_looked_up_once_per_key_and_is_best_effort() -> None:
    clock = FakeClock()
    looked_up: list[str] = []

    def identify(credentials: FrozenCredentials) -> str | None:
        looked_up.append(credentials.access_key)
        if len(looked_up) == 2:
            raise OSError("sts is unreachable")
        return f"arn:aws:sts::123456789012:assumed-role/r/{credentials.access_key}"

    store = store_for(ScriptedSource(clock), clock, identify=identify)
    await store.start()
    await run_for(store, clock, iterations=0)
    assert store.status.identity == "arn:aws:sts::123456789012:assumed-role/r/ASIA0000000000000001"
    await run_for(store, clock, iterations=0)  # same key: no second lookup
    await run_for(store, clock, iterations=1)  # the lookup for key 2 fails: unknown, not an error
    assert store.status.identity is None and store.status.last_refresh_ok is True
    assert looked_up == ["ASIA0000000000000001", "ASIA0000000000000002"]


# -- refusing what must not be used -------------------------------------------------------


async def test_long_lived_keys_stop_start_up_with_the_fixes() -> None:
    clock = FakeClock()
    store = store_for(ScriptedSource(clock, lifetime=None), clock)
    with pytest.raises(ConfigError) as refused:
        await store.start()
    message = str(refused.value)
    assert message.startswith("credentials: the AWS credentials found (scripted) are long-lived access keys")
    for fix in ("credentials.role_arn", "SSO", "allow_long_lived_credentials: true", "local development only"):
        assert fix in message
    assert "secret-1" not in message


async def test_long_lived_keys_when_allowed_are_used_and_not_refreshed() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=None)
    store = store_for(source, clock, allow_long_lived=True)
    await store.start()
    await store.run()  # returns: nothing to renew
    clock.advance(10 * 365 * 24 * HOUR)
    assert store.current().access_key == "ASIA0000000000000001"
    assert source.calls == 1 and store.status.expires_at is None


async def test_credentials_that_arrive_expired_are_a_failure() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=-1)
    store = store_for(source, clock)
    assert await store.refresh() == "failure"
    assert "returned credentials that expired at" in (store.status.last_error or "")
    with pytest.raises(SigningUnavailable):
        store.current()


async def test_errors_never_quote_the_secrets_held() -> None:
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=60)
    store = store_for(source, clock)
    await store.start()
    source.failure = "endpoint said: secret-1 / token-1 " + "x" * 2000
    await store.refresh()
    clock.advance(61)
    reason = store.unavailable_reason() or ""
    assert "secret-1" not in reason and "token-1" not in reason and "***" in reason
    assert len(store.status.last_error or "") <= 600


# -- sources ------------------------------------------------------------------------------


@pytest.fixture
def hermetic_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    import os

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in (("AWS_CONFIG_FILE", os.devnull), ("AWS_SHARED_CREDENTIALS_FILE", os.devnull),
                        ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_chain_reads_session_credentials_from_the_environment(hermetic_env: pytest.MonkeyPatch) -> None:
    hermetic_env.setenv("AWS_ACCESS_KEY_ID", "ASIAENVIRONMENT00000")
    hermetic_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    hermetic_env.setenv("AWS_SESSION_TOKEN", "env-token")
    hermetic_env.setenv("AWS_CREDENTIAL_EXPIRATION", "2030-01-01T00:00:00Z")
    snapshot = BotocoreChainSource(botocore.session.Session()).fetch()
    assert snapshot.credentials == FrozenCredentials("ASIAENVIRONMENT00000", "env-secret", "env-token")
    assert snapshot.expires_at == datetime.datetime(2030, 1, 1, tzinfo=UTC)
    assert snapshot.source == "env"


def test_chain_reports_plain_keys_as_long_lived(hermetic_env: pytest.MonkeyPatch) -> None:
    hermetic_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000")
    hermetic_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    snapshot = BotocoreChainSource(botocore.session.Session()).fetch()
    assert snapshot.expires_at is None and snapshot.source == "env"


CREDENTIAL_PROCESS = """
import datetime, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
print(json.dumps({"Version": 1, "AccessKeyId": f"ASIAPROCESS{n:09d}", "SecretAccessKey": f"s{n}",
                  "SessionToken": f"t{n}", "Expiration": expires.isoformat()}))
"""


def test_each_fetch_really_fetches_even_far_from_expiry(hermetic_env: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # botocore itself would reuse hour-long credentials until 15 min before expiry; a
    # refresh the store schedules (earlier, with jitter) must get a new set.
    script = tmp_path / "issue.py"
    script.write_text(CREDENTIAL_PROCESS)
    profiles = tmp_path / "config"
    profiles.write_text(f"[profile p]\ncredential_process = {sys.executable} {script} {tmp_path / 'n'}\n")
    hermetic_env.setenv("AWS_CONFIG_FILE", str(profiles))
    source = BotocoreChainSource(botocore.session.Session(profile="p"))
    first, second = source.fetch(), source.fetch()
    # Set 1 went to botocore's provider while resolving the chain (it loads eagerly).
    assert (first.source, first.credentials.access_key, second.credentials.access_key) == (
        "custom-process", "ASIAPROCESS000000002", "ASIAPROCESS000000003")
    assert second.credentials.token == "t3" and second.expires_at is not None


async def test_chain_with_nothing_to_find_names_what_it_looked_at_and_what_to_do(
        hermetic_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(SourceFailed, match="found no credentials .looked at the environment"):
        BotocoreChainSource(botocore.session.Session()).fetch()
    # The 503's message (and /readyz's detail) adds what to do, as `dev` does.
    store = CredentialStore(BotocoreChainSource(botocore.session.Session()))
    await store.start()
    with pytest.raises(SigningUnavailable) as refused:
        store.current()
    assert refused.value.message == store.unavailable_reason()
    assert "no AWS credentials yet (the default credential chain (profile default): found no credentials" in (
        refused.value.message)
    assert refused.value.message.endswith(what_to_do())
    assert "run `aws sso login --profile NAME` and start ivs-proxy with AWS_PROFILE=NAME" in what_to_do()


async def test_every_no_credentials_message_says_what_to_do() -> None:
    """Before the first success and after the last one expired: the 503, readiness and the log."""
    clock = FakeClock()
    source = ScriptedSource(clock, lifetime=HOUR)
    source.failure = "Error when retrieving token from sso: Token has expired and refresh failed"
    store = store_for(source, clock, advice=what_to_do("dev-sso"))
    with structlog.testing.capture_logs() as logged:
        await store.start()
    assert "aws sso login --profile dev-sso" in (store.unavailable_reason() or "")
    assert "AWS_PROFILE=NAME" not in (store.unavailable_reason() or "")  # the profile is known
    source.failure = None
    await store.refresh()
    assert store.unavailable_reason() is None
    source.failure = "Could not connect to the endpoint URL: http://169.254.170.23/v1/credentials"
    clock.advance(HOUR)
    with structlog.testing.capture_logs() as more:
        await store.refresh()
    reason = store.unavailable_reason() or ""
    assert "could not be renewed (scripted: Could not connect" in reason
    assert reason.endswith(what_to_do("dev-sso")) and "check the role given to it" in reason
    failures = [line for line in logged + more if line["event"] == "credentials_refresh"]
    assert [line["outcome"] for line in failures] == ["failure", "failure"]
    assert all(line["fix"] == what_to_do("dev-sso") for line in failures), failures


def test_served_services_policy_allows_only_the_ivs_actions() -> None:
    policy = json.loads(served_services_policy(["ivs", "ivs-realtime", "ivschat"]))
    assert policy["Statement"] == [{"Effect": "Allow", "Action": ["ivs:*", "ivschat:*"], "Resource": "*"}]
    assert json.loads(served_services_policy(["ivs-realtime"]))["Statement"][0]["Action"] == ["ivs:*"]
    with_kms = json.loads(served_services_policy(["ivs"], ["kms:Sign", "kms:GetPublicKey"]))
    assert with_kms["Statement"][0]["Action"] == ["ivs:*", "kms:GetPublicKey", "kms:Sign"]


@pytest.mark.parametrize("service", sorted(IAM_PREFIXES))
def test_iam_prefixes_match_botocore_signing_names(service: str) -> None:
    model = botocore.loaders.create_loader().load_service_model(service, "service-2")
    assert IAM_PREFIXES[service] == model["metadata"].get("signingName", model["metadata"]["endpointPrefix"])


def test_role_settings_build_an_assume_role_source() -> None:
    config = load_config(None, {
        "credentials.role_arn": "arn:aws:iam::123456789012:role/ivs-proxy",
        "credentials.external_id": "tenant-7",
        "services": ["ivschat"],
    })
    source = source_from_config(config.credentials, botocore.session.Session(), region="eu-west-1", services=config.services)
    role = source._role  # type: ignore[attr-defined]
    assert (role.arn, role.session_name, role.external_id, role.duration_seconds) == (
        "arn:aws:iam::123456789012:role/ivs-proxy", "ivs-proxy", "tenant-7", 3600)
    assert json.loads(role.policy)["Statement"][0]["Action"] == ["ivschat:*"]
    none = load_config(None, {"credentials.role_arn": role.arn, "credentials.session_policy": "none"})
    assert source_from_config(none.credentials, botocore.session.Session(), region=None, services=())._role.policy is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("role_arn", "arn:aws:iam::123456789012:user/me", "IAM role ARN"),
        ("role_session_name", "has spaces", "2-64"),
        ("duration_seconds", 600, "900 to 43200"),
        ("session_policy", "{not json", "JSON policy"),
        ("external_id", "tenant-7", "only with credentials.role_arn"),
    ],
)
def test_bad_credential_settings_name_the_key(key: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError, match=f"credentials.{key}: .*{reason}"):
        load_config(None, {f"credentials.{key}": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-01T12:00:00Z", START),
        ("2026-01-01T13:00:00+01:00", START),
        ("2026-01-01T12:00:00", START),  # no zone: UTC, as AWS means it
        (datetime.datetime(2026, 1, 1, 12, tzinfo=UTC), START),
    ],
)
def test_parse_expiry(value: str | datetime.datetime, expected: datetime.datetime) -> None:
    assert parse_expiry(value) == expected


# -- CallerIdentity ------------------------------------------------------------------------

ARN = "arn:aws:sts::123456789012:assumed-role/ivs-proxy/test"
IDENTITY_XML = f"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult><Arn>{ARN}</Arn><UserId>AROAEXAMPLE:test</UserId>
  <Account>123456789012</Account></GetCallerIdentityResult>
  <ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"""
STS_KEYS = FrozenCredentials("ASIASTSIDENTITY00000", "sts-secret", "sts-token")


class FakeSts:
    """A loopback STS that records each request and answers with `status` and `body`."""

    def __init__(self, status: int = 200, body: str = IDENTITY_XML) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.status, self.body = status, body.encode()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append((self.command, self.path, dict(self.headers.items()), body))
                self.send_response(fake.status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(fake.body)))
                self.end_headers()
                self.wfile.write(fake.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sts() -> Iterator[FakeSts]:
    fake = FakeSts()
    yield fake
    fake.close()


def sts_env(url: str, **extra: str) -> dict[str, str]:
    import os

    return {"AWS_ENDPOINT_URL_STS": url, "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **extra}


def test_caller_identity_asks_sts_and_reads_the_arn(sts: FakeSts) -> None:
    assert CallerIdentity(sts_env(sts.url + "/base"), None, "eu-west-1")(STS_KEYS) == ARN
    [(method, path, headers, body)] = sts.requests
    assert (method, path, body) == ("POST", "/base/", b"Action=GetCallerIdentity&Version=2011-06-15")
    assert headers["X-Amz-Security-Token"] == "sts-token"
    assert "Credential=ASIASTSIDENTITY00000/" in headers["Authorization"]
    assert "/eu-west-1/sts/aws4_request" in headers["Authorization"]


def test_caller_identity_signs_what_botocore_would(sts: FakeSts, monkeypatch: pytest.MonkeyPatch) -> None:
    CallerIdentity(sts_env(sts.url), None, "us-west-2")(STS_KEYS)
    [(method, path, headers, body)] = sts.requests
    signed_at = datetime.datetime.strptime(headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)
    request = botocore.awsrequest.AWSRequest(method, sts.url + path, data=body,
                                             headers={"Content-Type": headers["Content-Type"]})
    credentials = botocore.credentials.Credentials(STS_KEYS.access_key, STS_KEYS.secret_key, STS_KEYS.token)
    botocore.auth.SigV4Auth(credentials, "sts", "us-west-2").add_auth(request)
    assert headers["Authorization"] == request.headers["Authorization"]


def test_caller_identity_sends_what_a_botocore_client_sends(sts: FakeSts) -> None:
    CallerIdentity(sts_env(sts.url), None, "us-west-2")(STS_KEYS)
    client = botocore.session.Session().create_client(
        "sts", region_name="us-west-2", endpoint_url=sts.url, aws_access_key_id=STS_KEYS.access_key,
        aws_secret_access_key=STS_KEYS.secret_key, aws_session_token=STS_KEYS.token)
    assert client.get_caller_identity()["Arn"] == ARN
    ours, botocores = sts.requests
    assert (ours[0], ours[1], ours[3]) == (botocores[0], botocores[1], botocores[3])
    assert ours[2]["Content-Type"] == botocores[2]["Content-Type"]


@pytest.mark.parametrize(("status", "body"), [(403, "<ErrorResponse/>"), (200, "not xml"), (200, "<Other/>")])
def test_caller_identity_is_none_when_sts_says_no(status: int, body: str) -> None:
    fake = FakeSts(status, body)
    try:
        assert CallerIdentity(sts_env(fake.url), None, "us-west-2")(STS_KEYS) is None
    finally:
        fake.close()


def test_caller_identity_is_none_when_sts_is_unreachable() -> None:
    assert CallerIdentity(sts_env("http://127.0.0.1:9"), None, "us-west-2")(STS_KEYS) is None
    assert CallerIdentity(sts_env("not a url"), None, "us-west-2")(STS_KEYS) is None


def test_the_session_policy_keeps_the_event_queue_calls() -> None:
    from proxy.app import credential_source_for

    config = load_config(None, {"credentials.role_arn": "arn:aws:iam::123456789012:role/ivs-proxy",
                                "events.queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/ivs-events",
                                "region": "us-west-2"})
    source, _ = credential_source_for(config, {})
    actions = json.loads(source._role.policy)["Statement"][0]["Action"]  # type: ignore[attr-defined]
    assert {"ivs:*", "sqs:ReceiveMessage", "sqs:DeleteMessageBatch"} <= set(actions)
