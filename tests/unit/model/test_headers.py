from __future__ import annotations

import pytest

from proxy.errors import CallerSigningMaterial, HeaderRejected, NotAcceptable, UnsupportedMediaType
from proxy.model.headers import HeaderOptions, HeaderPolicy

JSON = ("Content-Type", "application/json")
SDK_HEADERS = [
    JSON,
    ("User-Agent", "Boto3/1.35 md/Botocore#1.35"),
    ("X-Amz-User-Agent", "aws-sdk-js/3.600"),
    ("amz-sdk-invocation-id", "0b6c5c1c-1111-4e6e-9c5a-2b1f0e0c0d0e"),
    ("amz-sdk-request", "attempt=1; max=3"),
    ("X-Amzn-Trace-Id", "Root=1-67891233-abcdef012345678912345678"),
    ("Accept", "application/json"),
    ("Accept-Encoding", "gzip, deflate"),
]


def check(headers: list[tuple[str, str]], has_body: bool = True, **options: bool) -> dict[str, str]:
    return HeaderPolicy(HeaderOptions(**options)).check(headers, has_body)


def test_sdk_headers_pass_through_with_lower_case_names() -> None:
    forwarded = check(SDK_HEADERS)
    assert forwarded == {name.lower(): value for name, value in SDK_HEADERS}


@pytest.mark.parametrize(
    "name",
    ["Host", "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade", "Cookie", "Forwarded",
     "X-Forwarded-Host", "X-Forwarded-For", "X-Forwarded-Proto", "Proxy-Authorization", "Via", "Content-Length"],
)
def test_routing_and_hop_by_hop_headers_never_go_upstream(name: str) -> None:
    forwarded = check([JSON, (name, "x")], reject_unknown_headers=True)
    assert name.lower() not in forwarded


def test_unknown_headers_are_dropped_or_refused_by_switch() -> None:
    assert "x-team" not in check([JSON, ("X-Team", "video")])
    with pytest.raises(HeaderRejected, match="X-Team"):
        check([JSON, ("X-Team", "video")], reject_unknown_headers=True)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-west-2/ivs/aws4_request"),
        ("Authorization", "Bearer abc"),
        ("X-Amz-Date", "20260101T000000Z"),
        ("X-Amz-Security-Token", "FQoG"),
        ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-target", "Something"),
    ],
)
def test_caller_signing_material_is_refused(name: str, value: str) -> None:
    with pytest.raises(CallerSigningMaterial) as refused:
        check([JSON, (name, value)])
    assert name in refused.value.message
    assert value not in refused.value.message


def test_the_refusal_names_each_sdks_unsigned_form_and_the_strip_switch_where_it_helps() -> None:
    with pytest.raises(CallerSigningMaterial) as sigv4:
        check([JSON, ("Authorization", "AWS4-HMAC-SHA256 Credential=placeholder/20260101/us-west-2/ivs/aws4_request")])
    for way in ("Config(signature_version=UNSIGNED)", "--no-sign-request",
                "JavaScript SDK v3: a client with signer: { sign: async (request) => request }",
                "aws.AnonymousCredentials{}", "headers.strip_caller_signature: true"):
        assert way in sigv4.value.message, way
    with pytest.raises(CallerSigningMaterial) as bearer:  # not SigV4: the switch would not strip it
        check([JSON, ("Authorization", "Bearer abc")])
    assert "signer: { sign:" in bearer.value.message and "strip_caller_signature" not in bearer.value.message
    with pytest.raises(CallerSigningMaterial) as presigned:
        HeaderPolicy(HeaderOptions()).check_query({"X-Amz-Signature": ["abc"]})
    assert "headers.strip_caller_signature: true" in presigned.value.message


def test_placeholder_sigv4_is_stripped_when_switched_on() -> None:
    placeholder = [
        ("Authorization", "AWS4-HMAC-SHA256 Credential=placeholder/20260101/us-west-2/ivs/aws4_request, ..."),
        ("X-Amz-Date", "20260101T000000Z"),
        ("X-Amz-Security-Token", "placeholder"),
        ("X-Amz-Content-Sha256", "abc"),
    ]
    forwarded = check([JSON, *placeholder], strip_caller_signature=True)
    assert forwarded == {"content-type": "application/json"}
    with pytest.raises(CallerSigningMaterial):  # not SigV4: nothing to strip safely
        check([JSON, ("Authorization", "Bearer abc")], strip_caller_signature=True)


