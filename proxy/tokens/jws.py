"""ES384 compact JWS (RFC 7515), the only form IVS accepts for both token kinds.

The signer is given the JWS signing input and returns the signature in the form RFC 7518
section 3.4 requires: the raw big-endian r and s, 48 bytes each for P-384, concatenated.
KMS and `cryptography` both produce a DER `ECDSA-Sig-Value` instead; `der_to_raw` converts,
and refuses anything that is not exactly one such structure.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

ALGORITHM = "ES384"
#: Bytes of each of r and s for P-384 (a 384-bit order).
P384_INT_BYTES = 48


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signing_input(header: Mapping[str, Any], payload: Mapping[str, Any]) -> bytes:
    """`BASE64URL(header) "." BASE64URL(payload)`, compact JSON, the bytes that are signed."""
    parts = (json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode() for part in (header, payload))
    return ".".join(b64url(part) for part in parts).encode("ascii")


def compact(signed: bytes, raw_signature: bytes) -> str:
    if len(raw_signature) != 2 * P384_INT_BYTES:
        raise ValueError(f"an ES384 signature is {2 * P384_INT_BYTES} bytes, not {len(raw_signature)}")
    return f"{signed.decode('ascii')}.{b64url(raw_signature)}"


def der_to_raw(der: bytes, size: int = P384_INT_BYTES) -> bytes:
    """DER `SEQUENCE { r INTEGER, s INTEGER }` -> r || s, each left-padded to `size` bytes.

    DER integers are minimal and signed: a leading 0x00 appears when the top bit is set, and
    short values lose their leading zero bytes; both must be undone exactly."""
    body = _read(der, 0x30, whole=True)
    r, rest = _integer(body)
    s, rest = _integer(rest)
    if rest:
        raise ValueError("trailing bytes after the ECDSA signature's two integers")
    if max(r, s).bit_length() > 8 * size:
        raise ValueError("an ECDSA signature integer is larger than the curve allows")
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _integer(data: bytes) -> tuple[int, bytes]:
    value, rest = _read_with_rest(data, 0x02)
    if not value or value[0] & 0x80:
        raise ValueError("an ECDSA signature integer is empty or negative")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise ValueError("an ECDSA signature integer is not minimally encoded")
    return int.from_bytes(value, "big"), rest


def _read(data: bytes, tag: int, *, whole: bool) -> bytes:
    value, rest = _read_with_rest(data, tag)
    if whole and rest:
        raise ValueError("trailing bytes after the ECDSA signature")
    return value


def _read_with_rest(data: bytes, tag: int) -> tuple[bytes, bytes]:
    if len(data) < 2 or data[0] != tag:
        raise ValueError(f"expected DER tag 0x{tag:02x}")
    length, offset = data[1], 2
    if length & 0x80:  # long form: the next (length & 0x7f) bytes hold the length
        count = length & 0x7F
        if count == 0 or count > 2 or len(data) < 2 + count:
            raise ValueError("a DER length this signature cannot have")
        length, offset = int.from_bytes(data[2:2 + count], "big"), 2 + count
    if len(data) < offset + length:
        raise ValueError("a DER value shorter than its length")
    return data[offset:offset + length], data[offset + length:]
