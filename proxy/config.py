"""Settings: parsed once into frozen dataclasses; a bad value fails start-up.

The YAML file is optional; CLI flags override it. Every key is documented in
`config/reference.yaml`. An unknown key is an error (a typo must not silently fall back
to a default), reported with its dotted path and the file it came from.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError
from proxy.policy import PolicyDocument

MIB = 1024 * 1024


@dataclass(frozen=True)
class HeadersConfig:
    reject_unknown_headers: bool = False
    strip_caller_signature: bool = False
    strict_accept_encoding: bool = False


@dataclass(frozen=True)
class ValidationConfig:
    allow_unknown_members: bool = False
    allow_unknown_enum_values: bool = False


def _positive(section: str, config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ConfigError(f"{section}.{name}", "must be positive")


@dataclass(frozen=True)
class LimitsConfig:
    """What one caller may hold (docs/resilience.md: overload, slow clients)."""

    max_body_bytes: int = 1 * MIB
    # Requests handled at once; beyond it they queue, then get 503 + Retry-After.
    max_inflight_requests: int = 100
    max_queued_requests: int = 50
    queue_timeout_seconds: float = 1.0
    # Once a request's first byte arrived, its line and headers must follow within this.
    header_timeout_seconds: float = 10.0
    # The whole body must arrive within this once the headers are in (else 408).
    body_timeout_seconds: float = 10.0
    # After the grace, a body must average at least this rate (else 408): a trickling
    # caller is cut early. Bodies still arriving (after 0.5 s) hold max_body_reads, not in-flight slots.
    body_grace_seconds: float = 2.0
    body_min_rate_bytes_per_second: int = 1024
    max_body_reads: int = 256
    # The most of max_inflight_requests (queue included) and of max_body_reads that one
    # caller, or one client address when unauthenticated, may hold: 0 < share <= 1.
    max_share_per_caller: float = 1.0
    # A keep-alive connection with no request in progress is closed after this.
    idle_timeout_seconds: float = 60.0

    def __post_init__(self) -> None:
        _positive("limits", self, "max_inflight_requests", "queue_timeout_seconds", "header_timeout_seconds",
                  "body_timeout_seconds", "idle_timeout_seconds", "body_grace_seconds",
                  "body_min_rate_bytes_per_second", "max_body_reads")
        if self.max_queued_requests < 0:
            raise ConfigError("limits.max_queued_requests", "must be 0 or more")
        if not 0 < self.max_share_per_caller <= 1:
            raise ConfigError("limits.max_share_per_caller", "must be > 0 and <= 1")


@dataclass(frozen=True)
class UpstreamConfig:
    connect_timeout_seconds: float = 2.0
    # Longest silence while waiting for, or reading, AWS's answer.
    read_timeout_seconds: float = 10.0
    # One attempt, from sending to the end of the answer (streamed bodies: read timeout only).
    attempt_timeout_seconds: float = 10.0
    # Every attempt and the waits between them; also bounded by the caller's ttl.
    total_timeout_seconds: float = 20.0
    max_connections: int = 100
    ca_bundle: str | None = None

    def __post_init__(self) -> None:
        _positive("upstream", self, "attempt_timeout_seconds", "total_timeout_seconds", "max_connections")


@dataclass(frozen=True)
class RetriesConfig:
    """Retries of failed upstream attempts (proxy/aws/retries.py, docs/resilience.md)."""

    max_attempts: int = 3  # 1 (or 0): no retries
    backoff_base_seconds: float = 0.05
    throttling_backoff_base_seconds: float = 1.0
    max_backoff_seconds: float = 20.0
    quota_tokens: int = 500

    def __post_init__(self) -> None:
        if not 0 <= self.max_attempts <= 10:
            raise ConfigError("retries.max_attempts", "must be 0 to 10")
        _positive("retries", self, "backoff_base_seconds", "throttling_backoff_base_seconds",
                  "max_backoff_seconds")
        if self.quota_tokens < 0:
            raise ConfigError("retries.quota_tokens", "must be 0 or more")


@dataclass(frozen=True)
class ShutdownConfig:
    """The drain on SIGTERM (docs/resilience.md); proxy/defaults.py derives the manifests' timings."""

    drain_delay_seconds: float = 5.0
    drain_timeout_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.drain_delay_seconds < 0 or self.drain_timeout_seconds < 0:
            raise ConfigError("shutdown", "drain_delay_seconds and drain_timeout_seconds must be 0 or more")


