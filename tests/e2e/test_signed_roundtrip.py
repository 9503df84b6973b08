"""Unsigned SDK calls go through the proxy and are accepted by a SigV4-verifying upstream."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import proxy_env, unsigned_client
from tests.support.moto import MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess


def test_channel_lifecycle_through_the_proxy(proxy: ProxyProcess) -> None:
    ivs = unsigned_client("ivs", proxy.url)
    created = ivs.create_channel(name="lifecycle", latencyMode="LOW", type="STANDARD", tags={"team": "video"})
    arn = created["channel"]["arn"]
    assert arn.startswith("arn:aws:ivs:us-west-2:")

    assert ivs.get_channel(arn=arn)["channel"]["name"] == "lifecycle"
    assert arn in [c["arn"] for c in ivs.list_channels()["channels"]]
    updated = ivs.update_channel(arn=arn, name="renamed", latencyMode="NORMAL")
    assert updated["channel"]["name"] == "renamed"

    ivs.delete_channel(arn=arn)
    with pytest.raises(ClientError) as missing:
        ivs.get_channel(arn=arn)
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_ivs_prefix_mount_works_like_the_root(proxy: ProxyProcess) -> None:
    ivs = unsigned_client("ivs", proxy.url + "/ivs")
    arn = ivs.create_channel(name="prefixed")["channel"]["arn"]
    assert ivs.get_channel(arn=arn)["channel"]["arn"] == arn


def test_action_outside_the_role_policy_is_the_upstreams_403(proxy: ProxyProcess) -> None:
    ivs = unsigned_client("ivs", proxy.url)
    with pytest.raises(ClientError) as denied:
        ivs.batch_get_channel(arns=["arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"])
    response = denied.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "x-ivs-proxy-error" not in response["ResponseMetadata"]["HTTPHeaders"]
    assert "not authorized to perform: ivs:BatchGetChannel" in str(denied.value)


def test_wrong_secret_is_caught_by_the_upstream(moto: MotoServer, role_credentials: SessionCredentials) -> None:
    wrong = dataclasses.replace(role_credentials, secret_key="wrong" + role_credentials.secret_key[5:])
    process = ProxyProcess(proxy_env(moto, wrong))
    process.start()
    try:
        with pytest.raises(ClientError) as rejected:
            unsigned_client("ivs", process.url).list_channels()
    finally:
        process.stop()
    assert rejected.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "SignatureDoesNotMatch" in str(rejected.value)


def test_aws_cli_without_signing(proxy: ProxyProcess) -> None:
    aws = Path(sys.executable).with_name("aws")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_REGION="us-west-2", AWS_DEFAULT_REGION="us-west-2", AWS_CONFIG_FILE=os.devnull)
    result = subprocess.run(
        [str(aws), "ivs", "list-channels", "--no-sign-request", "--endpoint-url", proxy.url],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"channels"' in result.stdout
