"""ES384 compact JWS: the DER -> raw r||s conversion, checked against cryptography's own DER
encoder on the edge cases (short integers, high bits) and a JOSE library's verifier."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import given
from hypothesis import strategies as st

from proxy.tokens.jws import compact, der_to_raw, signing_input
from tests.support.tokens import key_files

P384_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973


@given(st.integers(1, P384_ORDER - 1), st.integers(1, P384_ORDER - 1))
def test_der_to_raw_is_r_then_s_each_48_bytes(r: int, s: int) -> None:
    raw = der_to_raw(encode_dss_signature(r, s))
    assert len(raw) == 96
    assert (int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big")) == (r, s)


@pytest.mark.parametrize(("r", "s"), [(1, 1), (2**383, 1), (2**384 - 1, 2**7), (2**8 - 1, 2**383 + 5)])
def test_short_values_and_high_bits(r: int, s: int) -> None:
    # 2**383 needs DER's leading zero byte; 1 is one byte long: both must become 48 bytes.
    raw = der_to_raw(encode_dss_signature(r, s))
    assert raw == r.to_bytes(48, "big") + s.to_bytes(48, "big")


@pytest.mark.parametrize("der", [
    b"", b"\x30\x00", b"\x31\x06\x02\x01\x01\x02\x01\x01",  # empty, no integers, not a SEQUENCE
    b"\x30\x06\x02\x01\x01\x02\x01\x01\x00",  # trailing byte
    b"\x30\x06\x02\x01\x81\x02\x01\x01",  # negative r
    b"\x30\x07\x02\x02\x00\x01\x02\x01\x01",  # r not minimally encoded
    b"\x30\x08\x02\x01\x01\x02\x01\x01",  # shorter than its length
])
def test_malformed_der_is_refused(der: bytes) -> None:
    with pytest.raises(ValueError):
        der_to_raw(der)


def test_an_integer_larger_than_p384_is_refused() -> None:
    with pytest.raises(ValueError, match="larger"):
        der_to_raw(encode_dss_signature(2**384, 1))


def test_a_token_signed_this_way_verifies_with_pyjwt(tmp_path: Path) -> None:
    files = key_files(tmp_path)
    key = serialization.load_pem_private_key(files.private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signed = signing_input({"alg": "ES384", "typ": "JWT"}, {"aws:channel-arn": "arn", "exp": 4102444800, "n": "é"})
    der = key.sign(signed, ec.ECDSA(hashes.SHA384()))
    token = compact(signed, der_to_raw(der))
    assert jwt.decode(token, files.public_pem, algorithms=["ES384"]) == {"aws:channel-arn": "arn", "exp": 4102444800,
                                                                         "n": "é"}
    assert decode_dss_signature(der) == (int.from_bytes(der_to_raw(der)[:48], "big"),
                                         int.from_bytes(der_to_raw(der)[48:], "big"))
    with pytest.raises(ValueError, match="96 bytes"):
        compact(signed, der)  # DER is not what JWS wants