@dataclass(frozen=True)
class CredentialsConfig:
    """Where the proxy's own AWS credentials come from (docs/credentials.md)."""

    profile: str | None = None
    allow_long_lived_credentials: bool = False  # local development only
    # Set: the proxy assumes this role itself with whatever the standard chain finds.
    role_arn: str | None = None
    role_session_name: str = "ivs-proxy"
    external_id: str | None = None
    duration_seconds: int = 3600
    # "served-services" (only the IAM actions of `services`), "none", or a JSON policy.
    session_policy: str = "served-services"

    _ROLE_ARN: typing.ClassVar = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
    _SESSION_NAME: typing.ClassVar = re.compile(r"[\w+=,.@-]{2,64}")
    _EXTERNAL_ID: typing.ClassVar = re.compile(r"[\w+=,.@:/-]{2,1224}")

    def __post_init__(self) -> None:
        checks = (
            ("role_arn", self.role_arn is None or self._ROLE_ARN.fullmatch(self.role_arn), "must be an IAM role ARN"),
            ("role_session_name", self._SESSION_NAME.fullmatch(self.role_session_name),
             "must be 2-64 of [A-Za-z0-9+=,.@_-]"),
            ("external_id", self.external_id is None or self._EXTERNAL_ID.fullmatch(self.external_id),
             "must be 2-1224 of [A-Za-z0-9+=,.@:/_-]"),
            ("external_id", self.external_id is None or self.role_arn, "is used only with credentials.role_arn"),
            ("duration_seconds", 900 <= self.duration_seconds <= 43200, "must be 900 to 43200 (15 min to 12 h)"),
            ("session_policy", self._is_session_policy(self.session_policy),
             'must be "served-services", "none" or a JSON policy document'),
        )
        for key, ok, reason in checks:
            if not ok:
                raise ConfigError(f"credentials.{key}", reason)

    @staticmethod
    def _is_session_policy(value: str) -> bool:
        if value in ("served-services", "none"):
            return True
        try:
            return isinstance(json.loads(value), dict)
        except ValueError:
            return False


@dataclass(frozen=True)
class LogConfig:
    level: str = "info"
    format: str = "json"


#: Caller names end up in logs, metric labels and Redis keys: keep them tame.
CALLER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_IDENTITY = re.compile(r"(URI|DNS|CN):\S.*", re.IGNORECASE)


def _check_callers(names: Any, key: str) -> None:
    for name in names:
        if not CALLER_NAME.fullmatch(name):
            raise ConfigError(f"{key}.{name}", "a caller name is 1-64 of [A-Za-z0-9._-], starting alphanumeric")


@dataclass(frozen=True)
class BearerConfig:
    """Bearer tokens: only their SHA-256 hex digests are configured, never the tokens."""

    tokens: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # caller -> digests
    tokens_file: str | None = None  # YAML: caller -> digest or [digests]; re-read on SIGHUP

    def __post_init__(self) -> None:
        _check_callers(self.tokens, "auth.bearer.tokens")
        for caller, digests in self.tokens.items():
            for i, digest in enumerate(digests):
                if not _SHA256_HEX.fullmatch(digest):
                    raise ConfigError(f"auth.bearer.tokens.{caller}[{i}]", "must be 64 lower-case hex digits (sha256)")


@dataclass(frozen=True)
class MtlsConfig:
    """Client certificate identity -> caller: "URI:spiffe://...", "DNS:name" or "CN:name"."""

    identities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # caller -> identities

    def __post_init__(self) -> None:
        _check_callers(self.identities, "auth.mtls.identities")
        seen: dict[str, str] = {}
        for caller, identities in self.identities.items():
            for i, identity in enumerate(identities):
                if not _IDENTITY.fullmatch(identity):
                    raise ConfigError(f"auth.mtls.identities.{caller}[{i}]", "must be URI:..., DNS:... or CN:...")
                other = seen.setdefault(identity.lower(), caller)
                if other != caller:
                    raise ConfigError(f"auth.mtls.identities.{caller}[{i}]", f"{identity!r} is also {other}'s")


