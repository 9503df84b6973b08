"""proxy.aws.regions: default region precedence, botocore's service regions, RegionChooser."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pytest

from proxy.aws.regions import (
    RegionChooser,
    default_region,
    is_plausible_region,
    offered_regions,
    service_regions,
)
from proxy.errors import ConfigError, RegionRejected

SERVICES = ("ivs", "ivs-realtime", "ivschat")

CONFIG = """\
[default]
region = ap-south-1

[profile x]
region = eu-central-1

[profile bad]
region = nowhere
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment whose shared files are ours, never the machine's ~/.aws."""
    config = tmp_path / "config"
    config.write_text(CONFIG)
    return {
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
    }


# --- default_region ---------------------------------------------------------------


def test_aws_region_beats_aws_default_region_and_profile(env: dict[str, str]) -> None:
    env |= {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}
    assert default_region(None, env, "x") == "us-west-2"


def test_aws_default_region_beats_profile(env: dict[str, str]) -> None:
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    assert default_region(None, env, "x") == "us-east-1"


def test_named_profile_region_is_last_resort(env: dict[str, str]) -> None:
    assert default_region(None, env, "x") == "eu-central-1"


def test_profile_from_aws_profile_env(env: dict[str, str]) -> None:
    env["AWS_PROFILE"] = "x"
    assert default_region(None, env, None) == "eu-central-1"


def test_default_profile_when_none_named(env: dict[str, str]) -> None:
    assert default_region(None, env, None) == "ap-south-1"


