"""proxy.aws.signing must sign exactly like botocore's SigV4Auth and the AWS SigV4 test suite."""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from proxy.aws import signing
from proxy.aws.signing import FrozenCredentials, SignedHeaders, SigV4Signer

UTC = datetime.UTC
NOW = datetime.datetime(2024, 3, 9, 23, 59, 58, tzinfo=UTC)

# ---------------------------------------------------------------------------------------
# 1. AWS SigV4 test suite.
#
# tests/fixtures/sigv4 holds the header-signing cases that fit this signer (see its
# README). Not copied, and so not tested:
#   * "*-unnormalized" cases (normalize: false): S3-style signing of the raw path; non-S3
#     SigV4Auth always removes dot segments and empty segments, and so does this signer.
#   * post-sts-header-after (omit_session_token: true): the token is left out of the
#     signature; SigV4Auth always signs it.
#   * every query-*.txt expectation: presigned URLs, which the proxy never produces.
# ---------------------------------------------------------------------------------------

VECTORS = Path(__file__).resolve().parents[2] / "fixtures" / "sigv4"
VECTOR_NAMES = sorted(p.name for p in VECTORS.iterdir() if p.is_dir())


def _parse_request(raw: bytes) -> tuple[str, str, CIMultiDict[str], bytes]:
    head, _, body = raw.partition(b"\n\n")
    request_line, *header_lines = head.decode().rstrip("\n").split("\n")
    method, _, rest = request_line.partition(" ")
    target = rest.rsplit(" ", 1)[0]  # the path may contain a space: "/example space/"
    headers: list[tuple[str, str]] = []
    for line in header_lines:
        if line[:1].isspace():  # obs-fold continuation of the previous header value
            name, value = headers.pop()
            headers.append((name, f"{value}\n{line}"))
        else:
            name, _, value = line.partition(":")
            headers.append((name, value))
    return method, target, CIMultiDict(headers), body


def _vector_kwargs(name: str) -> dict[str, Any]:
    directory = VECTORS / name
    context = json.loads((directory / "context.json").read_text())
    method, target, headers, body = _parse_request((directory / "request.txt").read_bytes())
    path, _, query = target.partition("?")
    host = headers.popall("Host")[0]
    if context["sign_body"]:
        # The suite's "sign_body" adds the S3-style header; a caller of ours passes it in.
        headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    creds = context["credentials"]
    return {
        "method": method,
        "host": host,
        # request.txt shows the path unencoded, and the suite encodes it once: exactly
        # the one quote() this signer applies to the wire path. The query, though, is
        # taken as already encoded (as botocore does), so put its raw UTF-8 on the wire
        # form an HTTP client would send.
        "path": path,
        "query": quote(query, safe="=&%"),
        "headers": headers,
        "body": body,
        "service": context["service"],
        "region": context["region"],
        "credentials": FrozenCredentials(
            creds["access_key_id"], creds["secret_access_key"], creds.get("token")
        ),
        "now": datetime.datetime.fromisoformat(context["timestamp"]),
    }


def _expected_headers(name: str) -> dict[str, str]:
    text = (VECTORS / name / "header-signed-request.txt").read_text()
    lines = text.partition("\n\n")[0].split("\n")[1:]
    return {n.lower(): v for n, _, v in (line.partition(":") for line in lines) if n[:1].strip()}


def test_vectors_were_copied() -> None:
    # Guards the parametrized test below against silently running zero cases.
    assert len(VECTOR_NAMES) == 30


@pytest.mark.parametrize("name", VECTOR_NAMES)
def test_aws_sigv4_suite(name: str) -> None:
    expected = _expected_headers(name)
    signed = SigV4Signer().sign(**_vector_kwargs(name))
    assert signed.authorization == expected["authorization"]
    assert signed.amz_date == expected["x-amz-date"]
    assert signed.security_token == expected.get("x-amz-security-token")


# ---------------------------------------------------------------------------------------
# 2. Equivalence with botocore.auth.SigV4Auth.add_auth.
# ---------------------------------------------------------------------------------------