@dataclass(frozen=True)
class SigV4Key:
    """An internal access key for SDK-native callers; the secret comes from a file or env."""

    caller: str
    access_key_id: str
    secret_file: str | None = None
    secret_env: str | None = None

    def __post_init__(self) -> None:
        _check_callers([self.caller], "auth.sigv4.keys")
        if not re.fullmatch(r"[A-Z0-9]{16,128}", self.access_key_id):
            raise ConfigError("auth.sigv4.keys", f"access_key_id of {self.caller} must be 16-128 of [A-Z0-9]")
        if (self.secret_file is None) == (self.secret_env is None):
            raise ConfigError("auth.sigv4.keys", f"key of {self.caller}: give exactly one of secret_file, secret_env")


@dataclass(frozen=True)
class SigV4Config:
    keys: tuple[SigV4Key, ...] = ()
    # How far X-Amz-Date may be from the gateway's clock; also the replay window.
    max_skew_seconds: int = 300

    def __post_init__(self) -> None:
        ids = [k.access_key_id for k in self.keys]
        if len(ids) != len(set(ids)):
            raise ConfigError("auth.sigv4.keys", "an access_key_id is listed twice")
        if not 30 <= self.max_skew_seconds <= 900:
            raise ConfigError("auth.sigv4.max_skew_seconds", "must be 30 to 900")


@dataclass(frozen=True)
class AuthConfig:
    """Caller authentication (docs/gateway.md); any combination of the three methods."""

    bearer: BearerConfig = BearerConfig()
    mtls: MtlsConfig = MtlsConfig()
    sigv4: SigV4Config = SigV4Config()

    @property
    def configured(self) -> bool:
        return bool(self.bearer.tokens or self.bearer.tokens_file or self.mtls.identities or self.sigv4.keys)


@dataclass(frozen=True)
class TlsConfig:
    """TLS on the data listener; with client_ca_file, clients present certificates (mTLS)."""

    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_cert: str = "required"  # required | optional (optional: bearer/SigV4 callers need none)

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ConfigError("tls", "give both cert_file and key_file, or neither")
        if self.client_ca_file is not None and self.cert_file is None:
            raise ConfigError("tls.client_ca_file", "needs tls.cert_file and tls.key_file (mTLS is TLS first)")
        if self.client_cert not in ("required", "optional"):
            raise ConfigError("tls.client_cert", "must be required or optional")


@dataclass(frozen=True)
class PolicyConfig:
    """caller name -> IAM-style policy document (proxy/policy.py has the grammar)."""

    callers: Mapping[str, PolicyDocument] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_callers(self.callers, "policy.callers")


@dataclass(frozen=True)
class RateLimitRule:
    action: str  # IAM action pattern: ivs:PutMetadata, ivs:Get*, ivschat:*
    rate: float  # tokens per second
    burst: float | None = None  # bucket size; default max(1, rate)
    callers: tuple[str, ...] = ("*",)
    # operation: a bucket per caller and operation; caller: one per caller for every
    # operation the rule matches; resource: one per caller, operation and ARN named.
    per: str = "operation"

    def __post_init__(self) -> None:
        if self.rate <= 0 or (self.burst is not None and self.burst < 1):
            raise ConfigError("rate_limits.rules", f"{self.action}: rate must be > 0 and burst >= 1")
        if self.per not in ("operation", "caller", "resource"):
            raise ConfigError("rate_limits.rules", f"{self.action}: per must be operation, caller or resource")
        _check_callers([c for c in self.callers if c != "*"], "rate_limits.rules")


@dataclass(frozen=True)
class RateLimitsConfig:
    # ivs-quotas: every caller is also held to IVS's published call-rate quotas
    # (scaled by default_share); none: only `rules`.
    defaults: str = "none"
    default_share: float = 1.0
    rules: tuple[RateLimitRule, ...] = ()

    def __post_init__(self) -> None:
        if self.defaults not in ("none", "ivs-quotas"):
            raise ConfigError("rate_limits.defaults", "must be none or ivs-quotas")
        if not 0 < self.default_share <= 1:
            raise ConfigError("rate_limits.default_share", "must be > 0 and <= 1")


