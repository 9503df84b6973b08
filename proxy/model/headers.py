"""Which caller headers are allowed, which go upstream, and which are refused.

IVS documents three "Allowed Header Values" (Accept, Accept-Encoding, Content-Type); we
check those here so a bad value is refused by the proxy with a message that names the
header, rather than by AWS after a round trip. Everything that could carry a caller's own
signature or credentials is refused (or, when configured, removed) because the proxy signs
and must never forward somebody else's signing material. Headers that steer routing (Host,
Forwarded, X-Forwarded-*) never reach AWS: the upstream host is the proxy's choice alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from proxy.errors import CallerSigningMaterial, HeaderRejected, NotAcceptable, UnsupportedMediaType

#: Headers an SDK sends for its own bookkeeping; AWS uses them, nothing rewrites them.
FORWARDED = frozenset(
    {
        "accept",
        "accept-encoding",
        "content-type",
        "user-agent",
        "x-amz-user-agent",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
        "x-amzn-trace-id",
    }
)

#: Headers that are normal on the wire but must never be passed on: hop-by-hop and framing
#: headers (recomputed for the upstream connection), routing hints, and cookies.
ALWAYS_DROPPED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        "cookie",
        "forwarded",
        "via",
        "x-request-id",
    }
)

#: The SigV4 headers an SDK adds when it signs with placeholder keys.
SIGV4_HEADERS = frozenset({"authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256"})

#: The credential scope of a SigV4 Authorization header: `Credential=<key>/<date>/<region>/`.
_SCOPE_REGION_RE = re.compile(r"AWS4-HMAC-SHA256 Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]{1,32})/")

#: The query parameters of a presigned SigV4 request: the proxy's signature is the only one.
SIGV4_QUERY_PARAMETERS = frozenset({
    "x-amz-signature", "x-amz-credential", "x-amz-security-token", "x-amz-algorithm", "x-amz-date",
    "x-amz-signedheaders", "x-amz-expires",
})

ALLOWED_ENCODINGS = frozenset({"gzip", "deflate", "identity"})
_IVS_CODINGS = ("gzip", "deflate")  # the content codings IVS can answer in
JSON = "application/json"
#: Accept values the media-range parse would accept, taken without parsing.
_PLAIN_ACCEPT = frozenset({JSON, "*/*", "application/*"})


@dataclass(frozen=True)
class HeaderOptions:
    reject_unknown_headers: bool = False
    strip_caller_signature: bool = False
    strict_accept_encoding: bool = False


#: What `HeaderPolicy.check` does with a header, by its lower-cased name.
_FORWARD, _DROP, _SIGNING, _ENCODING, _OTHER = range(5)
#: Distinct raw header names remembered with their kind; callers choose the names, so the
#: memo stops growing here (later names are classified afresh each time).
_KIND_CACHE_SIZE = 512


def _kind(name: str) -> int:
    if name in FORWARDED:
        return _FORWARD
    if name in ALWAYS_DROPPED or name.startswith("x-forwarded-"):
        return _DROP
    if name in SIGV4_HEADERS or name.startswith("x-amz-"):
        return _SIGNING
    if name == "content-encoding":
        return _ENCODING
    return _OTHER


class HeaderPolicy:
    """Checks a request's headers and returns the ones to forward (lower-cased names)."""

    def __init__(self, options: HeaderOptions) -> None:
        self._options = options
        # Raw name -> (lower-cased name, kind): the same few spellings arrive on every
        # request, and classifying one costs a lower() and up to six set lookups.
        self._kinds: dict[str, tuple[str, int]] = {}

    def _classify(self, raw_name: str) -> tuple[str, int]:
        name = raw_name.lower()
        entry = (name, _kind(name))
        if len(self._kinds) < _KIND_CACHE_SIZE:
            self._kinds[raw_name] = entry
        return entry

    def check(self, headers: Iterable[tuple[str, str]], has_body: bool) -> dict[str, str]:
        forwarded: dict[str, str] = {}
        kinds = self._kinds
        for raw_name, value in headers:
            name, kind = kinds.get(raw_name) or self._classify(raw_name)
            if kind == _FORWARD:
                if name in forwarded:
                    raise HeaderRejected(f"{raw_name} appears more than once")
                forwarded[name] = value
            elif kind == _DROP:
                continue
            elif kind == _SIGNING:
                self._caller_signing_material(raw_name, name, value)
            elif kind == _ENCODING:
                _check_content_encoding(value)
            elif self._options.reject_unknown_headers:
                raise HeaderRejected(
                    f"header {raw_name} is not accepted (reject_unknown_headers is on); "
                    f"allowed: {', '.join(sorted(FORWARDED))}"
                )
        if "accept" in forwarded:
            _check_accept(forwarded["accept"])
        if self._options.strict_accept_encoding:
            _check_accept_encoding(forwarded.get("accept-encoding"))
        elif "accept-encoding" in forwarded:
            negotiated = _negotiate_accept_encoding(forwarded["accept-encoding"])
            if negotiated is None:
                del forwarded["accept-encoding"]
            else:
                forwarded["accept-encoding"] = negotiated
        if has_body:
            _check_content_type(forwarded.get("content-type"), has_body)
        else:
            forwarded.pop("content-type", None)
        return forwarded

    def stripped_scope_region(self, headers: Iterable[tuple[str, str]]) -> str | None:
        """The region of the caller signature `check` discards, if it discards one.

        The signature itself is worthless to us, but its scope still says which region the
        caller's SDK was configured for: that is the caller's choice of region.
        """
        if not self._options.strip_caller_signature:
            return None
        for name, value in headers:
            if name.lower() == "authorization":
                match = _SCOPE_REGION_RE.match(value)
                return match["region"] if match else None
        return None

    def check_query(self, query_params: Mapping[str, list[str]]) -> Mapping[str, list[str]]:
        """The query parameters to forward: presigned-URL SigV4 parameters are refused, or
        removed with strip_caller_signature, whatever `validation.allow_unknown_members` says."""
        signing = [key for key in query_params if key.lower() in SIGV4_QUERY_PARAMETERS]
        if not signing:
            return query_params
        if self._options.strip_caller_signature:
            return {key: values for key, values in query_params.items() if key not in signing}
        raise CallerSigningMaterial(
            f"query parameter {signing[0][:40]} carries signing or credential material; the proxy signs "
            f"requests itself, so send them unsigned (not presigned){STRIP_ADVICE}"
        )

    def _caller_signing_material(self, raw_name: str, name: str, value: str) -> None:
        strippable = name in SIGV4_HEADERS and (name != "authorization" or value.startswith("AWS4-HMAC-SHA256 "))
        if self._options.strip_caller_signature and strippable:
            return
        raise CallerSigningMaterial(
            f"header {raw_name} carries signing or credential material; the proxy signs requests "
            f"itself, so send them unsigned ({UNSIGNED_ADVICE}){STRIP_ADVICE if strippable else ''}"
        )


