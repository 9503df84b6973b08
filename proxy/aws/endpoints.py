"""Where each (service, region) request is sent, and under which SigV4 scope it is signed.

Everything is resolved at start-up by `EndpointTable.build` with botocore's own pieces, so
the proxy goes where an SDK configured the same way would; the request path only does a
dict look-up (`EndpointTable.lookup`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.configprovider import ConfiguredEndpointProvider
from botocore.endpoint_provider import EndpointProvider
from botocore.exceptions import BotoCoreError
from botocore.model import ServiceModel
from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url

from proxy.aws.regions import botocore_session, scoped_config
from proxy.errors import ConfigError, RegionRejected
from proxy.model.botocore_data import create_loader

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One resolved upstream: where to connect and how to sign for it."""

    url: str  # scheme://host[:port][/base-path], never a trailing slash
    host: str  # the Host header: lower-case, port only if not the scheme's default
    base_path: str  # '' or '/prefix' (kept from an endpoint override URL)
    scheme: str  # 'http' or 'https'
    signing_name: str  # SigV4 service name: 'ivs' for ivs *and* ivs-realtime
    signing_region: str

    def url_for(self, path_and_query: str) -> str:
        """The upstream URL for a request path (with its query), under the base path."""
        if not path_and_query.startswith("/"):
            path_and_query = "/" + path_and_query
        return self.url + path_and_query


def parse_endpoint_url(url: str, key: str) -> tuple[str, str, str]:
    """(scheme, host, base_path) of an endpoint URL, or ConfigError naming `key`.

    The Host value is derived as botocore.auth derives the signed Host header (lower
    case, default port dropped, IPv6 in brackets), so what we send is what we sign.
    """
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as exc:
        raise ConfigError(key, f"not a valid URL ({exc})") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError(key, f"scheme {parts.scheme!r} not supported: use http or https")
    if parts.username is not None or parts.password is not None:
        # Never echo the URL here: it carries credentials.
        raise ConfigError(key, "credentials in an endpoint URL are not supported")
    if parts.query or parts.fragment:
        raise ConfigError(key, f"{url!r}: an endpoint URL cannot have a query or fragment")
    if not (is_valid_endpoint_url(url) or is_valid_ipv6_endpoint_url(url)):
        raise ConfigError(key, f"{url!r} is not a valid endpoint URL")
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return parts.scheme, host, parts.path.rstrip("/")


def _signing_scope(properties: Mapping[str, Any], default_name: str, region: str) -> tuple[str, str]:
    """Signing name and region: the ruleset's sigv4 authScheme if any, else the model's."""
    for scheme in properties.get("authSchemes") or ():
        if scheme.get("name") == "sigv4":
            return scheme.get("signingName", default_name), scheme.get("signingRegion", region)
    return default_name, region


def _override_source(service_env_var: str, env: Mapping[str, str], url: str) -> str:
    """Best guess at which setting gave `url`, for error messages only."""
    for key in (service_env_var, "AWS_ENDPOINT_URL"):
        if env.get(key) == url:
            return key
    return "endpoint_url (shared config)"


class EndpointTable:
    """Every (service, region) endpoint the proxy may use, resolved once at start-up."""

    __slots__ = ("_table",)

    def __init__(self, table: Mapping[tuple[str, str], Endpoint]) -> None:
        self._table = dict(table)

    def __len__(self) -> int:
        return len(self._table)

    def lookup(self, service: str, region: str) -> Endpoint:
        """The endpoint for (service, region); RegionRejected if it was not built."""
        try:
            return self._table[(service, region)]
        except KeyError:
            raise RegionRejected(f"no endpoint for {service} in region {region!r}") from None

    @classmethod
    def build(
        cls,
        services: Iterable[str],
        regions: Mapping[str, Iterable[str]],
        env: Mapping[str, str],
        profile: str | None = None,
    ) -> EndpointTable:
        """Resolve the endpoint of each service in each of `regions[service]`.

        Per service, as a botocore client would: the configured endpoint URL
        (`AWS_ENDPOINT_URL_<SERVICE_ID>`, `AWS_ENDPOINT_URL`, the profile's `services`
        section, the profile's `endpoint_url`; none if `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS`)
        goes to the service's endpoint ruleset as `Endpoint`, with `Region`, `UseFIPS` and
        `UseDualStack`. Like botocore, FIPS and dual-stack are not applied to a configured
        URL. A ruleset error (FIPS or dual-stack unavailable) is a ConfigError, now.
        """
        session = botocore_session(env, profile)
        scoped = scoped_config(session)
        get = session.get_config_variable
        use_fips = bool(get("use_fips_endpoint"))
        use_dualstack = bool(get("use_dualstack_endpoint"))
        ignore_configured = bool(get("ignore_configured_endpoint_urls"))
        # The session's own loader would keep the rulesets until a full collection (the
        # session is a reference cycle); this one, reading the same files, goes on return.
        loader = create_loader(get("data_path"))
        partitions = loader.load_data("partitions")
        table: dict[tuple[str, str], Endpoint] = {}
        for service in services:
            try:
                model = ServiceModel({"metadata": loader.service_metadata(service)}, service)
                ruleset = loader.load_service_model(
                    service, "endpoint-rule-set-1", model.api_version
                )
                configured = None if ignore_configured else ConfiguredEndpointProvider(
                    full_config=session.full_config,
                    scoped_config=scoped,
                    client_name=service,
                    environ=dict(env),
                ).provide()
            except BotoCoreError as exc:  # UnknownServiceError, InvalidConfigError, ...
                raise ConfigError(service, str(exc)) from None
            provider = EndpointProvider(ruleset_data=ruleset, partition_data=partitions)
            env_var = "AWS_ENDPOINT_URL_" + model.service_id.replace(" ", "_").upper()
            for region in regions.get(service, ()):
                params: dict[str, Any] = {
                    "Region": region,
                    # botocore: "SDK_ENDPOINT cannot be combined with AWS_USE_FIPS" (and
                    # dual-stack): with a configured URL both builtins are False.
                    "UseFIPS": use_fips and configured is None,
                    "UseDualStack": use_dualstack and configured is None,
                }
                if configured is not None:
                    params["Endpoint"] = configured
                try:
                    resolved = provider.resolve_endpoint(**params)
                except BotoCoreError as exc:
                    raise ConfigError(
                        "AWS_USE_FIPS_ENDPOINT / AWS_USE_DUALSTACK_ENDPOINT",
                        f"{service} in {region}: {exc}",
                    ) from None
                key = _override_source(env_var, env, configured) if configured else service
                scheme, host, base_path = parse_endpoint_url(resolved.url, key)
                name, signing_region = _signing_scope(
                    resolved.properties, model.signing_name, region
                )
                table[(service, region)] = Endpoint(
                    url=f"{scheme}://{host}{base_path}",
                    host=host,
                    base_path=base_path,
                    scheme=scheme,
                    signing_name=name,
                    signing_region=signing_region,
                )
        return cls(table)