@dataclass(frozen=True)
class RedisConfig:
    """Shared state for several replicas: rate-limit buckets and the replay window."""

    url: str | None = None  # redis://host:6379/0 or rediss:// (TLS)
    password_file: str | None = None
    key_prefix: str = "ivs-proxy:"
    timeout_seconds: float = 0.25
    retry_seconds: float = 5.0  # after a failure, per-process state this long before retrying
    replay_on_outage: str = "refuse"  # refuse (503 for SigV4 callers) | local

    def __post_init__(self) -> None:
        if self.url is not None and not re.match(r"(redis|rediss|unix)://", self.url):
            raise ConfigError("redis.url", "must start with redis://, rediss:// or unix://")
        if self.timeout_seconds <= 0 or self.retry_seconds <= 0:
            raise ConfigError("redis", "timeout_seconds and retry_seconds must be positive")
        if self.replay_on_outage not in ("refuse", "local"):
            raise ConfigError("redis.replay_on_outage", "must be refuse or local")


#: The IVS key resources a token-signing key stands for: a low-latency playback key pair
#: (ImportPlaybackKeyPair) or a real-time public key (ImportPublicKey).
_TOKEN_KEY_ARN = re.compile(r"arn:aws:ivs:[a-z0-9-]+:\d{12}:(playback-key|public-key)/[A-Za-z0-9-]{1,128}")
TOKEN_CAPABILITIES = ("PUBLISH", "SUBSCRIBE")


@dataclass(frozen=True)
class TokenKey:
    """One signing key: the IVS resource its public half was imported as, and where the
    private half is (a PEM file, or a KMS key it never leaves)."""

    arn: str
    private_key_file: str | None = None
    kms_key_id: str | None = None  # key id, key ARN or alias (alias/...), ECC_NIST_P384 SIGN_VERIFY
    kms_region: str | None = None  # default: the KMS ARN's region, else the IVS ARN's
    public_key_file: str | None = None  # the PEM imported into IVS: checked against the key at start-up

    def __post_init__(self) -> None:
        if not _TOKEN_KEY_ARN.fullmatch(self.arn):
            raise ConfigError("tokens.keys", f"{self.arn!r} is not a playback-key or public-key ARN "
                              "(arn:aws:ivs:REGION:ACCOUNT:playback-key/ID or .../public-key/ID)")
        if (self.private_key_file is None) == (self.kms_key_id is None):
            raise ConfigError("tokens.keys", f"key {self.arn}: give exactly one of private_key_file, kms_key_id")
        if self.kms_region is not None and self.kms_key_id is None:
            raise ConfigError("tokens.keys", f"key {self.arn}: kms_region is used only with kms_key_id")

    @property
    def kind(self) -> str:
        """"playback" or "participant": what this key signs."""
        return "playback" if ":playback-key/" in self.arn else "participant"

    @property
    def region(self) -> str:
        return self.arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.arn.split(":")[4]


@dataclass(frozen=True)
class TokenCaps:
    """What one caller may ask for beyond what its policy allows (docs/tokens.md)."""

    max_lifetime_seconds: int | None = None  # both kinds; None: IVS's own maximum
    capabilities: tuple[str, ...] = TOKEN_CAPABILITIES  # participant tokens

    def __post_init__(self) -> None:
        if self.max_lifetime_seconds is not None and self.max_lifetime_seconds < 1:
            raise ConfigError("tokens.callers", "max_lifetime_seconds must be positive")
        for capability in self.capabilities:
            if capability not in TOKEN_CAPABILITIES:
                raise ConfigError("tokens.callers", f"capability {capability!r} is not one of {TOKEN_CAPABILITIES}")


@dataclass(frozen=True)
class TokensConfig:
    """Playback and participant tokens the proxy mints itself (docs/tokens.md)."""

    keys: tuple[TokenKey, ...] = ()
    # Sidecar mode serves the mint operations only when this is true (a gateway does when keys exist).
    sidecar_minting: bool = False
    playback_lifetime_seconds: int = 300  # when a request gives none
    participant_duration_minutes: int = 60  # when a request gives none
    stage_cache_seconds: float = 300.0  # GetStage answers (endpoints) and GetChannel (playback URL)
    callers: Mapping[str, TokenCaps] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_callers(self.callers, "tokens.callers")
        arns = [key.arn for key in self.keys]
        if len(arns) != len(set(arns)):
            raise ConfigError("tokens.keys", "an arn is listed twice")
        if not 1 <= self.playback_lifetime_seconds <= 86400:
            raise ConfigError("tokens.playback_lifetime_seconds", "must be 1 to 86400")
        if not 1 <= self.participant_duration_minutes <= 20160:
            raise ConfigError("tokens.participant_duration_minutes", "must be 1 to 20160 (IVS's range)")
        if not 0 <= self.stage_cache_seconds <= 14 * 86400:
            raise ConfigError("tokens.stage_cache_seconds", "must be 0 to 1209600 (IVS: at most 14 days)")

    def caps(self, caller: str) -> TokenCaps:
        return self.callers.get(caller) or TokenCaps()


