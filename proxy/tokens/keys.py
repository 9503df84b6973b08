"""The keys tokens are signed with: PEM files (a mounted Kubernetes secret) or AWS KMS.

Each key stands for one IVS key resource (`TokenKey.arn`): a playback key pair or a
real-time public key, whose region and account say which channels and stages it serves.
A PEM key is re-read on SIGHUP (a rotated secret); a KMS key's private half never leaves
KMS: the proxy asks KMS to sign, with its own short-lived credentials and SigV4 signer.

Start-up checks (ConfigError, exit 2): the curve is P-384; a KMS key is ECC_NIST_P384 with
KeyUsage SIGN_VERIFY and ECDSA_SHA_384 among its algorithms; the key's public half is the
one IVS holds: the PEM in `public_key_file` when given, else, for a real-time public key,
IVS's own copy (ivs-realtime GetPublicKey). A playback key pair without `public_key_file`
cannot be compared: IVS returns only a fingerprint for it.

No key material, signature or token ever appears in an error or log line: messages name
the key by its IVS ARN and the file by its path.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from proxy.aws.json_api import AwsCallFailed, AwsJsonClient, AwsRestJsonClient
from proxy.config import TokenKey
from proxy.errors import ConfigError, ProxyError, RequestInvalid, SigningUnavailable, UpstreamError
from proxy.tokens.jws import der_to_raw

# cryptography (its Rust extension and OpenSSL bindings: ~7 MiB of RSS, ~10 ms) is imported
# where a key is loaded or checked, not with this module: `proxy.app` imports the token
# wiring in every process, and most of them (a sidecar without keys) never hold a key.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec

CURVE = "secp384r1"
KMS_KEY_SPEC = "ECC_NIST_P384"
KMS_ALGORITHM = "ECDSA_SHA_384"
#: KMS Sign takes at most 4096 bytes with MessageType RAW (it hashes them itself).
KMS_RAW_MAX_BYTES = 4096
#: What the proxy's role must be allowed on a KMS-held key (a served-services session
#: policy grants them too).
KMS_SIGNING_ACTIONS = ("kms:DescribeKey", "kms:GetPublicKey", "kms:Sign")


class TokenSigningUnavailable(ProxyError):
    """The key cannot sign now (KMS unreachable, throttled or refusing): nothing is minted."""

    status = 503
    error_type = "ServiceUnavailableException"
    reason = "token_signing_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "1"})


class SigningKey(Protocol):
    config: TokenKey

    async def sign(self, message: bytes) -> bytes:
        """The ES384 signature of `message`: raw r || s, 96 bytes."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey | None:
        """The public half, once known (a KMS key's after `check`)."""
        ...


