"""SDK-native callers: ordinary boto3 clients and the AWS CLI with internal keys, through
the gateway, to upstreams that verify SigV4 (the recording upstream with botocore, and
moto with IAM authentication)."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from botocore.exceptions import ClientError

from proxy.aws.credentials import utc_now
from proxy.aws.signing import FrozenCredentials
from tests.support.gateway import (
    CHAT,
    REGION,
    VIDEO,
    captured_logs,
    channel,
    gateway_for,
    gateway_settings,
    sdk_client,
    sign,
)
from tests.support.inprocess import TEST_CREDENTIALS, StaticSource
from tests.support.moto import MotoServer, SessionCredentials

OWN = channel("VideoMain001")


async def serve(aiohttp_server, upstream_server: TestServer, settings: dict[str, Any] | None = None,  # type: ignore[no-untyped-def]
                **kwargs: Any) -> str:
    proxy = gateway_for(str(upstream_server.make_url("")).rstrip("/"), settings, **kwargs)
    server = await aiohttp_server(proxy.data_app)
    return str(server.make_url("")).rstrip("/")


def error_of(raised: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    response = raised.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


async def test_allowed_sdk_calls_are_verified_then_signed_afresh(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    url = await serve(aiohttp_server, upstream_server)
    video = sdk_client("ivs", url, VIDEO)
    await asyncio.to_thread(video.put_metadata, channelArn=OWN, metadata="slide=3")
    chat = sdk_client("ivs", url, CHAT)
    await asyncio.to_thread(chat.batch_get_channel, arns=[channel("ChatLobby001"), channel("ChatLobby002")])
    rooms = sdk_client("ivschat", url + "/ivschat", CHAT)
    await asyncio.to_thread(rooms.create_chat_token, roomIdentifier=f"arn:aws:ivschat:{REGION}:123456789012:room/Lobby",
                            userId="u1")
    assert [r.raw_path for r in upstream.received] == ["/PutMetadata", "/BatchGetChannel", "/CreateChatToken"]
    for received in upstream.received:
        # the proxy's own signature, with its own key, verified by botocore
        assert received.signature_valid and TEST_CREDENTIALS.access_key in received.headers["authorization"]
        assert received.headers["x-amz-security-token"] == TEST_CREDENTIALS.token
        assert not any(t.access_key_id in str(received.headers) for t in (VIDEO, CHAT))
        assert "x-amz-content-sha256" not in received.headers
    assert [r.service for r in upstream.received] == ["ivs", "ivs", "ivschat"]
    assert json.loads(upstream.received[0].body) == {"channelArn": OWN, "metadata": "slide=3"}


async def test_the_credential_scope_chooses_the_region(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    settings = gateway_settings(regions={"ivs": ["us-west-2", "eu-west-1"]})
    url = await serve(aiohttp_server, upstream_server, settings)
    for region in ("eu-west-1", "us-west-2"):
        await asyncio.to_thread(sdk_client("ivs", url, CHAT, region=region).list_channels)
    assert [r.region for r in upstream.received] == ["eu-west-1", "us-west-2"]
    eu = sdk_client("ivs", url, CHAT, region="eu-west-1")
    with pytest.raises(ClientError) as mixed:  # signed for eu-west-1, names a us-west-2 channel
        await asyncio.to_thread(eu.get_channel, arn=channel("ChatLobby001"))
    status, _, message = error_of(mixed)
    assert status == 400 and "credential scope" in message and "eu-west-1" in message
    with pytest.raises(ClientError) as not_served:
        await asyncio.to_thread(sdk_client("ivs", url, CHAT, region="ap-south-1").list_channels)
    assert error_of(not_served)[0] == 400 and "ap-south-1" in error_of(not_served)[2]
    assert len(upstream.received) == 2


async def test_a_region_prefix_is_verified_with_the_signature_and_must_match_its_scope(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    settings = gateway_settings(regions={"ivs": ["us-west-2", "eu-west-1"]})
    url = await serve(aiohttp_server, upstream_server, settings)
    # the SDK signs the path it sends, prefix included: the proxy verifies that path
    await asyncio.to_thread(sdk_client("ivs", f"{url}/eu-west-1", CHAT, region="eu-west-1").list_channels)
    assert [(r.region, r.raw_path) for r in upstream.received] == [("eu-west-1", "/ListChannels")]
    with pytest.raises(ClientError) as mixed:
        await asyncio.to_thread(sdk_client("ivs", f"{url}/eu-west-1", CHAT, region="us-west-2").list_channels)
    status, _, message = error_of(mixed)
    assert status == 400 and "region path prefix" in message and "credential scope" in message
    assert "eu-west-1" in message and "us-west-2" in message
    assert len(upstream.received) == 1


async def test_a_policy_restricts_the_regions_of_calls_that_name_no_arn(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    eu_only = {"Version": "2012-10-17", "Statement": [
        {"Sid": "Channels", "Effect": "Allow", "Action": ["ivs:CreateChannel", "ivs:ListChannels"], "Resource": "*"},
        {"Sid": "EuropeOnly", "Effect": "Deny", "Action": "ivs:*", "Resource": "*",
         "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["eu-west-1"]}}},
    ]}
    settings = gateway_settings(regions={"ivs": ["us-west-2", "eu-west-1"]},
                                policy={"callers": {CHAT.name: eu_only, VIDEO.name: eu_only}})
    url = await serve(aiohttp_server, upstream_server, settings)
    # the region chosen by the credential scope and by a region prefix alike
    await asyncio.to_thread(sdk_client("ivs", url, CHAT, region="eu-west-1").create_channel, name="eu")
    await asyncio.to_thread(sdk_client("ivs", f"{url}/eu-west-1", CHAT, region="eu-west-1").list_channels)
    for client in (sdk_client("ivs", url, CHAT, region="us-west-2"),
                   sdk_client("ivs", f"{url}/us-west-2", CHAT, region="us-west-2")):
        with pytest.raises(ClientError) as denied:
            await asyncio.to_thread(client.create_channel, name="us")
        status, code, message = error_of(denied)
        assert (status, code) == (403, "AccessDeniedException")
        assert "ivs:CreateChannel on * in us-west-2" in message
    assert [(r.raw_path, r.region) for r in upstream.received] == [("/CreateChannel", "eu-west-1"),
                                                                   ("/ListChannels", "eu-west-1")]


@pytest.mark.parametrize(
    ("how", "code"),
    [("wrong secret", "InvalidSignatureException"), ("unknown key", "UnrecognizedClientException"),
     ("stale date", "InvalidSignatureException")],
)
async def test_sdk_credentials_that_do_not_check_out_are_401(aiohttp_server, recording, how: str, code: str) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    skewed = (lambda: utc_now() + datetime.timedelta(minutes=10)) if how == "stale date" else utc_now
    url = await serve(aiohttp_server, upstream_server, clock=skewed)
    client = sdk_client("ivs", url, VIDEO, secret="wrong-secret-0123456789" if how == "wrong secret" else None,
                        access_key_id="GWNOBODY000000000001" if how == "unknown key" else None)
    with pytest.raises(ClientError) as refused:
        await asyncio.to_thread(client.put_metadata, channelArn=OWN, metadata="m")
    status, error_code, message = error_of(refused)
    assert (status, error_code) == (401, code)
    assert message.startswith("ivs-proxy refused the request: ")
    assert refused.value.response["ResponseMetadata"]["HTTPHeaders"]["www-authenticate"].startswith("Bearer")
    assert upstream.received == []


async def test_a_tampered_body_and_a_replay_are_401(aiohttp_client, aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    proxy = gateway_for(str(upstream_server.make_url("")).rstrip("/"))
    client: TestClient = await aiohttp_client(proxy.data_app)
    url = str(client.make_url("/PutMetadata"))
    body = json.dumps({"channelArn": OWN, "metadata": "original"}).encode()
    headers = sign("POST", url, body, VIDEO)
    tampered = await client.post("/PutMetadata", data=body.replace(b"original", b"tampered"), headers=headers)
    assert tampered.status == 401 and tampered.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    assert upstream.received == []
    first = await client.post("/PutMetadata", data=body, headers=headers)
    assert first.status == 200, await first.text()
    replayed = await client.post("/PutMetadata", data=body, headers=headers)
    assert replayed.status == 401 and "already used" in (await replayed.json())["message"]
    assert len(upstream.received) == 1


async def test_policy_denials_through_the_sdk_are_403(aiohttp_server, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    url = await serve(aiohttp_server, upstream_server)
    video, chat = sdk_client("ivs", url, VIDEO), sdk_client("ivs", url, CHAT)
    calls = [
        (video.get_channel, {"arn": OWN}),  # video may only PutMetadata
        (video.put_metadata, {"channelArn": channel("ChatLobby001"), "metadata": "m"}),  # not its channel
        (chat.put_metadata, {"channelArn": OWN, "metadata": "m"}),
        (chat.batch_get_channel, {"arns": [channel("ChatLobby001"), OWN]}),  # one denied ARN refuses the batch
    ]
    for call, kwargs in calls:
        with pytest.raises(ClientError) as denied:
            await asyncio.to_thread(call, **kwargs)
        status, code, message = error_of(denied)
        assert (status, code) == (403, "AccessDeniedException"), message
    assert "'chat-team'" in message and "ivs:BatchGetChannel" in message and OWN in message
    assert upstream.received == []


async def test_aws_cli_with_internal_keys(aiohttp_server, recording, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    url = await serve(aiohttp_server, upstream_server)
    aws = str(Path(sys.executable).with_name("aws"))

    async def run(team: Any, *args: str, secret: str | None = None) -> tuple[int, str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=team.access_key_id, AWS_SECRET_ACCESS_KEY=secret or team.secret,
                   AWS_REGION=REGION, AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=os.devnull,
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_MAX_ATTEMPTS="1")
        process = await asyncio.create_subprocess_exec(
            aws, *args, "--endpoint-url", url, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    code, _, err = await run(VIDEO, "ivs", "put-metadata", "--channel-arn", OWN, "--metadata", "from-cli")
    assert code == 0, err
    code, _, err = await run(CHAT, "ivs", "list-channels")
    assert code == 0, err
    code, _, err = await run(CHAT, "ivs", "list-channels", secret="wrong-secret-0123456789")
    assert code != 0 and "InvalidSignatureException" in err and "ivs-proxy refused the request" in err
    assert [r.raw_path for r in upstream.received] == ["/PutMetadata", "/ListChannels"]
    assert all(r.signature_valid for r in upstream.received)


async def test_through_moto_with_iam_authentication(aiohttp_server, moto: MotoServer,  # type: ignore[no-untyped-def]
                                                    role_credentials: SessionCredentials) -> None:
    settings = gateway_settings(policy={"callers": {"chat-team": {"Statement": [
        {"Effect": "Allow", "Action": ["ivs:CreateChannel", "ivs:GetChannel", "ivs:DeleteChannel"], "Resource": "*"},
    ]}}})
    source = StaticSource(FrozenCredentials(role_credentials.access_key, role_credentials.secret_key,
                                            role_credentials.token))
    proxy = gateway_for(moto.url, settings, source=source)
    server = await aiohttp_server(proxy.data_app)
    chat = sdk_client("ivs", str(server.make_url("")).rstrip("/"), CHAT)
    with captured_logs() as logs:
        arn = (await asyncio.to_thread(chat.create_channel, name="through-the-gateway"))["channel"]["arn"]
        assert (await asyncio.to_thread(chat.get_channel, arn=arn))["channel"]["name"] == "through-the-gateway"
        await asyncio.to_thread(chat.delete_channel, arn=arn)
    assert [(a["caller"], a["action"], a["decision"]) for a in logs.audit()] == [
        ("chat-team", "ivs:CreateChannel", "allow"), ("chat-team", "ivs:GetChannel", "allow"),
        ("chat-team", "ivs:DeleteChannel", "allow")]
    assert [line["caller"] for line in logs.access()] == ["chat-team"] * 3


async def test_sdk_native_callers_work_in_the_region_they_signed_for(aiohttp_server, moto: MotoServer,  # type: ignore[no-untyped-def]
                                                                    role_credentials: SessionCredentials) -> None:
    """A boto3 client built for eu-west-1 creates and lists in eu-west-1, one for us-west-2
    in us-west-2, through one gateway; moto (IAM auth on) keeps the regions apart."""
    regions = ("us-west-2", "eu-west-1")
    settings = gateway_settings(regions={"ivs": list(regions)}, policy={"callers": {"chat-team": {"Statement": [
        {"Effect": "Allow", "Action": ["ivs:CreateChannel", "ivs:ListChannels", "ivs:DeleteChannel"], "Resource": "*"},
    ]}}})
    source = StaticSource(FrozenCredentials(role_credentials.access_key, role_credentials.secret_key,
                                            role_credentials.token))
    server = await aiohttp_server(gateway_for(moto.url, settings, source=source).data_app)
    url = str(server.make_url("")).rstrip("/")
    created = {}
    for region in regions:
        client = sdk_client("ivs", url, CHAT, region=region)
        created[region] = (await asyncio.to_thread(client.create_channel, name=f"native-{region}"))["channel"]["arn"]
        assert created[region].split(":")[3] == region
    try:
        for region in regions:
            listed = await asyncio.to_thread(sdk_client("ivs", url, CHAT, region=region).list_channels)
            names = {c["name"] for c in listed["channels"] if c["name"].startswith("native-")}
            assert names == {f"native-{region}"}
        # signed for eu-west-1, naming the us-west-2 channel: refused, and the channel is still there
        with pytest.raises(ClientError) as conflict:
            await asyncio.to_thread(sdk_client("ivs", url, CHAT, region="eu-west-1").delete_channel,
                                    arn=created["us-west-2"])
        status, _, message = error_of(conflict)
        assert status == 400 and "credential scope" in message and "us-west-2" in message
        still = await asyncio.to_thread(sdk_client("ivs", url, CHAT, region="us-west-2").list_channels,
                                        maxResults=100)  # not the same signed request as above: no replay
        assert created["us-west-2"] in {c["arn"] for c in still["channels"]}
    finally:
        for region, arn in created.items():
            await asyncio.to_thread(sdk_client("ivs", url, CHAT, region=region).delete_channel, arn=arn)