@dataclass(frozen=True)
class EventsConfig:
    """IVS events from an SQS queue to subscribers of GET /_ivs-proxy/events (docs/events.md)."""

    queue_url: str | None = None  # unset: no events
    region: str | None = None  # the queue's; default: the proxy's default region
    wait_time_seconds: int = 20  # SQS long poll, 1-20
    max_messages: int = 10  # per ReceiveMessage, 1-10
    max_backoff_seconds: float = 30.0  # between failed polls (exponential, with jitter)
    subscriber_buffer: int = 256  # events queued for one slow subscriber before it is cut off
    max_subscribers: int = 1000  # per process
    heartbeat_seconds: float = 15.0
    stream_max_length: int = 10000  # events kept for Last-Event-ID resume (Redis stream, or memory)
    dedupe_seconds: int = 3600  # how long an event id is remembered to drop a repeated delivery

    def __post_init__(self) -> None:
        if self.queue_url is not None and not re.match(r"https?://[^/\s]+/\d{12}/[\w-]{1,80}(\.fifo)?$",
                                                       self.queue_url):
            raise ConfigError("events.queue_url", "must be an SQS queue URL: https://sqs.<region>.amazonaws.com/"
                              "<account>/<queue name>")
        if not 1 <= self.wait_time_seconds <= 20:
            raise ConfigError("events.wait_time_seconds", "must be 1 to 20 (SQS's long-poll range)")
        if not 1 <= self.max_messages <= 10:
            raise ConfigError("events.max_messages", "must be 1 to 10 (SQS's batch range)")
        _positive("events", self, "max_backoff_seconds", "subscriber_buffer", "max_subscribers",
                  "heartbeat_seconds", "stream_max_length", "dedupe_seconds")


@dataclass(frozen=True)
class ProxyConfig:
    listen: str = "127.0.0.1:8080"
    admin_listen: str = "127.0.0.1:9901"
    region: str | None = None
    # service name -> regions to serve; narrows botocore's list of where the service exists.
    regions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    services: tuple[str, ...] = ("ivs", "ivs-realtime", "ivschat")
    headers: HeadersConfig = HeadersConfig()
    validation: ValidationConfig = ValidationConfig()
    limits: LimitsConfig = LimitsConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    credentials: CredentialsConfig = CredentialsConfig()
    log: LogConfig = LogConfig()
    retries: RetriesConfig = RetriesConfig()
    shutdown: ShutdownConfig = ShutdownConfig()
    mode: str = "sidecar"  # sidecar | gateway (docs/gateway.md)
    auth: AuthConfig = AuthConfig()
    tls: TlsConfig = TlsConfig()
    policy: PolicyConfig = PolicyConfig()
    rate_limits: RateLimitsConfig = RateLimitsConfig()
    redis: RedisConfig = RedisConfig()
    tokens: TokensConfig = TokensConfig()
    events: EventsConfig = EventsConfig()
    # Processes serving `listen` (docs/operating.md): 1, N, or "auto" (the CPUs this
    # process may use). Kept as given; `proxy/serve/workers.py` resolves "auto" when serving.
    workers: int | str = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "workers", parse_workers(self.workers))
        _check_access(self)
        if self.events.queue_url and not self.redis.url and self.workers != 1:
            # Each worker would poll the queue into its own buffer: a subscriber would see
            # only the events its worker happened to receive.
            raise ConfigError("events", "with workers other than 1, events need redis.url (one stream for all workers)")
        for key, value in (("listen", self.listen), ("admin_listen", self.admin_listen)):
            parse_host_port(value, key)
        known = {"ivs", "ivs-realtime", "ivschat"}
        for service in (*self.services, *self.regions):
            if service not in known:
                raise ConfigError("services", f"unknown service {service!r}; known: {sorted(known)}")
        if self.limits.max_body_bytes < 1:
            raise ConfigError("limits.max_body_bytes", "must be at least 1")
        if self.log.level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log.level", "must be one of debug, info, warning, error")
        if self.log.format not in ("json", "console"):
            raise ConfigError("log.format", "must be json or console")
        for key in ("connect_timeout_seconds", "read_timeout_seconds"):
            if getattr(self.upstream, key) <= 0:
                raise ConfigError(f"upstream.{key}", "must be positive")


