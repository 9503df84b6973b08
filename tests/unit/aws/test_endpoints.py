"""proxy.aws.endpoints: ruleset endpoints, signing scope, SDK endpoint overrides, FIPS/dual-stack."""

from __future__ import annotations

import json
import os
from pathlib import Path

import botocore.auth
import botocore.session
import pytest

from proxy.aws.endpoints import Endpoint, EndpointTable, parse_endpoint_url
from proxy.aws.regions import service_regions
from proxy.errors import ConfigError, RegionRejected

SERVICES = ("ivs", "ivs-realtime", "ivschat")
PREFIX = {"ivs": "ivs", "ivs-realtime": "ivsrealtime", "ivschat": "ivschat"}
SIGNING_NAME = {"ivs": "ivs", "ivs-realtime": "ivs", "ivschat": "ivs" + "chat"}
ENV_VAR = {
    "ivs": "AWS_ENDPOINT_URL_IVS",
    "ivs-realtime": "AWS_ENDPOINT_URL_IVS_REALTIME",
    "ivschat": "AWS_ENDPOINT_URL_IVSCHAT",
}
#: One cheap operation per service, to watch where a real botocore client sends it.
OPERATION = {"ivs": "list_channels", "ivs-realtime": "list_stages", "ivschat": "list_rooms"}
OP_PATH = {"ivs": "/ListChannels", "ivs-realtime": "/ListStages", "ivschat": "/ListRooms"}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose shared files are ours, never the machine's ~/.aws."""
    return {
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }


def write_config(env: dict[str, str], text: str) -> dict[str, str]:
    Path(env["AWS_CONFIG_FILE"]).write_text(text)
    return env


def build(env: dict[str, str], region: str = "us-west-2", profile: str | None = None) -> dict[
    str, Endpoint
]:
    table = EndpointTable.build(SERVICES, {s: [region] for s in SERVICES}, env, profile)
    return {s: table.lookup(s, region) for s in SERVICES}


# --- defaults ----------------------------------------------------------------------

ALL_PAIRS = [(s, r) for s in SERVICES for r in sorted(service_regions(s))]


def test_every_botocore_region_is_resolved(env: dict[str, str]) -> None:
    regions = {s: service_regions(s) for s in SERVICES}
    table = EndpointTable.build(SERVICES, regions, env)
    assert len(table) == sum(len(r) for r in regions.values()) >= 21


@pytest.mark.parametrize(("service", "region"), ALL_PAIRS)
def test_default_endpoint(env: dict[str, str], service: str, region: str) -> None:
    table = EndpointTable.build([service], {service: [region]}, env)
    host = f"{PREFIX[service]}.{region}.amazonaws.com"
    assert table.lookup(service, region) == Endpoint(
        url=f"https://{host}", host=host, base_path="", scheme="https",
        signing_name=SIGNING_NAME[service], signing_region=region,
    )


def test_us_west_2_as_documented(env: dict[str, str]) -> None:
    urls = {s: e.url for s, e in build(env).items()}
    assert urls == {
        "ivs": "https://ivs.us-west-2.amazonaws.com",
        "ivs-realtime": "https://ivsrealtime.us-west-2.amazonaws.com",
        "ivschat": "https://ivschat.us-west-2.amazonaws.com",
    }


def test_partition_dns_suffix_follows_region(env: dict[str, str]) -> None:
    # Not offered there per endpoints.json, but the ruleset knows the partition suffix.
    assert build(env, "cn-north-1")["ivs"].host == "ivs.cn-north-1.amazonaws.com.cn"


def test_lookup_missing_pair_is_region_rejected(env: dict[str, str]) -> None:
    table = EndpointTable.build(["ivs"], {"ivs": ["us-west-2"]}, env)
    with pytest.raises(RegionRejected, match="ivs in region 'eu-west-1'"):
        table.lookup("ivs", "eu-west-1")
    with pytest.raises(RegionRejected):
        table.lookup("ivschat", "us-west-2")


def test_unknown_service_is_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        EndpointTable.build(["nope"], {"nope": ["us-west-2"]}, env)


# --- FIPS / dual-stack ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "template"),
    [
        ({"AWS_USE_FIPS_ENDPOINT": "true"}, "{p}-fips.us-west-2.amazonaws.com"),
        ({"AWS_USE_DUALSTACK_ENDPOINT": "true"}, "{p}.us-west-2.api.aws"),
        ({"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"},
         "{p}-fips.us-west-2.api.aws"),
        ({"AWS_USE_FIPS_ENDPOINT": "false"}, "{p}.us-west-2.amazonaws.com"),
    ],
)
def test_fips_and_dualstack_from_env(
    env: dict[str, str], flags: dict[str, str], template: str
) -> None:
    for service, endpoint in build(env | flags).items():
        assert endpoint.host == template.format(p=PREFIX[service])
        assert endpoint.signing_name == SIGNING_NAME[service]


