"""Caller authentication: who is calling the gateway.

Three methods, each optional, several at once:

* bearer tokens (`Authorization: Bearer ...`), configured only as SHA-256 digests;
* mutual TLS: the client certificate (verified by the TLS layer against the client CA)
  names the caller through a SAN URI / DNS name or its subject CN;
* SDK-native SigV4 with internal keys (`proxy/gateway/sigv4_callers.py`).

One request establishes exactly one caller. When both a certificate and an
`Authorization` header name a caller they must agree; a header that does not check out
is refused even if the certificate alone would do, so a bad credential is never papered
over. A verified certificate that names no caller (a mesh workload certificate, say)
leaves the decision to the header. Every failure is a 401 naming what was wrong, never echoing the credential.

The verified peer certificate reaches this module through `PEER_CERTIFICATE`, set for
each request by the data port (`proxy/serve/server.py`), so this module needs no server.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError
from proxy.gateway.identity import Caller, Unauthenticated
from proxy.gateway.sigv4_callers import PendingSignature, SigV4Verifier

#: RFC 6750 b64token, bounded.
_BEARER = re.compile(r"[A-Za-z0-9._~+/-]{1,4096}=*")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Authentication:
    caller: Caller
    headers: tuple[tuple[str, str], ...]  # the request's headers minus consumed credentials
    signature: PendingSignature | None = None  # SigV4: the body is verified next


class BearerTokens:
    """Token digests from config and from a file that can be re-read (SIGHUP)."""

    def __init__(self, inline: Mapping[str, Sequence[str]], path: str | None) -> None:
        self._inline = _digests(inline, "auth.bearer.tokens")
        self._path = path
        self._entries: tuple[tuple[bytes, str], ...] = self._inline
        if path is not None:
            self.reload()

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(caller for _, caller in self._entries)

    def reload(self) -> int:
        """Re-read the tokens file; on error keep the current set and raise ConfigError."""
        if self._path is None:
            return len(self._entries)
        import yaml  # here: a proxy without a tokens file need not import it (~1 MiB, ~10 ms)

        try:
            raw = yaml.safe_load(Path(self._path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("auth.bearer.tokens_file", f"cannot read: {type(exc).__name__}", self._path) from None
        if not isinstance(raw, dict):
            raise ConfigError("auth.bearer.tokens_file", "must map caller names to digests", self._path)
        merged = {str(k): ([v] if isinstance(v, str) else v) for k, v in raw.items()}
        entries = self._inline + _digests(merged, "auth.bearer.tokens_file", self._path)
        _no_shared_digests(entries, self._path)
        self._entries = entries  # one assignment: a request sees the old set or the new one
        return len(entries)

    def identify(self, token: str) -> str | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        # Every entry is compared, with compare_digest, and the loop never exits early:
        # the time taken says nothing about which digest (or how much of one) matched.
        for expected, caller in self._entries:
            if hmac.compare_digest(digest, expected):
                found = caller
        return found


def _digests(raw: Mapping[str, Any], key: str, source: str = "") -> tuple[tuple[bytes, str], ...]:
    entries = []
    for caller, digests in raw.items():
        if not isinstance(digests, list | tuple) or not all(isinstance(d, str) and _SHA256_HEX.fullmatch(d) for d in digests):
            raise ConfigError(f"{key}.{caller}", "must be sha256 hex digests (64 lower-case hex digits)", source)
        entries += [(bytes.fromhex(d), caller) for d in digests]
    return tuple(entries)


def _no_shared_digests(entries: Iterable[tuple[bytes, str]], source: str | None) -> None:
    owner: dict[bytes, str] = {}
    for digest, caller in entries:
        if owner.setdefault(digest, caller) != caller:
            raise ConfigError("auth.bearer", f"one token digest is listed for {owner[digest]} and {caller}", source or "")


class CertificateIdentities:
    """Maps the identities of a verified client certificate to a caller name."""

    def __init__(self, identities: Mapping[str, Sequence[str]]) -> None:
        self._by_identity = {_normalise(i): caller for caller, ids in identities.items() for i in ids}

    @property
    def callers(self) -> frozenset[str]:
        return frozenset(self._by_identity.values())

    def identify(self, peercert: Mapping[str, Any]) -> str | None:
        presented = certificate_identities(peercert)
        callers = {self._by_identity[i] for i in map(_normalise, presented) if i in self._by_identity}
        if len(callers) > 1:
            raise Unauthenticated("the client certificate names more than one caller", method="mtls", why="conflict")
        if not callers:
            shown = ", ".join(presented[:4]) or "none"
            raise Unauthenticated(f"the client certificate's identities ({shown[:300]}) are not a known caller",
                                  method="mtls", why="unknown_certificate")
        return callers.pop()


def certificate_identities(peercert: Mapping[str, Any]) -> list[str]:
    """SAN URIs and DNS names, then subject CNs, as "URI:...", "DNS:...", "CN:..."."""
    found = [f"{kind}:{value}" for kind, value in peercert.get("subjectAltName", ()) if kind in ("URI", "DNS")]
    for rdn in peercert.get("subject", ()):
        found += [f"CN:{value}" for name, value in rdn if name == "commonName"]
    return found


def _normalise(identity: str) -> str:
    kind, _, value = identity.partition(":")
    kind = kind.upper()
    return f"{kind}:{value.lower() if kind == 'DNS' else value}"  # DNS names are case-insensitive


class Authenticator:
    """Establishes the caller of one request from its headers and TLS peer certificate."""

    def __init__(
        self,
        *,
        bearer: BearerTokens | None = None,
        certificates: CertificateIdentities | None = None,
        sigv4: SigV4Verifier | None = None,
        anonymous: str | None = None,
    ) -> None:
        self.bearer, self.certificates, self.sigv4 = bearer, certificates, sigv4
        # Only when no method is configured (sidecar): every request is this caller.
        self._anonymous = anonymous if not (bearer or certificates or sigv4) else None
        schemes = ['Bearer realm="ivs-proxy"'] * bool(bearer) + ["AWS4-HMAC-SHA256"] * bool(sigv4)
        self.challenge = ", ".join(schemes)  # the 401's WWW-Authenticate ("" for mTLS only)

    @property
    def callers(self) -> frozenset[str]:
        sources = (self.bearer, self.certificates, self.sigv4)
        return frozenset().union(*(s.callers for s in sources if s is not None))

    def authenticate(self, headers: Sequence[tuple[str, str]], peercert: Mapping[str, Any] | None) -> Authentication:
        if self._anonymous is not None:
            return Authentication(Caller(self._anonymous, "none"), tuple(headers))
        values = [value for name, value in headers if name.lower() == "authorization"]
        if len(values) > 1:
            raise Unauthenticated("more than one Authorization header", method="header", why="malformed")
        by_cert, unknown_cert = None, None
        if self.certificates is not None and peercert:
            try:
                by_cert = self.certificates.identify(peercert)
            except Unauthenticated as error:
                if error.why != "unknown_certificate":
                    raise
                unknown_cert = error  # a valid certificate of nobody we know: a header may still say who
        if not values:
            if by_cert is None:
                raise unknown_cert or Unauthenticated(self._missing(peercert), method="none", why="missing")
            return Authentication(Caller(by_cert, "mtls"), tuple(headers))
        found = self._from_header(values[0], headers)
        if by_cert is not None and by_cert != found.caller.name:
            raise Unauthenticated("the client certificate and the Authorization header name different callers",
                                  method=found.caller.method, why="conflict")
        return found

    def _from_header(self, value: str, headers: Sequence[tuple[str, str]]) -> Authentication:
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "bearer" and self.bearer is not None:
            token = credentials.strip()
            if not _BEARER.fullmatch(token):
                raise Unauthenticated("the bearer token is malformed", method="bearer", why="malformed")
            caller = self.bearer.identify(token)
            if caller is None:
                raise Unauthenticated("the bearer token is not known", method="bearer", why="unknown_token")
            rest = tuple((n, v) for n, v in headers if n.lower() != "authorization")
            return Authentication(Caller(caller, "bearer"), rest)
        if scheme == "AWS4-HMAC-SHA256" and self.sigv4 is not None:
            pending = self.sigv4.parse(headers)
            rest = tuple((n, v) for n, v in headers if n.lower() not in self.sigv4.consumed)
            return Authentication(Caller(pending.key.caller, "sigv4"), rest, pending)
        accepted = ", ".join(["Bearer"] * bool(self.bearer) + ["AWS4-HMAC-SHA256"] * bool(self.sigv4)) or "none"
        raise Unauthenticated(f"Authorization scheme {scheme[:20]!r} is not accepted here (accepted: {accepted})",
                              method="header", why="scheme")

    def _missing(self, peercert: Mapping[str, Any] | None) -> str:
        ways = ["a bearer token"] * bool(self.bearer) + ["an AWS SDK signature with your internal keys"] * bool(self.sigv4)
        if self.certificates is not None:
            ways.append("a client certificate" + (" (none was presented)" if not peercert else ""))
        return "no caller credentials: this gateway needs " + " or ".join(ways)