#: More workers than this is a typo, not a machine: each one is a whole proxy (~70 MiB).
MAX_WORKERS = 256


def parse_workers(value: int | str) -> int | str:
    """`workers`: a count from 1 to MAX_WORKERS, or "auto"; a count given as text (a flag) becomes an int."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    count = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_WORKERS:
        raise ConfigError("workers", f"must be a whole number from 1 to {MAX_WORKERS}, or auto; not {value!r}")
    return count


def parse_host_port(value: str, key: str = "listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _check_access(config: ProxyConfig) -> None:
    if config.mode not in ("sidecar", "gateway"):
        raise ConfigError("mode", "must be sidecar or gateway")
    if config.mode == "gateway" and not config.auth.configured:
        raise ConfigError("auth", "gateway mode needs at least one caller authentication method "
                          "(auth.bearer, auth.mtls or auth.sigv4)")
    if config.validation.allow_unknown_members and (config.mode == "gateway" or config.policy.callers):
        # An unknown member is not in the model, so no ARN in it is ever seen by the policy.
        raise ConfigError("validation.allow_unknown_members",
                          "cannot be on where a policy authorises callers (gateway mode, policy.callers): "
                          "an ARN in an unknown member would reach AWS without being authorised")
    if config.auth.mtls.identities and config.tls.client_ca_file is None:
        raise ConfigError("auth.mtls", "needs tls.client_ca_file (and tls.cert_file, tls.key_file)")


def check_exposure(config: ProxyConfig) -> None:
    """Sidecar mode serves its own pod only: a non-loopback listener needs authentication.

    Checked by `serve` and `check-config` on the final config (flags applied), not by
    `load_config`, so that existing manifests still load while they move to gateway mode.
    """
    host, _ = parse_host_port(config.listen)
    if config.mode == "sidecar" and not config.auth.configured and not is_loopback(host):
        raise ConfigError("listen", f"{config.listen!r} is not a loopback address; sidecar mode without caller "
                          "authentication listens on loopback only (use 127.0.0.1, or configure auth / mode: gateway)")


def config_warnings(config: ProxyConfig) -> list[tuple[str, str]]:
    """(key, why) for settings that load and run but work against each other; `check-config`
    prints them and still exits 0."""
    warnings = []
    limits, upstream = config.limits, config.upstream
    if limits.max_inflight_requests > upstream.max_connections:
        warnings.append(("limits.max_inflight_requests", (
            f"{limits.max_inflight_requests} exceeds upstream.max_connections ({upstream.max_connections}): "
            "requests past the pool would wait unseen for a pooled connection and spend their attempt timeout "
            "there; lower it, or raise upstream.max_connections")))
    if config.tokens.keys and config.mode == "sidecar" and not config.tokens.sidecar_minting:
        warnings.append(("tokens.keys", ("sidecar mode does not mint tokens unless tokens.sidecar_minting is "
                                         "true: the keys are not used")))
    return warnings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ProxyConfig:
    """Read the YAML file (if any), apply flag overrides (dotted keys), build the config."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "<flags>"
    if path is not None:
        import yaml  # only with a file: a flags-only start (the sidecar's) skips ~1 MiB and ~10 ms

        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError("-", f"cannot read: {exc.strerror}", source) from None
        except yaml.YAMLError as exc:
            raise ConfigError("-", f"not valid YAML: {exc}", source) from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError("-", "the file must hold a mapping of settings", source)
        raw = loaded or {}
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = raw
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    try:
        return _build(ProxyConfig, raw, "")
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.reason, source) from None


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "-", "must be a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{prefix}{key}", f"unknown key; known keys: {', '.join(sorted(fields))}")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in raw.items()}
    return cls(**values)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and hasattr(hint, "from_config"):
        return hint.from_config(value, key)  # a type with its own grammar (policy documents)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, key + ".")
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # Each type in turn (`int | str` takes 3 as an int, "auto" as a string); when none
        # fits, the first type's complaint is the clearest.
        first_error: ConfigError | None = None
        for candidate in inner:
            try:
                return _coerce(candidate, value, key)
            except ConfigError as exc:
                first_error = first_error or exc
        assert first_error is not None
        raise first_error
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping):
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a mapping")
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, not {value!r}")
        return value
    raise ConfigError(key, f"unsupported setting type {hint!r}")