def _public_der(key: ec.EllipticCurvePublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_public_half(config: TokenKey, public: ec.EllipticCurvePublicKey, where: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if public.curve.name != CURVE:
        raise ConfigError(where, f"the key is on curve {public.curve.name}, IVS tokens need P-384 ({CURVE})")
    if config.public_key_file is None:
        return
    try:
        expected = serialization.load_pem_public_key(Path(config.public_key_file).read_bytes())
    except OSError as exc:
        raise ConfigError(where, f"cannot read public_key_file: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(where, "public_key_file is not a PEM public key") from None
    if not isinstance(expected, ec.EllipticCurvePublicKey) or _public_der(expected) != _public_der(public):
        raise ConfigError(where, "the key's public half is not the key in public_key_file (the one imported "
                          f"as {config.arn}): IVS would refuse every token it signs")


class PemKey:
    """A P-384 private key in a PEM file; `reload` re-reads it (SIGHUP)."""

    def __init__(self, config: TokenKey) -> None:
        self.config = config
        self._key = self._load()

    @property
    def where(self) -> str:
        return f"tokens.keys ({self.config.arn})"

    def _load(self) -> ec.EllipticCurvePrivateKey:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        assert self.config.private_key_file is not None
        try:
            data = Path(self.config.private_key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(self.where, f"cannot read private_key_file: {exc.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):  # never the library's text: it may quote the file
            raise ConfigError(self.where, "private_key_file is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(self.where, "private_key_file holds no elliptic-curve key; IVS tokens need P-384")
        _check_public_half(self.config, key.public_key(), self.where)
        return key

    def reload(self) -> None:
        """Re-read the file; on any problem keep the key already loaded and raise ConfigError."""
        self._key = self._load()

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    async def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return der_to_raw(self._key.sign(message, ec.ECDSA(hashes.SHA384())))


class KmsKey:
    """An asymmetric KMS key that signs with ECDSA_SHA_384; `check` runs at start-up."""

    def __init__(self, config: TokenKey, kms: AwsJsonClient) -> None:
        assert config.kms_key_id is not None
        self.config = config
        self._kms = kms
        self._key_id = config.kms_key_id
        self.region = kms_region(config)
        self._public: ec.EllipticCurvePublicKey | None = None

    @property
    def where(self) -> str:
        return f"tokens.keys ({self.config.arn}, KMS key {self._key_id})"

    async def check(self) -> None:
        try:
            described = (await self._kms.call("DescribeKey", {"KeyId": self._key_id}, region=self.region))["KeyMetadata"]
            public = await self._kms.call("GetPublicKey", {"KeyId": self._key_id}, region=self.region)
        except AwsCallFailed as exc:
            raise ConfigError(self.where, f"KMS refused the start-up check: {exc.code}") from None
        except (UpstreamError, SigningUnavailable) as exc:
            raise ConfigError(self.where, f"cannot reach KMS for the start-up check: {exc.message}") from None
        spec = described.get("KeySpec") or described.get("CustomerMasterKeySpec")
        if spec != KMS_KEY_SPEC:
            raise ConfigError(self.where, f"the key spec is {spec}, IVS tokens need {KMS_KEY_SPEC}")
        if described.get("KeyUsage") != "SIGN_VERIFY":
            raise ConfigError(self.where, f"the key usage is {described.get('KeyUsage')}, signing needs SIGN_VERIFY")
        if KMS_ALGORITHM not in described.get("SigningAlgorithms", ()):
            raise ConfigError(self.where, f"the key does not sign with {KMS_ALGORITHM}")
        if described.get("KeyState", "Enabled") != "Enabled":
            raise ConfigError(self.where, f"the key is {described.get('KeyState')}, not Enabled")
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = serialization.load_der_public_key(base64.b64decode(public["PublicKey"]))
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ConfigError(self.where, "KMS's public key is not an elliptic-curve key")
        _check_public_half(self.config, key, self.where)
        self._public = key

    def public_key(self) -> ec.EllipticCurvePublicKey | None:
        return self._public

    async def sign(self, message: bytes) -> bytes:
        if len(message) > KMS_RAW_MAX_BYTES:
            raise RequestInvalid(f"the token would be {len(message)} bytes before its signature; KMS signs at most "
                                 f"{KMS_RAW_MAX_BYTES} (shorten attributes or origins)")
        params = {"KeyId": self._key_id, "Message": base64.b64encode(message).decode(), "MessageType": "RAW",
                  "SigningAlgorithm": KMS_ALGORITHM}
        try:
            answer = await self._kms.call("Sign", params, region=self.region)
            return der_to_raw(base64.b64decode(answer["Signature"]))
        except AwsCallFailed as exc:
            raise TokenSigningUnavailable(f"KMS did not sign the token ({exc.code})") from None
        except (UpstreamError, SigningUnavailable) as exc:
            raise TokenSigningUnavailable(f"KMS could not be asked to sign the token ({exc.reason})") from None
        except (KeyError, ValueError):
            raise TokenSigningUnavailable("KMS answered Sign without a usable signature") from None


def kms_region(config: TokenKey) -> str:
    """Where the KMS key lives: `kms_region`, else its ARN's region, else the IVS key's."""
    parts = (config.kms_key_id or "").split(":")
    from_arn = parts[3] if parts[0] == "arn" and len(parts) > 4 and parts[3] else None
    return config.kms_region or from_arn or config.region


class KeyRing:
    """Every configured key; a resource is signed by the first key of its kind, region and
    account (list the new key first to rotate, keep the old one until IVS drops it)."""

    def __init__(self, keys: Sequence[SigningKey]) -> None:
        self.keys = tuple(keys)

    def kinds(self) -> set[str]:
        return {key.config.kind for key in self.keys}

    def for_resource(self, kind: str, arn: str) -> SigningKey:
        region, account = arn.split(":")[3:5]
        for key in self.keys:
            if key.config.kind == kind and key.config.region == region and key.config.account == account:
                return key
        noun = "playback key pair" if kind == "playback" else "real-time public key"
        raise RequestInvalid(f"ivs-proxy holds no {noun} for account {account} in {region}")

    def reload(self) -> int:
        """Re-read every PEM key (SIGHUP). A key that fails keeps the key it had; the first
        failure is raised once every other key has been re-read."""
        pem = [key for key in self.keys if isinstance(key, PemKey)]
        failures: list[ConfigError] = []
        for key in pem:
            try:
                key.reload()
            except ConfigError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]
        return len(pem)

    @property
    def has_files(self) -> bool:
        return any(isinstance(key, PemKey) for key in self.keys)

    async def check(self, realtime: AwsRestJsonClient | None = None) -> None:
        """The KMS keys' start-up checks, then each real-time key without `public_key_file`
        against IVS's copy (when ivs-realtime is served)."""
        for key in self.keys:
            if isinstance(key, KmsKey):
                await key.check()
        for key in self.keys:
            if realtime is not None and key.config.kind == "participant" and key.config.public_key_file is None:
                await _check_against_ivs(key, realtime)


async def _check_against_ivs(key: SigningKey, realtime: AwsRestJsonClient) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    where = f"tokens.keys ({key.config.arn})"
    try:
        answer = await realtime.call("GetPublicKey", {"arn": key.config.arn}, region=key.config.region)
    except AwsCallFailed as exc:
        raise ConfigError(where, f"IVS refused GetPublicKey ({exc.code}): the proxy compares the key with the public "
                          "key IVS holds; allow it ivs:GetPublicKey, or give public_key_file") from None
    except (UpstreamError, SigningUnavailable) as exc:
        raise ConfigError(where, f"cannot reach IVS to compare the key with its public key: {exc.message}") from None
    try:
        imported = serialization.load_pem_public_key(str(answer["publicKey"]["publicKeyMaterial"]).encode())
    except (KeyError, TypeError, ValueError):
        raise ConfigError(where, "IVS's GetPublicKey answer holds no PEM public key") from None
    public = key.public_key()
    if public is None or not isinstance(imported, ec.EllipticCurvePublicKey) or \
            _public_der(imported) != _public_der(public):
        raise ConfigError(where, "the key's public half is not the public key IVS holds for this ARN: "
                          "IVS would refuse every token it signs")
