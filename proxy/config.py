"""Settings: parsed once into frozen dataclasses; a bad value fails start-up.

The YAML file is optional; CLI flags override it. Every key is documented in
`config/reference.yaml`. An unknown key is an error (a typo must not silently fall back
to a default), reported with its dotted path and the file it came from.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from proxy.errors import ConfigError

MIB = 1024 * 1024


@dataclass(frozen=True)
class HeadersConfig:
    reject_unknown_headers: bool = False
    strip_caller_signature: bool = False


@dataclass(frozen=True)
class ValidationConfig:
    allow_unknown_members: bool = False
    allow_unknown_enum_values: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    max_body_bytes: int = 1 * MIB


@dataclass(frozen=True)
class UpstreamConfig:
    connect_timeout_seconds: float = 3.0
    read_timeout_seconds: float = 30.0
    max_connections: int = 100
    ca_bundle: str | None = None


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

    def __post_init__(self) -> None:
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


def parse_host_port(value: str, key: str = "listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"{value!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ProxyConfig:
    """Read the YAML file (if any), apply flag overrides (dotted keys), build the config."""
    raw: dict[str, Any] = {}
    source = str(path) if path else "<flags>"
    if path is not None:
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
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, key + ".")
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key)
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
