"""Which AWS region a request goes to.

Resolved once at start-up (`default_region`, `service_regions`, `RegionChooser(...)`); the
request path only calls `RegionChooser.choose`, which does set look-ups and comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import botocore.session
from botocore.configprovider import (
    BOTOCORE_DEFAUT_SESSION_VARIABLES,
    ConfigChainFactory,
    ConfigValueStore,
)
from botocore.exceptions import BotoCoreError
from botocore.regions import EndpointResolver

from proxy.errors import ConfigError, RegionRejected
from proxy.model.botocore_data import create_loader, load_endpoint_names

# Syntactic plausibility only: two or more letters, one or more lettered words, a number.
# Covers every region of every botocore partition (`eusc-de-east-1` is why it is `{2,}`,
# not `{2}`) and refuses the pseudo-regions (`aws-global`) and typos such as `us-west2`.
_REGION_RE = re.compile(r"^[a-z]{2,}(-[a-z]+)+-\d+$")


def is_plausible_region(name: str) -> bool:
    """True if `name` is shaped like an AWS region name (it may still not exist)."""
    return _REGION_RE.fullmatch(name) is not None


def botocore_session(
    env: Mapping[str, str], profile: str | None = None
) -> botocore.session.Session:
    """A botocore session whose whole config chain reads `env`, not `os.environ`.

    Why: botocore's default chains capture `os.environ`; start-up code and tests pass the
    environment explicitly so resolution is reproducible and nothing leaks between tests.
    The chains are botocore's own (same variables, precedence and type conversions).
    """
    # No builtin handlers: we never make calls with this session, only read its config.
    session = botocore.session.Session(profile=profile, include_builtin_handlers=False)
    factory = ConfigChainFactory(session=session, environ=dict(env))
    mapping = {
        name: factory.create_config_chain(
            instance_name=name,
            env_var_names=env_vars,
            config_property_names=config_key,
            default=default,
            conversion_func=convert,
        )
        for name, (config_key, env_vars, default, convert) in (
            BOTOCORE_DEFAUT_SESSION_VARIABLES.items()
        )
    }
    session.register_component("config_store", ConfigValueStore(mapping=mapping))
    return session


def scoped_config(session: botocore.session.Session) -> dict[str, object]:
    """The profile's section of the shared config file; ConfigError if unusable."""
    try:
        return session.get_scoped_config()
    except BotoCoreError as exc:  # ProfileNotFound, ConfigParseError, ...
        raise ConfigError("profile", str(exc), "shared config") from None


def _checked(region: str, key: str) -> str:
    if not is_plausible_region(region):
        raise ConfigError(key, f"{region!r} is not a region name (like us-west-2)")
    return region


def default_region(
    explicit: str | None, env: Mapping[str, str], profile: str | None
) -> str | None:
    """The process's default region, or None if nothing sets one.

    Order: `explicit` (--region / config), `AWS_REGION`, `AWS_DEFAULT_REGION`, then the
    profile's `region` in the shared config file. botocore itself never reads
    `AWS_REGION` (only the other SDKs do), hence this function. Empty values count as
    unset; a malformed value is a ConfigError naming where it came from.
    """
    for key, value in (
        ("region", explicit),
        ("AWS_REGION", env.get("AWS_REGION")),
        ("AWS_DEFAULT_REGION", env.get("AWS_DEFAULT_REGION")),
    ):
        if value:
            return _checked(value, key)
    session = botocore_session(env, profile)
    region = scoped_config(session).get("region")
    if not region:
        return None
    return _checked(str(region), f"profile {session.profile or 'default'}: region")


def service_regions(
    service_name: str, session: botocore.session.Session | None = None
) -> frozenset[str]:
    """Every region, in every partition, where botocore's data says the service is offered.

    For ivs, ivs-realtime and ivschat only the `aws` partition lists regions today; the
    others return empty lists, so the union is the `aws` list.
    """
    if session is None:
        return offered_regions((service_name,))[service_name]
    return _offered_regions(service_name, session)


#: botocore's bundled data never changes in-process: each service is looked up once.
_OFFERED: dict[str, frozenset[str]] = {}