@pytest.mark.parametrize("accept", ["application/json", "*/*", "application/*", "text/html, application/json;q=0.5"])
def test_acceptable_accept_values(accept: str) -> None:
    assert check([JSON, ("Accept", accept)])["accept"] == accept


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "application/json;q=0"])
def test_unacceptable_accept_values(accept: str) -> None:
    with pytest.raises(NotAcceptable, match="application/json"):
        check([JSON, ("Accept", accept)])


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "gzip, deflate", "identity", "gzip;q=1.0, identity;q=0.5"])
def test_allowed_accept_encodings(encoding: str) -> None:
    check([JSON, ("Accept-Encoding", encoding)])


@pytest.mark.parametrize("encoding", ["br", "gzip, deflate, br", "zstd", "*"])
def test_strict_accept_encoding_refuses_other_codings_naming_the_allowed_values(encoding: str) -> None:
    with pytest.raises(HeaderRejected, match="gzip, deflate") as exc:
        check([JSON, ("Accept-Encoding", encoding)], strict_accept_encoding=True)
    assert exc.value.status == 400


@pytest.mark.parametrize(
    ("encoding", "forwarded"),
    [
        ("gzip, deflate, br, zstd", "gzip, deflate"),  # curl --compressed
        ("br;q=1.0, gzip;q=0.8, zstd;q=0.9, deflate;q=0.5", "gzip;q=0.8, deflate;q=0.5"),
        ("br, identity;q=0.5", "identity;q=0.5"),
        ("gzip;q=0, br", "gzip;q=0"),  # identity is still acceptable
        ("gzip, deflate", "gzip, deflate"),
        ("*", "gzip;q=1, deflate;q=1"),
        ("br, gzip;q=0.3, *;q=0.6", "gzip;q=0.3, deflate;q=0.6"),
        ("", ""),
    ],
)
def test_accept_encoding_is_cut_to_the_codings_ivs_sends(encoding: str, forwarded: str) -> None:
    assert check([JSON, ("Accept-Encoding", encoding)])["accept-encoding"] == forwarded


@pytest.mark.parametrize("encoding", ["br", "br, zstd;q=0.5", "BR"])
def test_accept_encoding_with_no_ivs_coding_is_dropped(encoding: str) -> None:
    assert "accept-encoding" not in check([JSON, ("Accept-Encoding", encoding)])


@pytest.mark.parametrize(
    "encoding", ["identity;q=0", "br, identity;q=0", "*;q=0", "br, *;q=0", "gzip;q=0, identity;q=0",
                 "br, *;q=0, deflate;q=0"],
)
def test_accept_encoding_accepting_nothing_ivs_sends_is_406(encoding: str) -> None:
    with pytest.raises(NotAcceptable, match="gzip, deflate or identity") as exc:
        check([JSON, ("Accept-Encoding", encoding)])
    assert exc.value.status == 406


@pytest.mark.parametrize("encoding", ["identity;q=0, gzip", "*;q=0, deflate;q=0.1", "br, *;q=0, identity"])
def test_refusing_identity_is_fine_while_gzip_or_deflate_is_accepted(encoding: str) -> None:
    assert check([JSON, ("Accept-Encoding", encoding)])["accept-encoding"]


def test_content_type_is_required_with_a_body_and_dropped_without() -> None:
    with pytest.raises(UnsupportedMediaType):
        check([], has_body=True)
    assert check([("Content-Type", "application/json; charset=UTF-8")])["content-type"]
    with pytest.raises(UnsupportedMediaType):
        check([("Content-Type", "application/json; charset=latin-1")])
    assert "content-type" not in check([JSON], has_body=False)


def test_a_repeated_forwarded_header_is_refused() -> None:
    with pytest.raises(HeaderRejected, match="more than once"):
        check([JSON, ("Accept", "application/json"), ("accept", "text/html")])


def test_compressed_request_bodies_are_refused() -> None:
    with pytest.raises(UnsupportedMediaType):
        check([JSON, ("Content-Encoding", "gzip")])
    check([JSON, ("Content-Encoding", "identity")])


SIGNED_FOR_EU = ("Authorization", ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/eu-west-1/ivs/aws4_request, "
                                   "SignedHeaders=host;x-amz-date, Signature=abc"))


def test_a_stripped_signature_names_its_scope_region() -> None:
    policy = HeaderPolicy(HeaderOptions(strip_caller_signature=True))
    assert policy.stripped_scope_region([JSON, SIGNED_FOR_EU]) == "eu-west-1"
    assert policy.stripped_scope_region([JSON]) is None
    assert policy.stripped_scope_region([("authorization", "AWS4-HMAC-SHA256 garbage")]) is None


def test_no_scope_region_when_signatures_are_not_stripped() -> None:
    assert HeaderPolicy(HeaderOptions()).stripped_scope_region([JSON, SIGNED_FOR_EU]) is None