def test_fips_from_profile(env: dict[str, str]) -> None:
    write_config(env, "[profile f]\nuse_fips_endpoint = true\n")
    assert build(env, profile="f")["ivschat"].host == "ivschat-fips.us-west-2.amazonaws.com"
    assert build(env)["ivschat"].host == "ivschat.us-west-2.amazonaws.com"


@pytest.mark.parametrize(
    ("flag", "field", "message"),
    [
        ("AWS_USE_FIPS_ENDPOINT", "supportsFIPS", "does not support FIPS"),
        ("AWS_USE_DUALSTACK_ENDPOINT", "supportsDualStack", "does not support DualStack"),
    ],
)
def test_unsatisfiable_variant_fails_at_build(
    env: dict[str, str], tmp_path: Path, flag: str, field: str, message: str
) -> None:
    # Every partition shipped today offers both variants, so make one that does not,
    # through botocore's own data override (AWS_DATA_PATH).
    loader = botocore.session.get_session().get_component("data_loader")
    partitions = loader.load_data("partitions")
    for partition in partitions["partitions"]:
        partition["outputs"][field] = False
    (tmp_path / "partitions.json").write_text(json.dumps(partitions))
    env = env | {"AWS_DATA_PATH": str(tmp_path), flag: "true"}
    with pytest.raises(ConfigError, match=message) as err:
        build(env)
    assert "us-west-2" in str(err.value)
    build(env | {flag: "false"})  # the same data without the flag is fine


# --- configured endpoint URLs -----------------------------------------------------------


def test_service_env_override_keeps_base_path(env: dict[str, str]) -> None:
    env[ENV_VAR["ivs-realtime"]] = "http://LocalHost:4566/base/"
    endpoints = build(env)
    rt = endpoints["ivs-realtime"]
    assert rt == Endpoint(url="http://localhost:4566/base", host="localhost:4566",
                          base_path="/base", scheme="http", signing_name="ivs",
                          signing_region="us-west-2")
    assert rt.url_for("/ListStages?x=1") == "http://localhost:4566/base/ListStages?x=1"
    assert endpoints["ivs"].host == "ivs.us-west-2.amazonaws.com"


@pytest.mark.parametrize("service", SERVICES)
def test_service_env_beats_global_env(env: dict[str, str], service: str) -> None:
    env |= {ENV_VAR[service]: "http://one.example:1", "AWS_ENDPOINT_URL": "https://all.example"}
    endpoints = build(env)
    assert endpoints[service].url == "http://one.example:1"
    others = {e.url for s, e in endpoints.items() if s != service}
    assert others == {"https://all.example"}


def test_global_env_override_default_port_dropped(env: dict[str, str]) -> None:
    env["AWS_ENDPOINT_URL"] = "https://proxy.example:443"
    for service, endpoint in build(env, "eu-west-1").items():
        assert (endpoint.url, endpoint.host) == ("https://proxy.example", "proxy.example")
        assert (endpoint.signing_name, endpoint.signing_region) == (
            SIGNING_NAME[service], "eu-west-1")


CONFIG_SERVICES = """\
[profile local]
endpoint_url = http://global.example:9000
services = local-ivs

[services local-ivs]
ivs_realtime =
  endpoint_url = http://rt.example:9001/rt
ivschat =
  endpoint_url = http://chat.example:9002
"""


def test_config_file_services_section(env: dict[str, str]) -> None:
    write_config(env, CONFIG_SERVICES)
    urls = {s: e.url for s, e in build(env, profile="local").items()}
    assert urls == {
        "ivs": "http://global.example:9000",
        "ivs-realtime": "http://rt.example:9001/rt",
        "ivschat": "http://chat.example:9002",
    }


def test_env_overrides_beat_config_file(env: dict[str, str]) -> None:
    write_config(env, CONFIG_SERVICES)
    env["AWS_ENDPOINT_URL"] = "http://env.example"
    urls = {s: e.url for s, e in build(env, profile="local").items()}
    assert set(urls.values()) == {"http://env.example"}


def test_missing_services_section_is_config_error(env: dict[str, str]) -> None:
    write_config(env, "[profile p]\nservices = gone\n")
    with pytest.raises(ConfigError, match="gone"):
        build(env, profile="p")