#: How each SDK the docs show sends a request unsigned (README.md: Pointing an app at it).
UNSIGNED_ADVICE = (
    "boto3/botocore: Config(signature_version=UNSIGNED); AWS CLI: --no-sign-request; JavaScript SDK v3: "
    "a client with signer: { sign: async (request) => request }; Go SDK v2: aws.AnonymousCredentials{}"
)
#: For a SigV4 signature (placeholder keys): the proxy can drop it instead of refusing.
STRIP_ADVICE = (
    "; or, for an SDK that cannot, sign with placeholder keys and run the proxy with "
    "headers.strip_caller_signature: true, which drops the caller's SigV4 and signs afresh"
)


def _media_ranges(value: str) -> list[tuple[str, float]]:
    ranges = []
    for item in value.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, raw = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(raw)
                except ValueError:
                    quality = 0.0
        if media:
            ranges.append((media.lower(), quality))
    return ranges


def _check_accept(value: str | None) -> None:
    if value is None or value in _PLAIN_ACCEPT:
        return
    acceptable = {JSON, "application/*", "*/*"}
    if any(media in acceptable and q > 0 for media, q in _media_ranges(value)):
        return
    raise NotAcceptable(f"Accept does not allow {JSON}; allowed values: {JSON}, */*")


def _check_accept_encoding(value: str | None) -> None:
    if value is None:
        return
    for coding, _ in _media_ranges(value):
        if coding not in ALLOWED_ENCODINGS:
            raise HeaderRejected(
                f"Accept-Encoding {_clip(coding)} is not allowed; allowed values: gzip, deflate, identity"
            )


def _negotiate_accept_encoding(value: str) -> str | None:
    """The Accept-Encoding to forward: the caller's list cut to the codings IVS can send.

    HTTP lets an intermediary choose among the codings a client accepts (`curl --compressed`
    sends `gzip, deflate, br, zstd`), so the others are dropped and the rest keep their
    q-values; `*` stands for the IVS codings it does not name. None: nothing is left, so
    send no header (identity is then acceptable). Refused (406) only when the caller
    accepts nothing IVS can answer in.
    """
    if not value.strip():
        return value  # "no coding but identity": IVS can always honour that
    items = [(coding, q, item.strip()) for item in value.split(",")
             for coding, q in _media_ranges(item)]
    named = {coding for coding, _, _ in items}
    kept = [item for coding, _, item in items if coding in ALLOWED_ENCODINGS]
    wildcard = [q for coding, q, _ in items if coding == "*"]
    if wildcard:
        kept += [f"{coding};q={wildcard[0]:g}" for coding in _IVS_CODINGS if coding not in named]
    qualities = {coding: q for coding, q, _ in items}
    identity_q = qualities.get("identity", wildcard[0] if wildcard else 1.0)
    if identity_q <= 0 and not any(
        qualities.get(coding, wildcard[0] if wildcard else 0.0) > 0 for coding in _IVS_CODINGS
    ):
        raise NotAcceptable(
            f"Accept-Encoding {_clip(value)} accepts no coding IVS answers in; "
            "it answers in gzip, deflate or identity, so allow one of them"
        )
    return ", ".join(kept) or None


def _check_content_type(value: str | None, has_body: bool) -> None:
    if not has_body:
        return
    if value is None:
        raise UnsupportedMediaType(f"a request with a body needs Content-Type: {JSON}")
    if value == JSON:  # what every SDK sends: the parse below would accept it
        return
    media, *params = (p.strip().lower() for p in value.split(";"))
    if media != JSON or any(p.replace(" ", "") not in ("charset=utf-8", "") for p in params):
        raise UnsupportedMediaType(
            f"Content-Type {_clip(value)} is not allowed; allowed value: {JSON}"
        )


def _check_content_encoding(value: str) -> None:
    if value.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {_clip(value)} is not supported on requests; send the JSON body uncompressed"
        )


def _clip(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