ARN = "arn:aws:ivs:us-west-2:123456789012:channel/abcD"
WIRE_ARN = quote(ARN, safe="")
SESSION = FrozenCredentials("ASIAEXAMPLE", "secret/with+chars", "FwoGZXIvYXdzEB0aD//token==")
LONG_TERM = FrozenCredentials("AKIAEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
JSON = {"content-type": "application/json"}

# (id, method, scheme+host, path, query, headers, body, service, region, credentials)
IVS_REQUESTS = [
    ("create-channel-session-token", "POST", "https://ivs.us-west-2.amazonaws.com",
     "/CreateChannel", "", JSON,
     b'{"name":"my-channel","latencyMode":"LOW","type":"STANDARD","authorized":false}',
     "ivs", "us-west-2", SESSION),
    ("get-tags-encoded-arn", "GET", "https://ivs.us-west-2.amazonaws.com",
     f"/tags/{WIRE_ARN}", "", {}, b"", "ivs", "us-west-2", LONG_TERM),
    ("untag-repeated-query-keys", "DELETE", "https://ivs.us-west-2.amazonaws.com",
     f"/tags/{WIRE_ARN}", "tagKeys=b%20c&tagKeys=a", {}, b"", "ivs", "us-west-2", SESSION),
    ("chat-unicode-body", "POST", "https://ivschat.eu-west-1.amazonaws.com",
     "/SendEvent", "", JSON,
     json.dumps({"roomIdentifier": "r", "eventName": "hi", "attributes": {"msg": "héllo ✓ 😀"}},
                ensure_ascii=False).encode(),
     "ivschat", "eu-west-1", SESSION),
    ("chat-empty-body", "POST", "https://ivschat.eu-west-1.amazonaws.com",
     "/ListRooms", "", JSON, b"", "ivschat", "eu-west-1", LONG_TERM),
    ("local-port-and-messy-headers", "POST", "http://127.0.0.1:5000",
     "/ListChannels", "", {"Content-Type": "  application/json ", "X-Amz-User-Agent": "a   b\tc"},
     b"{}", "ivs", "eu-west-1", SESSION),
    ("unsorted-query-and-dot-segments", "GET", "https://ivs.us-west-2.amazonaws.com",
     "//a/./b/../tags/", "nextToken=x%2By&maxResults=10&flag", {}, b"", "ivs", "us-west-2",
     LONG_TERM),
]


def _botocore_sign(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str, region: str,
    creds: FrozenCredentials,
) -> AWSRequest:
    request = AWSRequest(method=method, url=url, headers=dict(headers), data=body)
    botocore_creds = Credentials(creds.access_key, creds.secret_key, creds.token)
    # add_auth overwrites request.context["timestamp"] from get_current_datetime(), so the
    # clock has to be patched where botocore.auth looks it up.
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None)):
        botocore.auth.SigV4Auth(botocore_creds, service, region).add_auth(request)
    return request


@pytest.mark.parametrize(
    "method, origin, path, query, headers, body, service, region, creds",
    [case[1:] for case in IVS_REQUESTS],
    ids=[case[0] for case in IVS_REQUESTS],
)
def test_matches_botocore(
    method: str, origin: str, path: str, query: str, headers: dict[str, str], body: bytes,
    service: str, region: str, creds: FrozenCredentials,
) -> None:
    url = f"{origin}{path}?{query}" if query else f"{origin}{path}"
    expected = _botocore_sign(method, url, headers, body, service, region, creds)
    signed = SigV4Signer().sign(
        method=method, host=origin.split("://")[1], path=path, query=query, headers=headers,
        body=body, service=service, region=region, credentials=creds, now=NOW,
    )
    assert signed.authorization == expected.headers["Authorization"]
    assert signed.amz_date == expected.headers["X-Amz-Date"] == "20240309T235958Z"
    assert signed.security_token == expected.headers.get("X-Amz-Security-Token")


# Wire-legal characters only: botocore re-parses its URL, which would drop a "#..." tail.
_URL_CHARS = "abcXYZ019-._~%:@!$'()*+,;=/"
_HEADER_NAMES = st.sampled_from(["content-type", "X-Amz-Target", "x-test-one", "X-TEST-TWO"])
_HEADER_VALUES = st.text(alphabet="ab Z9 \t,;=/\"'", max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.text(alphabet=_URL_CHARS, max_size=30).map(lambda p: "/" + p),
    query=st.text(alphabet=_URL_CHARS + "&?", max_size=30),
    headers=st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=4),
    body=st.binary(max_size=64),
    creds=st.sampled_from([SESSION, LONG_TERM]),
)
def test_matches_botocore_on_arbitrary_requests(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes,
    creds: FrozenCredentials,
) -> None:
    origin = "https://ivs.eu-west-1.amazonaws.com"
    url = f"{origin}{path}?{query}" if query else f"{origin}{path}"
    expected = _botocore_sign(method, url, headers, body, "ivs", "eu-west-1", creds)
    signed = SigV4Signer().sign(
        method=method, host=origin[8:], path=path, query=query, headers=headers, body=body,
        service="ivs", region="eu-west-1", credentials=creds, now=NOW,
    )
    assert signed.authorization == expected.headers["Authorization"]


