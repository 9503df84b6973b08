"""SDK-native callers: check a caller's own SigV4 signature against its internal key.

The caller uses an ordinary AWS SDK with `endpoint_url` set to the gateway and an
internal access key from the gateway's config. The gateway recomputes the signature the
way AWS would (with `proxy/aws/signing.py`, pinned against botocore), from the request exactly
as it arrived: method, raw path (SDKs sign the path they send, encoded once more), raw
query, the signed headers with the Host the SDK used, and the SHA-256 of the body. Then
the caller's SigV4 headers are removed and the normal pipeline signs afresh with the
proxy's own credentials.

Checked in two steps so that a bad key or a stale date is refused before the body is read:
`parse` (headers only) and `verify` (once the body is in). Replays are refused by the
replay window (`proxy/gateway/replay.py`), keyed by the signature, for as long as its date is
acceptable.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from proxy.aws.signing import FrozenCredentials, SigV4Signer
from proxy.gateway.identity import SignatureRejected, Unauthenticated

_AUTHORIZATION = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Za-z0-9]{16,128})/(?P<date>\d{8})/(?P<region>[a-z0-9-]{1,32})"
    r"/(?P<service>[a-z0-9-]{1,64})/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9-]+(?:;[a-z0-9-]+)*)"
    r",\s*Signature=(?P<signature>[0-9a-f]{64})"
)
#: Just enough of the credential scope to say which part of a malformed one is wrong.
_SCOPE_REGION = re.compile(r"AWS4-HMAC-SHA256 Credential=[^/,\s]*/[^/,\s]*/(?P<region>[^/,]*)/")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
#: How much of a malformed region a refusal quotes (sanitised).
REGION_QUOTE_CHARS = 24
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")

#: The headers that carry the caller's signature: consumed here, never forwarded.
CONSUMED = frozenset({"authorization", "x-amz-date", "x-amz-content-sha256"})


@dataclass(frozen=True, slots=True)
class InternalKey:
    caller: str
    access_key_id: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PendingSignature:
    """A signature whose header part checked out; `SigV4Verifier.verify` checks the rest."""

    key: InternalKey = field(repr=False)
    region: str
    service: str
    amz_date: datetime.datetime
    signed: tuple[tuple[str, str], ...]  # each signed header: (lower-case name, value)
    signature: str = field(repr=False)
    content_sha256: str | None


class SigV4Verifier:
    consumed = CONSUMED

    def __init__(self, keys: Iterable[InternalKey], max_skew_seconds: int,
                 clock: Callable[[], datetime.datetime]) -> None:
        self._keys = {key.access_key_id: key for key in keys}
        self.max_skew = datetime.timedelta(seconds=max_skew_seconds)
        self._clock = clock
        self._signer = SigV4Signer()

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(key.caller for key in self._keys.values())

    def parse(self, headers: Sequence[tuple[str, str]]) -> PendingSignature:
        """Check everything but the body: form, key, date, signed header list."""
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name.lower(), []).append(value)
        match = _AUTHORIZATION.fullmatch(values["authorization"][0].strip())
        if match is None:
            raise Unauthenticated(_malformed_authorization(values["authorization"][0].strip()),
                                  method="sigv4", why="malformed")
        key = self._keys.get(match["key"])
        if key is None:
            raise Unauthenticated("the access key id is not known to this gateway",
                                  method="sigv4", why="unknown_key", key_id=match["key"])
        if "x-amz-security-token" in values:
            raise Unauthenticated("internal keys take no session token; remove X-Amz-Security-Token "
                                  "(AWS_SESSION_TOKEN)", method="sigv4", why="session_token", key_id=key.access_key_id)
        amz_date = self._date(values.get("x-amz-date", []), match["date"], key)
        signed = match["signed"].split(";")
        if signed != sorted(set(signed)) or not {"host", "x-amz-date"} <= set(signed):
            raise SignatureRejected("SignedHeaders must be sorted, unique and include host and x-amz-date",
                                    method="sigv4", why="malformed", key_id=key.access_key_id)
        missing = [name for name in signed if name not in values]
        if missing:
            raise SignatureRejected(f"signed header {missing[0]} is not in the request",
                                    method="sigv4", why="malformed", key_id=key.access_key_id)
        content = values.get("x-amz-content-sha256")
        if content is not None and (len(content) != 1 or not _HEX64.fullmatch(content[0])):
            raise SignatureRejected("X-Amz-Content-Sha256 must be the hex SHA-256 of the body "
                                    "(unsigned or streaming payloads are not accepted)",
                                    method="sigv4", why="payload_hash", key_id=key.access_key_id)
        return PendingSignature(
            key, match["region"], match["service"], amz_date,
            tuple((name, ",".join(values[name])) for name in signed),
            match["signature"], content[0] if content else None,
        )

    def _date(self, given: list[str], scope_date: str, key: InternalKey) -> datetime.datetime:
        if len(given) != 1 or not _AMZ_DATE.fullmatch(given[0]):
            raise SignatureRejected("X-Amz-Date must be given once, as YYYYMMDDTHHMMSSZ",
                                    method="sigv4", why="malformed", key_id=key.access_key_id)
        try:
            when = datetime.datetime.strptime(given[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
        except ValueError:
            raise SignatureRejected("X-Amz-Date is not a date", method="sigv4", why="malformed",
                                    key_id=key.access_key_id) from None
        if given[0][:8] != scope_date:
            raise SignatureRejected("the credential scope's date is not the day of X-Amz-Date",
                                    method="sigv4", why="scope", key_id=key.access_key_id)
        if abs(self._clock() - when) > self.max_skew:
            raise SignatureRejected(
                f"signature date {given[0]} is more than {int(self.max_skew.total_seconds())} s from the "
                "gateway's clock (check the caller's clock)", method="sigv4", why="stale", key_id=key.access_key_id)
        return when

    def verify(self, pending: PendingSignature, *, method: str, path: str, query: str, body: bytes,
               signing_name: str) -> None:
        """Check the signature over the whole request; raise SignatureRejected if it is off."""
        key_id = pending.key.access_key_id
        if pending.service != signing_name:
            raise SignatureRejected(
                f"the credential scope names service {pending.service!r}; this path is served with "
                f"signing name {signing_name!r}", method="sigv4", why="scope", key_id=key_id)
        digest = hashlib.sha256(body).hexdigest()
        if pending.content_sha256 is not None and not hmac.compare_digest(pending.content_sha256, digest):
            raise SignatureRejected("X-Amz-Content-Sha256 does not match the body",
                                    method="sigv4", why="payload_hash", key_id=key_id)
        signed = dict(pending.signed)
        expected = self._signer.sign(
            method=method, host=signed.pop("host"), path=path, query=query,
            headers={n: v for n, v in signed.items() if n != "x-amz-date"}, body=body,
            service=pending.service, region=pending.region,
            credentials=FrozenCredentials(key_id, pending.key.secret), now=pending.amz_date,
        ).authorization.rpartition("Signature=")[2]
        if not hmac.compare_digest(expected, pending.signature):
            raise SignatureRejected(
                "the request signature does not match (check the secret of this access key, and that "
                "nothing between the SDK and the gateway rewrote the request)",
                method="sigv4", why="bad_signature", key_id=key_id)


def _malformed_authorization(authorization: str) -> str:
    scope = _SCOPE_REGION.match(authorization)
    if scope is not None and not _REGION.fullmatch(scope["region"]):
        region = scope["region"]
        shown = _UNSAFE.sub("?", region[:REGION_QUOTE_CHARS]) + ("..." if len(region) > REGION_QUOTE_CHARS else "")
        return (f"the credential scope's region {shown!r} is not a region name (1-32 lower-case letters, "
                "digits and hyphens, such as us-west-2); check the SDK's region setting")
    return "the AWS4-HMAC-SHA256 Authorization header is malformed"
