"""Every region from one proxy: unsigned boto3 clients choose the region with a path prefix.

moto keeps each region's resources apart and verifies the proxy's signature (IAM auth on),
so a channel created in the wrong region, or a request signed for the wrong one, shows.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import proxy_env, unsigned_client
from tests.support.inprocess import proxy_for
from tests.support.moto import MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess

REGIONS = ("us-west-2", "eu-west-1")
REGIONS_DOC = Path(__file__).resolve().parents[2] / "docs" / "regions.md"
DOC_URL = "http://127.0.0.1:8080"


def multi_region_section() -> str:
    """docs/regions.md, "Every region from one proxy"."""
    return REGIONS_DOC.read_text()


def fenced(section: str, language: str = "") -> list[str]:
    return [block.split("\n", 1)[1] for block in section.split("```")[1::2] if block.split("\n", 1)[0] == language]


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
    with urllib.request.urlopen(f"{two_region_proxy.admin_url}/metrics", timeout=10) as scraped:
        families = {f.name: f for f in text_string_to_metric_families(scraped.read().decode())}
    for name in ("ivs_proxy_requests", "ivs_proxy_upstream_duration_seconds"):
        regions = {s.labels["region"] for s in families[name].samples if s.labels.get("operation") == "CreateChannel"}
        assert regions == set(REGIONS), name
    # as docs/regions.md says
    assert "`ivs_proxy_requests_total` and `ivs_proxy_upstream_duration_seconds`" in " ".join(
        multi_region_section().split())


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


JS_TESTS = Path(__file__).resolve().parents[1] / "js"


def node_with_the_sdk() -> str:
    """node, once `make js-deps` installed tests/js's locked packages; else skip, saying why."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript SDK test needs Node.js >= 18")
    if not (JS_TESTS / "node_modules" / "@aws-sdk" / "client-ivs").is_dir():
        pytest.skip("tests/js has no node_modules: run `make js-deps` (make test does)")
    return node


def test_the_javascript_sdk_creates_and_lists_per_region(two_region_proxy: ProxyProcess, moto: MotoServer) -> None:
    node = node_with_the_sdk()
    done = subprocess.run([node, str(JS_TESTS / "multi_region.mjs"), two_region_proxy.url, "js-sdk", *REGIONS],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for region in REGIONS:
        assert result["created"][region].startswith(f"arn:aws:ivs:{region}:")
        assert result["listed"][region] == [f"js-sdk-{region}"]
    # DeleteChannel of the us-west-2 channel through /eu-west-1: refused by the proxy, and the
    # channel survived until the script deleted it in its own region (moto has none left)
    conflict = result["conflict"]
    assert conflict is not None and conflict["status"] == 400
    assert "region path prefix" in conflict["message"] and "us-west-2" in conflict["message"]
    for region in REGIONS:
        assert not [c for c in in_moto(moto, region).list_channels()["channels"] if c["name"].startswith("js-sdk-")]


def test_the_readmes_javascript_snippet_reaches_the_region_it_names(two_region_proxy: ProxyProcess) -> None:
    node = node_with_the_sdk()
    europe = unsigned_client("ivs", f"{two_region_proxy.url}/eu-west-1")
    arn = europe.create_channel(name="readme-js-eu")["channel"]["arn"]
    [snippet] = fenced(multi_region_section(), "js")
    # from stdin, an ES module resolves its imports from the working directory: tests/js
    done = subprocess.run([node, "--input-type=module", "-"], input=snippet.replace(DOC_URL, two_region_proxy.url),
                          cwd=JS_TESTS, capture_output=True, text=True, timeout=60, check=False)
    europe.delete_channel(arn=arn)
    assert done.returncode == 0, done.stderr[-2000:]
    assert arn in {c["arn"] for c in json.loads(done.stdout)["channels"]}


def test_the_readmes_cli_and_curl_commands_reach_the_region_they_name(two_region_proxy: ProxyProcess) -> None:
    europe = unsigned_client("ivs", f"{two_region_proxy.url}/eu-west-1")
    arn = europe.create_channel(name="readme-eu")["channel"]["arn"]
    unsigned_client("ivs", f"{two_region_proxy.url}/us-west-2").create_channel(name="readme-west")
    commands = [line for block in fenced(multi_region_section()) for line in block.splitlines() if line.strip()]
    assert [c.split()[0] for c in commands] == ["aws", "curl"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_REGION="us-west-2", AWS_DEFAULT_REGION="us-west-2", AWS_CONFIG_FILE=os.devnull)
    for command in commands:
        argv = shlex.split(command.replace(DOC_URL, two_region_proxy.url))
        if argv[0] == "aws":
            argv[0] = str(Path(sys.executable).with_name("aws"))
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        names = {c["name"] for c in json.loads(result.stdout)["channels"]}
        assert "readme-eu" in names and "readme-west" not in names, command
    europe.delete_channel(arn=arn)


async def test_the_readmes_boto3_client_reaches_the_region_it_names(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    proxy = proxy_for(str(upstream_server.make_url("")).rstrip("/"))
    url = str((await aiohttp_server(proxy.data_app)).make_url("")).rstrip("/")
    [snippet] = fenced(multi_region_section(), "python")
    scope: dict[str, object] = {"boto3": boto3, "unsigned": Config(signature_version=UNSIGNED)}
    exec(snippet.replace(DOC_URL, url), scope)  # noqa: S102 (the doc's own code)
    await asyncio.to_thread(scope["eu_stages"].list_stages)  # type: ignore[attr-defined]
    assert [(r.service, r.region, r.raw_path) for r in upstream.received] == [("ivs", "eu-west-1", "/ListStages")]
