"""Every region from one proxy: unsigned boto3 clients choose the region with a path prefix.

moto keeps each region's resources apart and verifies the proxy's signature (IAM auth on),
so a channel created in the wrong region, or a request signed for the wrong one, shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import proxy_env, unsigned_client
from tests.support.moto import MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess

REGIONS = ("us-west-2", "eu-west-1")


@pytest.fixture(scope="module")
def two_region_proxy(moto: MotoServer, role_credentials: SessionCredentials,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    config = tmp_path_factory.mktemp("multi-region") / "config.yaml"
    config.write_text(json.dumps({"regions": {"ivs": list(REGIONS)}}))  # JSON is YAML
    process = ProxyProcess(proxy_env(moto, role_credentials), config=config)
    process.start()
    yield process
    process.stop()


def in_moto(moto: MotoServer, region: str):  # type: ignore[no-untyped-def]
    """moto itself, as the admin: what really exists in `region`, not what the proxy says."""
    assert moto.admin is not None
    key, secret = moto.admin
    return boto3.client("ivs", endpoint_url=moto.url, region_name=region,
                        aws_access_key_id=key, aws_secret_access_key=secret)


def error_of(refused: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    response = refused.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def test_one_proxy_creates_and_lists_channels_per_region(two_region_proxy: ProxyProcess, moto: MotoServer) -> None:
    arns = {}
    for region in REGIONS:
        ivs = unsigned_client("ivs", f"{two_region_proxy.url}/{region}")
        arns[region] = ivs.create_channel(name=f"multi-{region}")["channel"]["arn"]
        assert arns[region].startswith(f"arn:aws:ivs:{region}:")
    for region in REGIONS:
        listed = unsigned_client("ivs", f"{two_region_proxy.url}/{region}").list_channels()["channels"]
        assert [c["arn"] for c in listed if c["name"].startswith("multi-")] == [arns[region]]
        assert [c["arn"] for c in in_moto(moto, region).list_channels()["channels"]
                if c["name"].startswith("multi-")] == [arns[region]]
    # the ARN alone still routes, from a client without a prefix (today's URLs)
    assert unsigned_client("ivs", two_region_proxy.url).get_channel(arn=arns["eu-west-1"])["channel"]["name"] == (
        "multi-eu-west-1"
    )
    # the /ivs mount takes the prefix too
    assert unsigned_client("ivs", f"{two_region_proxy.url}/eu-west-1/ivs").get_channel(arn=arns["eu-west-1"])
    lines = [json.loads(line) for line in two_region_proxy.output().splitlines() if line.startswith("{")]
    created = [line["region"] for line in lines if line.get("operation") == "CreateChannel"]
    assert created[-2:] == list(REGIONS)


def test_each_conflict_is_refused_with_nothing_forwarded(two_region_proxy: ProxyProcess, moto: MotoServer) -> None:
    west = unsigned_client("ivs", f"{two_region_proxy.url}/us-west-2")
    arn = west.create_channel(name="conflict-kept")["channel"]["arn"]
    europe = unsigned_client("ivs", f"{two_region_proxy.url}/eu-west-1")
    with pytest.raises(ClientError) as mixed:  # prefix says eu-west-1, the ARN says us-west-2
        europe.delete_channel(arn=arn)
    status, message = error_of(mixed)
    assert status == 400 and "region path prefix" in message and "eu-west-1" in message and "us-west-2" in message
    assert in_moto(moto, "us-west-2").get_channel(arn=arn)["channel"]["name"] == "conflict-kept"

    tokyo = unsigned_client("ivs", f"{two_region_proxy.url}/ap-northeast-1")  # ivs is there, the config says no
    with pytest.raises(ClientError) as outside:
        tokyo.create_channel(name="conflict-outside")
    status, message = error_of(outside)
    assert status == 400 and "ap-northeast-1" in message and "allowed: eu-west-1, us-west-2" in message
    assert not [c for c in in_moto(moto, "ap-northeast-1").list_channels()["channels"]
                if c["name"] == "conflict-outside"]