def test_explicit_wins_over_everything(env: dict[str, str]) -> None:
    env |= {"AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "us-east-1"}
    assert default_region("eu-west-1", env, "x") == "eu-west-1"


def test_no_region_anywhere_is_none(tmp_path: Path) -> None:
    env = {"AWS_CONFIG_FILE": str(tmp_path / "missing"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "missing-too")}
    assert default_region(None, env, None) is None


def test_empty_values_count_as_unset(env: dict[str, str]) -> None:
    env |= {"AWS_REGION": "", "AWS_DEFAULT_REGION": "us-east-1"}
    assert default_region("", env, "x") == "us-east-1"


def test_reads_the_given_env_not_os_environ(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    monkeypatch.setenv("AWS_PROFILE", "x")
    assert default_region(None, env, None) == "ap-south-1"


@pytest.mark.parametrize(
    ("explicit", "extra", "profile", "key"),
    [
        ("us_west_2", {}, None, "region"),
        (None, {"AWS_REGION": "US-WEST-2"}, None, "AWS_REGION"),
        (None, {"AWS_DEFAULT_REGION": "us-west2"}, None, "AWS_DEFAULT_REGION"),
        (None, {}, "bad", "profile bad: region"),
    ],
)
def test_malformed_region_is_config_error_naming_its_source(
    env: dict[str, str], explicit: str | None, extra: dict[str, str],
    profile: str | None, key: str,
) -> None:
    with pytest.raises(ConfigError) as err:
        default_region(explicit, env | extra, profile)
    assert err.value.key == key


def test_unknown_profile_is_config_error(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="nope"):
        default_region(None, env, "nope")


# --- region syntax -----------------------------------------------------------------


def _all_partition_regions() -> set[str]:
    loader = botocore.session.get_session().get_component("data_loader")
    regions: set[str] = set()
    for partition in loader.load_data("partitions")["partitions"]:
        regions |= set(partition["regions"])
    for partition in loader.load_data("endpoints")["partitions"]:
        regions |= set(partition["regions"])
    # "aws-global" & co. are endpoint aliases, not regions a request can name.
    return {r for r in regions if not r.endswith("-global")}


def test_every_botocore_region_is_plausible() -> None:
    regions = _all_partition_regions()
    assert {"us-west-2", "cn-north-1", "us-gov-west-1", "us-isob-east-1",
            "eusc-de-east-1"} <= regions
    assert [r for r in sorted(regions) if not is_plausible_region(r)] == []


@pytest.mark.parametrize(
    "name", ["", "us-west2", "us_west_2", "US-WEST-2", "uswest2", "us-west-2a",
             "aws-global", "us-west-2 ", "-us-west-2", "u-west-2"],
)
def test_implausible_region_names(name: str) -> None:
    assert not is_plausible_region(name)


# --- service_regions -----------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
def test_service_regions_are_botocore_regions(service: str) -> None:
    session = botocore.session.get_session()
    expected = {
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions(service, partition)
    }
    regions = service_regions(service)
    assert isinstance(regions, frozenset)
    assert regions == expected
    assert {"us-west-2", "us-east-1", "eu-west-1"} <= regions
    assert all(is_plausible_region(r) for r in regions)


def test_service_regions_unknown_service() -> None:
    with pytest.raises(ConfigError):
        service_regions("not-a-service")


def test_offered_regions_answers_for_several_services_at_once() -> None:
    assert offered_regions(SERVICES) == {s: service_regions(s) for s in SERVICES}
    with pytest.raises(ConfigError, match="not-a-service"):
        offered_regions(("ivs", "not-a-service"))


# --- RegionChooser -------------------------------------------------------------------

ALLOWED = {
    "ivs": frozenset({"us-west-2", "eu-west-1"}),
    "ivschat": frozenset({"us-west-2"}),
}


def test_default_used_without_arns() -> None:
    assert RegionChooser("us-west-2", ALLOWED).choose("ivs", []) == "us-west-2"


def test_arn_region_wins_over_default() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    assert chooser.choose("ivs", [("arn", "eu-west-1"), ("channelArn", "eu-west-1")]) == (
        "eu-west-1"
    )


def test_empty_arn_regions_are_ignored() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    assert chooser.choose("ivs", [("roleArn", ""), ("arn", "eu-west-1")]) == "eu-west-1"
    assert chooser.choose("ivs", [("roleArn", "")]) == "us-west-2"


def test_conflicting_arns_refused_naming_both() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    with pytest.raises(RegionRejected) as err:
        chooser.choose("ivs", [("arns[0]", "eu-west-1"), ("roleArn", ""),
                               ("arns[1]", "us-west-2")])
    message = err.value.message
    for part in ("arns[0]", "eu-west-1", "arns[1]", "us-west-2"):
        assert part in message
    assert err.value.status == 400


def test_no_region_refused() -> None:
    with pytest.raises(RegionRejected) as err:
        RegionChooser(None, ALLOWED).choose("ivs", [("roleArn", "")])
    assert err.value.message == "no region: set AWS_REGION, --region or region: in the config"


def test_arn_region_alone_is_enough_without_default() -> None:
    assert RegionChooser(None, ALLOWED).choose("ivs", [("arn", "eu-west-1")]) == "eu-west-1"


def test_disallowed_region_refused_naming_service_region_and_list() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    with pytest.raises(RegionRejected) as err:
        chooser.choose("ivschat", [("roomIdentifier", "eu-west-1")])
    message = err.value.message
    assert "ivschat" in message and "'eu-west-1'" in message
    assert message.endswith("allowed: us-west-2")


def test_default_region_not_allowed_for_service_refused() -> None:
    with pytest.raises(RegionRejected, match="allowed: eu-west-1, us-west-2"):
        RegionChooser("ap-south-1", ALLOWED).choose("ivs", [])


def test_unknown_service_refused() -> None:
    with pytest.raises(RegionRejected, match="allowed: none"):
        RegionChooser("us-west-2", ALLOWED).choose("ivs-realtime", [])


def test_requested_region_wins_over_default() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    assert chooser.choose("ivs", [("roleArn", "")], [("the region path prefix", "eu-west-1")]) == "eu-west-1"


def test_arn_region_agreeing_with_the_requested_one_is_used() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    assert chooser.choose("ivs", [("arn", "eu-west-1")], [("the credential scope", "eu-west-1")]) == "eu-west-1"


def test_requested_region_differing_from_the_arns_is_refused_naming_both() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    with pytest.raises(RegionRejected) as err:
        chooser.choose("ivs", [("arn", "us-west-2")], [("the region path prefix", "eu-west-1")])
    assert err.value.message == "the region path prefix chooses region eu-west-1, but arn is in us-west-2"


def test_two_requested_regions_that_differ_are_refused_naming_both() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    with pytest.raises(RegionRejected) as err:
        chooser.choose("ivs", [], [("the region path prefix", "eu-west-1"), ("the credential scope", "us-west-2")])
    assert err.value.message == (
        "the region path prefix chooses region eu-west-1, but the credential scope chooses us-west-2"
    )


def test_requested_region_outside_the_allowed_list_is_refused_listing_them() -> None:
    chooser = RegionChooser("us-west-2", ALLOWED)
    with pytest.raises(RegionRejected) as err:
        chooser.choose("ivs", [], [("the region path prefix", "ap-south-1")])
    assert err.value.message == "ivs is not allowed in region 'ap-south-1'; allowed: eu-west-1, us-west-2"