def offered_regions(service_names: Iterable[str]) -> dict[str, frozenset[str]]:
    """`service_regions` of several services, reading endpoints.json once for all of them."""
    names = tuple(service_names)
    missing = [name for name in names if name not in _OFFERED]
    if missing:
        _OFFERED.update(_read_offered_regions(missing))
    return {name: _OFFERED[name] for name in names}


def _read_offered_regions(service_names: Sequence[str]) -> dict[str, frozenset[str]]:
    # What `botocore.session.get_session().get_available_regions()` answers, from the same
    # files (data_path as the default session reads it), but with a loader of our own that
    # is freed on return: endpoints.json alone decodes into several MiB.
    data_path = botocore.session.Session(include_builtin_handlers=False).get_config_variable("data_path")
    loader = create_loader(data_path)
    known = loader.list_available_services("service-2")
    endpoints, path = load_endpoint_names(loader)
    resolver = EndpointResolver(endpoints, uses_builtin_data=loader.is_builtin_path(path))
    partitions = resolver.get_available_partitions()
    offered = {}
    for name in service_names:
        if name not in known:
            raise ConfigError("service", f"{name!r} is not a botocore service")
        prefix = loader.service_metadata(name).get("endpointPrefix", name)
        offered[name] = frozenset(
            region for partition in partitions for region in resolver.get_available_endpoints(prefix, partition)
        )
    return offered


def _offered_regions(service_name: str, session: botocore.session.Session) -> frozenset[str]:
    if service_name not in session.get_available_services():
        raise ConfigError("service", f"{service_name!r} is not a botocore service")
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions(service_name, partition)
    )


class RegionChooser:
    """Picks the region of one request: the region of the ARNs it names, else the region
    the caller chose, else the default.

    Built once at start-up. `allowed` maps each service to the regions it may be sent to
    (botocore's list narrowed by configuration).
    """

    __slots__ = ("_allowed", "_default")

    def __init__(self, default: str | None, allowed: Mapping[str, frozenset[str]]) -> None:
        self._default = default
        self._allowed = dict(allowed)

    def choose(self, service: str, arn_regions: Sequence[tuple[str, str]],
               requested: Sequence[tuple[str, str]] = ()) -> str:
        """The region for a `service` request naming ARNs [(member_path, region)].

        `requested` are the regions the caller chose explicitly, as [(where it said so,
        region)]: a region path prefix, the credential scope of its signature. Precedence:
        the ARNs' region, then the requested one, then the default.

        Raises RegionRejected if the ARNs disagree, if a requested region disagrees with
        another or with the ARNs, if there is no region at all, or if the region is not
        allowed for the service.
        """
        first: tuple[str, str] | None = None
        for member, region in arn_regions:
            if not region:  # e.g. IAM ARNs carry no region: they say nothing about ours
                continue
            if first is None:
                first = (member, region)
            elif region != first[1]:
                raise RegionRejected(
                    f"ARNs name different regions: {first[0]} is in {first[1]}, "
                    f"{member} is in {region}"
                )
        asked: tuple[str, str] | None = None
        for source, region in requested:
            # Refused, never resolved: either answer would surprise the caller somewhere.
            if asked is not None and region != asked[1]:
                raise RegionRejected(
                    f"{asked[0]} chooses region {asked[1]}, but {source} chooses {region}"
                )
            if first is not None and region != first[1]:
                raise RegionRejected(
                    f"{source} chooses region {region}, but {first[0]} is in {first[1]}"
                )
            asked = asked or (source, region)
        # The ARN's region wins: the resource only exists there, so sending the call
        # to the default region would just fail with a confusing not-found.
        if first is not None:
            chosen: str | None = first[1]
        elif asked is not None:
            chosen = asked[1]
        else:
            chosen = self._default
        if chosen is None:
            raise RegionRejected("no region: set AWS_REGION, --region or region: in the config")
        allowed = self._allowed.get(service, frozenset())
        if chosen not in allowed:
            raise RegionRejected(
                f"{service} is not allowed in region {chosen!r}; allowed: "
                + (", ".join(sorted(allowed)) or "none")
            )
        return chosen