@pytest.mark.parametrize(
    ("flag", "profile_line"),
    [({"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"}, ""),
     ({}, "ignore_configured_endpoint_urls = true\n")],
)
def test_ignore_configured_endpoint_urls(
    env: dict[str, str], flag: dict[str, str], profile_line: str
) -> None:
    head, rest = CONFIG_SERVICES.split("\n", 1)
    write_config(env, f"{head}\n{profile_line}{rest}")
    env |= flag | {"AWS_ENDPOINT_URL_IVS": "http://ivs.example", "AWS_ENDPOINT_URL": "http://x"}
    for service, endpoint in build(env, profile="local").items():
        assert endpoint.url == f"https://{PREFIX[service]}.us-west-2.amazonaws.com"
    env.pop("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", None)
    write_config(env, CONFIG_SERVICES)  # control: the same settings, not ignored
    assert build(env, profile="local")["ivs"].url == "http://ivs.example"


def test_override_ignores_fips_like_botocore(env: dict[str, str]) -> None:
    env |= {"AWS_ENDPOINT_URL_IVS": "http://local.example",
            "AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"}
    endpoints = build(env)
    assert endpoints["ivs"].url == "http://local.example"
    assert endpoints["ivschat"].host == "ivschat-fips.us-west-2.api.aws"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://files.example", "scheme 'ftp' not supported"),
        ("localhost:4566", "scheme 'localhost' not supported"),
        ("http://user:s3cret@h.example", "credentials"),
        ("http://h.example/?a=1", "query"),
        ("http://h.example:99999", "not a valid URL"),
        ("http://bad_host!.example", "not a valid endpoint URL"),
        ("https://", "not a valid endpoint URL"),
    ],
)
def test_bad_override_is_config_error(env: dict[str, str], url: str, message: str) -> None:
    env["AWS_ENDPOINT_URL_IVSCHAT"] = url
    with pytest.raises(ConfigError, match=message) as err:
        build(env)
    assert err.value.key == "AWS_ENDPOINT_URL_IVSCHAT"
    assert "s3cret" not in str(err.value)


# --- agreement with botocore itself ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://Ivs.Example.com:443/p", "http://h.example:80", "http://h.example:8080/a/b",
     "https://[::1]:8443", "http://[fe80::1]", "http://127.0.0.1:4566/"],
)
def test_host_matches_botocore_signed_host(url: str) -> None:
    _, host, _ = parse_endpoint_url(url, "k")
    assert host == botocore.auth._host_from_url(url)


class _Sent(Exception):
    pass


def botocore_request(service: str, region: str, env: dict[str, str],
                     monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(url, Authorization) of what a real botocore client sends under `env`."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in (env | {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
                               "AWS_SECRET_ACCESS_KEY": "x"}).items():
        monkeypatch.setenv(name, value)
    client = botocore.session.Session().create_client(service, region_name=region)
    seen: list[tuple[str, str]] = []

    def capture(request, **_: object) -> None:  # type: ignore[no-untyped-def]
        seen.append((request.url, request.headers["Authorization"].decode()))
        raise _Sent

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Sent):
        getattr(client, OPERATION[service])()
    return seen[0]


@pytest.mark.parametrize(
    "extra",
    [{}, {"AWS_USE_FIPS_ENDPOINT": "true"}, {"AWS_USE_DUALSTACK_ENDPOINT": "true"},
     {"AWS_USE_FIPS_ENDPOINT": "true", "AWS_USE_DUALSTACK_ENDPOINT": "true"},
     {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566/base"},
     {"AWS_ENDPOINT_URL_IVS_REALTIME": "http://rt.example:81", "AWS_ENDPOINT_URL": "http://g.ex",
      "AWS_USE_FIPS_ENDPOINT": "true"}],
)
@pytest.mark.parametrize("service", SERVICES)
def test_same_as_a_botocore_client(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, service: str, extra: dict[str, str]
) -> None:
    env |= extra
    endpoint = build(env, "eu-west-1")[service]
    url, authorization = botocore_request(service, "eu-west-1", env, monkeypatch)
    assert url == endpoint.url_for(OP_PATH[service])
    assert botocore.auth._host_from_url(url) == endpoint.host
    scope = f"/eu-west-1/{endpoint.signing_name}/aws4_request"
    assert scope in authorization and endpoint.signing_name == SIGNING_NAME[service]


def test_url_for_adds_missing_slash() -> None:
    endpoint = Endpoint("http://h/b", "h", "/b", "http", "ivs", "us-west-2")
    assert endpoint.url_for("X?y=1") == "http://h/b/X?y=1"


def test_unknown_profile_is_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="missing-profile"):
        build(env, profile="missing-profile")
