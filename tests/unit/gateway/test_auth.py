"""Caller authentication (bearer, certificate identities, SDK-native SigV4), the replay
window, token buckets, and the mode rules of the config."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from proxy.config import ProxyConfig, RateLimitRule, RateLimitsConfig, check_exposure, load_config
from proxy.errors import ConfigError
from proxy.gateway.auth import (
    Authenticator,
    BearerTokens,
    CertificateIdentities,
)
from proxy.gateway.identity import SignatureRejected, Unauthenticated
from proxy.gateway.ratelimit import Bucket, Limit, LocalBuckets, RateLimits
from proxy.gateway.replay import ReplayWindow
from proxy.gateway.sigv4_callers import InternalKey, SigV4Verifier
from proxy.model.catalog import Catalog
from tests.support.gateway import CHAT, VIDEO, Team, sign


def now() -> datetime.datetime:
    # Taken per call: botocore signs with the real clock at the moment of the test.
    return datetime.datetime.now(datetime.UTC)

KEYS = [InternalKey(t.name, t.access_key_id, t.secret) for t in (VIDEO, CHAT)]
CATALOG = Catalog.load()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- bearer tokens -------------------------------------------------------------------------


def test_bearer_tokens_identify_by_digest_only(tmp_path: Path) -> None:
    tokens = BearerTokens({"video-team": [digest("t-video")]}, None)
    assert tokens.identify("t-video") == "video-team"
    assert tokens.identify("t-video ") is None and tokens.identify("t-vide") is None
    assert tokens.callers == {"video-team"}


def test_the_tokens_file_is_reloaded_and_a_bad_one_keeps_the_old_set(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(f"chat-team: {digest('t-chat')}\n")
    tokens = BearerTokens({"video-team": [digest("t-video")]}, str(path))
    assert tokens.identify("t-chat") == "chat-team" and tokens.identify("t-video") == "video-team"
    path.write_text(f"chat-team: [{digest('t-chat-2')}, {digest('t-chat-3')}]\n")
    assert tokens.reload() == 3
    assert tokens.identify("t-chat") is None and tokens.identify("t-chat-3") == "chat-team"
    path.write_text("chat-team: not-a-digest\n")
    with pytest.raises(ConfigError, match="sha256"):
        tokens.reload()
    assert tokens.identify("t-chat-3") == "chat-team"  # still serving with what it had
    path.write_text(f"video-team: {digest('shared')}\nchat-team: {digest('shared')}\n")
    with pytest.raises(ConfigError, match="listed for"):
        tokens.reload()


# -- certificate identities ------------------------------------------------------------------

CERT = {
    "subject": ((("organizationName", "Example"),), (("commonName", "chat-backend"),)),
    "subjectAltName": (("DNS", "Chat.Team.svc"), ("URI", "spiffe://cluster.local/ns/chat/sa/backend")),
}


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        ("URI:spiffe://cluster.local/ns/chat/sa/backend", "chat-team"),
        ("dns:chat.team.SVC", "chat-team"),  # DNS names are case-insensitive
        ("CN:chat-backend", "chat-team"),
        ("URI:spiffe://cluster.local/ns/chat/sa/BACKEND", None),  # URIs are not
        ("CN:chat", None),  # exact, not a prefix
        ("CN:Example", None),  # an O is not a CN
    ],
)
def test_certificate_identities(identity: str, expected: str | None) -> None:
    identities = CertificateIdentities({"chat-team": [identity]})
    if expected is None:
        with pytest.raises(Unauthenticated) as error:
            identities.identify(CERT)
        assert error.value.why == "unknown_certificate" and "chat-backend" in error.value.message
    else:
        assert identities.identify(CERT) == expected


def test_a_certificate_naming_two_callers_is_refused() -> None:
    identities = CertificateIdentities({"chat-team": ["CN:chat-backend"], "video-team": ["DNS:chat.team.svc"]})
    with pytest.raises(Unauthenticated) as error:
        identities.identify(CERT)
    assert error.value.why == "conflict"


# -- the authenticator -------------------------------------------------------------------------


def authenticator(**methods: Any) -> Authenticator:
    return Authenticator(anonymous="app", **methods)


def test_without_methods_every_request_is_the_sidecar_app_and_headers_are_untouched() -> None:
    headers = (("Authorization", "AWS4-HMAC-SHA256 whatever"), ("Accept", "*/*"))
    found = authenticator().authenticate(headers, None)
    assert (found.caller.name, found.caller.method, found.headers) == ("app", "none", headers)


@pytest.mark.parametrize(
    ("headers", "peercert", "why"),
    [
        ((), None, "missing"),
        ((("Authorization", "Bearer nope"),), None, "unknown_token"),
        ((("Authorization", "Bearer bad token"),), None, "malformed"),
        ((("Authorization", "Basic dXNlcjpwdw=="),), None, "scheme"),
        ((("Authorization", f"Bearer {VIDEO.token}"), ("authorization", f"Bearer {VIDEO.token}")), None, "malformed"),
        ((("Authorization", f"Bearer {VIDEO.token}"),), CERT, "conflict"),  # cert says chat, token says video
        ((("Authorization", "Bearer nope"),), CERT, "unknown_token"),  # a bad header is never papered over
    ],
)
def test_failures(headers: tuple[tuple[str, str], ...], peercert: Any, why: str) -> None:
    auth = authenticator(
        bearer=BearerTokens({VIDEO.name: [VIDEO.token_digest]}, None),
        certificates=CertificateIdentities({"chat-team": ["CN:chat-backend"]}),
    )
    with pytest.raises(Unauthenticated) as error:
        auth.authenticate(headers, peercert)
    assert error.value.status == 401 and error.value.why == why
    assert VIDEO.token not in error.value.message


def test_a_certificate_of_nobody_leaves_the_decision_to_the_header() -> None:
    auth = authenticator(bearer=BearerTokens({VIDEO.name: [VIDEO.token_digest]}, None),
                         certificates=CertificateIdentities({"chat-team": ["CN:someone-else"]}))
    found = auth.authenticate((("Authorization", f"Bearer {VIDEO.token}"),), CERT)
    assert (found.caller.name, found.caller.method) == ("video-team", "bearer")
    with pytest.raises(Unauthenticated) as error:
        auth.authenticate((), CERT)
    assert error.value.why == "unknown_certificate"


def test_a_bearer_token_is_consumed_and_a_matching_certificate_agrees() -> None:
    auth = authenticator(bearer=BearerTokens({"chat-team": [CHAT.token_digest]}, None),
                         certificates=CertificateIdentities({"chat-team": ["CN:chat-backend"]}))
    found = auth.authenticate((("authorization", f"bearer {CHAT.token}"), ("Accept", "*/*")), CERT)
    assert found.caller.name == "chat-team" and found.caller.method == "bearer"
    assert found.headers == (("Accept", "*/*"),)
    by_cert = auth.authenticate((("Accept", "*/*"),), CERT)
    assert (by_cert.caller.name, by_cert.caller.method) == ("chat-team", "mtls")
    assert auth.challenge == 'Bearer realm="ivs-proxy"'


# -- SDK-native SigV4 ----------------------------------------------------------------------------

URL = "http://gateway.internal:8080/tags/arn%3Aaws%3Aivs%3Aus-west-2%3A123456789012%3Achannel%2FVideoMain001"


def verifier(offset: datetime.timedelta = datetime.timedelta(0)) -> SigV4Verifier:
    return SigV4Verifier(KEYS, 300, lambda: now() + offset)


def signed(url: str = URL, body: bytes = b"", team: Team = VIDEO, method: str = "GET", **kw: Any) -> list[tuple[str, str]]:
    headers = sign(method, url, body, team, **kw)
    return [("Host", urlsplit(url).netloc), *headers.items()]


def check(headers: list[tuple[str, str]], *, url: str = URL, body: bytes = b"", method: str = "GET",
          offset: datetime.timedelta = datetime.timedelta(0), signing_name: str = "ivs") -> str:
    parts = urlsplit(url)
    check_with = verifier(offset)
    pending = check_with.parse(headers)
    check_with.verify(pending, method=method, path=parts.path, query=parts.query, body=body, signing_name=signing_name)
    return pending.key.caller


def test_a_botocore_signature_verifies_and_names_the_caller() -> None:
    assert check(signed()) == "video-team"
    body = b'{"channelArn": "arn:aws:ivs:us-west-2:123456789012:channel/VideoMain001", "metadata": "m"}'
    post = "http://127.0.0.1:8080/PutMetadata"
    assert check(signed(post, body, method="POST"), url=post, body=body, method="POST") == "video-team"
    query = "http://127.0.0.1:8080/ivs-realtime/ListStages?maxResults=5&nextToken=a%2Fb"
    assert check(signed(query, team=CHAT), url=query) == "chat-team"


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda h: [(n, v.replace(VIDEO.access_key_id, "GWUNKNOWN00000000001")) for n, v in h], "unknown_key"),
        (lambda h: [(n, v[:-1] + ("0" if v[-1] != "0" else "1")) if n == "Authorization" else (n, v) for n, v in h],
         "bad_signature"),
        (lambda h: [(n, "other.host:8080") if n == "Host" else (n, v) for n, v in h], "bad_signature"),
        (lambda h: [*h, ("X-Amz-Security-Token", "token")], "session_token"),
        (lambda h: [(n, v) for n, v in h if n != "X-Amz-Date"], "malformed"),
        (lambda h: [*h, ("X-Amz-Date", "20200101T000000Z")], "malformed"),
        (lambda h: [(n, v.replace("SignedHeaders=", "SignedHeaders=x-custom;")) if n == "Authorization" else (n, v)
                    for n, v in h], "malformed"),
        (lambda h: [(n, v.replace("Signature=", "Signature=zz")) if n == "Authorization" else (n, v) for n, v in h],
         "malformed"),
        (lambda h: [*h, ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")], "payload_hash"),
    ],
)
def test_refusals(change: Any, why: str) -> None:
    with pytest.raises(Unauthenticated) as error:
        check(change(signed()))
    assert error.value.status == 401 and error.value.why == why
    assert VIDEO.secret not in error.value.message


@pytest.mark.parametrize(("region", "shown"), [
    ("US-WEST-2", "'US-WEST-2'"),
    ("us west 2", "'us?west?2'"),
    ("us-west-2\u200b", "'us-west-2?'"),
    ("", "''"),
    ("x" * 200, "'" + "x" * 24 + "...'"),
])
def test_a_malformed_scope_region_is_named_short_and_sanitised(region: str, shown: str) -> None:
    headers = [(n, v.replace("/us-west-2/", f"/{region}/")) if n == "Authorization" else (n, v) for n, v in signed()]
    with pytest.raises(Unauthenticated) as error:
        check(headers)
    assert error.value.status == 401 and error.value.why == "malformed"
    assert f"the credential scope's region {shown} is not a region name" in error.value.message
    assert "\u200b" not in error.value.message and "x" * 25 not in error.value.message


def test_a_malformed_header_with_a_good_region_says_only_malformed() -> None:
    headers = [(n, v.replace("Signature=", "Signature=zz")) if n == "Authorization" else (n, v) for n, v in signed()]
    with pytest.raises(Unauthenticated, match="^the AWS4-HMAC-SHA256 Authorization header is malformed$"):
        check(headers)


def test_a_wrong_secret_a_tampered_body_or_path_do_not_verify() -> None:
    with pytest.raises(SignatureRejected, match="does not match"):
        check(signed(secret="not-the-secret-0123456789"))
    body = b'{"metadata": "original"}'
    post = "http://127.0.0.1:8080/PutMetadata"
    with pytest.raises(SignatureRejected) as tampered:
        check(signed(post, body, method="POST"), url=post, body=body.replace(b"original", b"tampered"), method="POST")
    assert tampered.value.why == "bad_signature"
    with pytest.raises(SignatureRejected):
        check(signed(), url=URL.replace("VideoMain001", "VideoMain002"))
    sha = hashlib.sha256(body).hexdigest()
    with_hash = signed(post, body, method="POST", headers={"X-Amz-Content-Sha256": sha})
    assert check(with_hash, url=post, body=body, method="POST") == "video-team"
    with pytest.raises(SignatureRejected) as mismatch:
        check(with_hash, url=post, body=b"{}", method="POST")
    assert mismatch.value.why == "payload_hash"


@pytest.mark.parametrize("minutes", [-6, 6, 60])
def test_a_date_more_than_five_minutes_away_is_stale(minutes: int) -> None:
    with pytest.raises(SignatureRejected) as error:
        check(signed(), offset=datetime.timedelta(minutes=minutes))
    assert error.value.why == "stale" and "clock" in error.value.message


def test_within_five_minutes_is_fine() -> None:
    assert check(signed(), offset=datetime.timedelta(minutes=4, seconds=50)) == "video-team"


def test_the_scope_must_name_the_paths_signing_service() -> None:
    with pytest.raises(SignatureRejected) as error:
        check(signed(service="ivschat"))
    assert error.value.why == "scope"
    with pytest.raises(SignatureRejected) as chat:
        check(signed(), signing_name="ivschat")
    assert chat.value.why == "scope"


def test_the_authenticator_consumes_exactly_the_signature_headers() -> None:
    auth = authenticator(sigv4=verifier())
    headers = [*signed(), ("amz-sdk-request", "attempt=1; max=3"), ("X-Amz-User-Agent", "sdk")]
    found = auth.authenticate(headers, None)
    assert found.caller.name == "video-team" and found.signature is not None
    assert {n.lower() for n, _ in found.headers} == {"host", "content-type", "amz-sdk-request", "x-amz-user-agent"}
    assert "secret" not in repr(found.signature) and found.signature.signature not in repr(found.signature)


# -- the replay window ---------------------------------------------------------------------------


async def test_replay_window_remembers_releases_and_forgets_after_its_window() -> None:
    clock = [0.0]
    window = ReplayWindow(300, clock=lambda: clock[0])
    assert await window.first_use("sig-1", 300)
    assert not await window.first_use("sig-1", 300)
    assert await window.first_use("sig-2", 300)
    await window.release("sig-2")
    assert await window.first_use("sig-2", 300)
    clock[0] = 2 * 300 + 29
    assert not await window.first_use("sig-1", 300)
    clock[0] = 2 * 300 + 31  # past any date the verifier would still accept
    assert await window.first_use("sig-1", 300)
    assert len(window) == 1


# -- token buckets -------------------------------------------------------------------------------


def test_buckets_refill_and_a_refusal_takes_nothing() -> None:
    clock = [0.0]
    buckets = LocalBuckets(clock=lambda: clock[0])
    slow = Bucket("slow", Limit("r", 1.0, 2.0, "operation", "1/s"))
    fast = Bucket("fast", Limit("r2", 100.0, 100.0, "operation", "100/s"))
    assert buckets.take([slow, fast]) == (0.0, -1)
    assert buckets.take([slow, fast]) == (0.0, -1)
    wait, index = buckets.take([fast, slow])
    assert index == 1 and wait == pytest.approx(1.0)
    clock[0] = 0.5
    assert buckets.take([slow])[0] == pytest.approx(0.5)
    clock[0] = 1.0
    assert buckets.take([slow]) == (0.0, -1)
    # the refused calls took nothing from the fast bucket: 98 left of 100
    assert all(buckets.take([fast]) == (0.0, -1) for _ in range(98))


def test_rules_and_published_quotas_give_each_caller_its_buckets() -> None:
    put = next(op for op in CATALOG.operations if op.name == "PutMetadata")
    token = next(op for op in CATALOG.operations if op.name == "CreateParticipantToken")
    limits = RateLimits(RateLimitsConfig(
        defaults="ivs-quotas", default_share=0.5,
        rules=(RateLimitRule("ivs:Put*", 1, callers=("video-team",), per="caller"),),
    ))
    arns = ["arn:aws:ivs:us-west-2:1:channel/a", "arn:aws:ivs:us-west-2:1:channel/b"]
    buckets = limits.buckets("video-team", put, arns)
    assert [(b.limit.rate, b.limit.per) for b in buckets] == [(1, "caller"), (77.5, "operation"),
                                                              (2.5, "resource"), (2.5, "resource")]
    assert buckets[2].key.endswith("|video-team|ivs:PutMetadata|arn:aws:ivs:us-west-2:1:channel/a")
    assert [b.limit.rate for b in limits.buckets("chat-team", put, arns[:1])] == [77.5, 2.5]
    assert [b.limit.rate for b in limits.buckets("chat-team", token, [])] == [25]
    assert not RateLimits(RateLimitsConfig()).active


# -- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"mode": "gateway"}, "auth"),
        ({"mode": "sidecar-ish"}, "mode"),
        ({"auth": {"mtls": {"identities": {"team": ["CN:team"]}}}}, "auth.mtls"),
        ({"tls": {"cert_file": "/c.pem"}}, "tls"),
        ({"tls": {"client_ca_file": "/ca.pem"}}, "tls.client_ca_file"),
        ({"auth": {"bearer": {"tokens": {"team a": [digest("x")]}}}}, "auth.bearer.tokens.team a"),
        ({"auth": {"bearer": {"tokens": {"team": ["abc"]}}}}, "auth.bearer.tokens.team[0]"),
        ({"auth": {"sigv4": {"keys": [{"caller": "t", "access_key_id": "SHORT", "secret_env": "X"}]}}},
         "auth.sigv4.keys"),
        ({"auth": {"sigv4": {"keys": [{"caller": "t", "access_key_id": "GWTEAM0000000000001"}]}}}, "auth.sigv4.keys"),
        ({"rate_limits": {"rules": [{"action": "ivs:*", "rate": 0}]}}, "rate_limits.rules"),
        ({"redis": {"url": "http://redis:6379"}}, "redis.url"),
    ],
)
def test_bad_gateway_settings_name_the_key(settings: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, settings)
    assert error.value.key == key


@pytest.mark.parametrize(
    ("listen", "authenticated", "ok"),
    [
        ("127.0.0.1:8080", False, True),
        ("[::1]:8080", False, True),
        ("localhost:8080", False, True),
        ("127.0.0.53:8080", False, True),
        ("0.0.0.0:8080", False, False),
        ("[::]:8080", False, False),
        ("10.1.2.3:8080", False, False),
        ("ivs-proxy.example:8080", False, False),
        ("0.0.0.0:8080", True, True),
    ],
)
def test_sidecar_listens_on_loopback_unless_callers_authenticate(listen: str, authenticated: bool, ok: bool) -> None:
    auth = {"bearer": {"tokens": {"app": [digest("t")]}}} if authenticated else {}
    config = load_config(None, {"listen": listen, "auth": auth})
    if ok:
        check_exposure(config)
    else:
        with pytest.raises(ConfigError) as error:
            check_exposure(config)
        assert error.value.key == "listen" and "loopback" in error.value.reason


def test_the_default_config_is_an_unchanged_sidecar() -> None:
    config = ProxyConfig()
    assert config.mode == "sidecar" and not config.auth.configured and not config.policy.callers
    check_exposure(config)