def _sign(signer: SigV4Signer, **overrides: Any) -> SignedHeaders:
    kwargs: dict[str, Any] = {
        "method": "POST", "host": "ivs.us-west-2.amazonaws.com", "path": "/CreateChannel",
        "query": "", "headers": JSON, "body": b"{}", "service": "ivs", "region": "us-west-2",
        "credentials": SESSION, "now": NOW,
    }
    return signer.sign(**(kwargs | overrides))


def test_non_utc_clock_is_converted_and_naive_clock_refused() -> None:
    # 01:59:58+02:00 on the 10th is 23:59:58Z on the 9th: the date scope must follow UTC.
    paris = NOW.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
    assert _sign(SigV4Signer(), now=paris) == _sign(SigV4Signer())
    with pytest.raises(ValueError, match="timezone-aware"):
        _sign(SigV4Signer(), now=NOW.replace(tzinfo=None))


def test_date_follows_the_clock_across_seconds_and_midnight() -> None:
    signer = SigV4Signer()
    last_moment = datetime.datetime(2024, 3, 9, 23, 59, 59, 999999, tzinfo=UTC)
    midnight = last_moment + datetime.timedelta(microseconds=1)
    assert _sign(signer, now=last_moment).amz_date == "20240309T235959Z"
    assert _sign(signer, now=last_moment.replace(microsecond=0)).amz_date == "20240309T235959Z"
    after = _sign(signer, now=midnight)
    assert after.amz_date == "20240310T000000Z"
    assert "/20240310/us-west-2/ivs/aws4_request" in after.authorization
    assert after == _sign(SigV4Signer(), now=midnight)
    assert _sign(signer, now=last_moment).amz_date == "20240309T235959Z"  # clock went back


def test_method_case_is_normalized() -> None:
    assert _sign(SigV4Signer(), method="post") == _sign(SigV4Signer(), method="POST")


def test_signer_owns_host_and_date_headers() -> None:
    caller_tries = {"Host": "evil.example", "X-Amz-Date": "19700101T000000Z", **JSON}
    assert _sign(SigV4Signer(), headers=caller_tries) == _sign(SigV4Signer())


def test_signed_headers_items() -> None:
    with_token = _sign(SigV4Signer())
    assert [name for name, _ in with_token.items()] == [
        "Authorization", "X-Amz-Date", "X-Amz-Security-Token"]
    assert dict(with_token.items())["X-Amz-Security-Token"] == SESSION.token
    without = _sign(SigV4Signer(), credentials=LONG_TERM)
    assert [name for name, _ in without.items()] == ["Authorization", "X-Amz-Date"]
    assert "x-amz-security-token" not in without.authorization


# ---------------------------------------------------------------------------------------
# 3. The derived-key cache.
# ---------------------------------------------------------------------------------------


def test_key_cache_is_bounded_and_agrees_with_fresh_signer() -> None:
    limit = 16
    signer = SigV4Signer(key_cache_size=limit)
    regions = ["us-west-2", "eu-west-1", "ap-northeast-1", "us-east-1"]
    for i in range(1000):
        overrides: dict[str, Any] = {
            "now": NOW - datetime.timedelta(days=i // 4), "region": regions[i % 4],
            "credentials": FrozenCredentials("AKID", f"secret-{i % 7}"),
        }
        assert _sign(signer, **overrides) == _sign(SigV4Signer(), **overrides)
        assert 1 <= signer.cached_key_count <= limit


def test_cached_key_is_reused_and_gives_fresh_result(monkeypatch: pytest.MonkeyPatch) -> None:
    signer = SigV4Signer()
    first = _sign(signer, body=b"first")
    derivations: list[tuple[str, ...]] = []
    real_derive = signing._derive_key

    def counting_derive(*args: str) -> bytes:
        derivations.append(args)
        return real_derive(*args)

    monkeypatch.setattr(signing, "_derive_key", counting_derive)
    cached = _sign(signer, body=b"second")
    assert derivations == []  # same secret/date/region/service: served from the cache
    assert cached == _sign(SigV4Signer(), body=b"second")
    assert len(derivations) == 1  # ...while a fresh signer had to derive it
    assert cached.authorization != first.authorization


def test_key_cache_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SigV4Signer(key_cache_size=0)


# ---------------------------------------------------------------------------------------
# 4. Secrets stay out of reprs.
# ---------------------------------------------------------------------------------------


def test_credentials_repr_hides_secret_and_token() -> None:
    creds = FrozenCredentials("AKIDVISIBLE", "s3cr3t-KEY-value", "t0ken-VALUE")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "AKIDVISIBLE" in text
        assert "s3cr3t-KEY-value" not in text
        assert "t0ken-VALUE" not in text


def test_signed_headers_repr_hides_token() -> None:
    signed = _sign(SigV4Signer())
    assert SESSION.token is not None
    assert SESSION.token not in repr(signed)
    assert signed.amz_date in repr(signed)
