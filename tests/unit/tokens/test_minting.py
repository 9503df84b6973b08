"""Minting through the gateway's data port, in process: PEM keys, a signature-checking
upstream for GetStage and GetChannel, every token checked by PyJWT with the public key."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from proxy.errors import ConfigError
from proxy.gateway.own_access import own_operation
from tests.support.gateway import (
    CHAT,
    POLICY,
    VIDEO,
    captured_logs,
    channel,
    gateway_for,
    gateway_settings,
)
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for
from tests.support.tokens import (
    ACCOUNT,
    EVENTS_URL,
    PLAYBACK_KEY_ARN,
    PLAYBACK_URL,
    PUBLIC_KEY_ARN,
    REGION,
    WHIP_URL,
    IvsLookups,
    key_files,
    verified,
)

PLAYBACK = own_operation("MintPlaybackToken").path
PARTICIPANT = own_operation("MintParticipantToken").path
STAGE = f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/VideoStage01"
AS_VIDEO = {"Authorization": f"Bearer {VIDEO.token}"}
AS_CHAT = {"Authorization": f"Bearer {CHAT.token}"}


def mint_policy() -> dict[str, Any]:
    policy = copy.deepcopy(POLICY)
    policy["video-team"]["Statement"] += [
        {"Sid": "PlayOwnChannels", "Effect": "Allow", "Action": "ivs-proxy:MintPlaybackToken",
         "Resource": channel("Video*")},
        {"Sid": "JoinOwnStages", "Effect": "Allow", "Action": "ivs-proxy:MintParticipantToken",
         "Resource": f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/Video*"},
    ]
    policy["chat-team"]["Statement"].append(
        {"Sid": "WatchOnly", "Effect": "Allow", "Action": "ivs-proxy:MintParticipantToken",
         "Resource": f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/*"})
    return policy


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    return key_files(tmp_path, "playback"), key_files(tmp_path, "participant")


def tokens_section(keys, **extra: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    playback, participant = keys
    return {"keys": [
        {"arn": PLAYBACK_KEY_ARN, "private_key_file": str(playback.private), "public_key_file": str(playback.public)},
        {"arn": PUBLIC_KEY_ARN, "private_key_file": str(participant.private)},
    ], "callers": {"chat-team": {"max_lifetime_seconds": 900, "capabilities": ["SUBSCRIBE"]}}, **extra}


@pytest.fixture
async def lookups(aiohttp_server, keys):  # type: ignore[no-untyped-def]
    upstream = IvsLookups(TEST_CREDENTIALS.secret_key)
    upstream.public_keys[PUBLIC_KEY_ARN] = keys[1].public_pem  # checked at start-up (no public_key_file)
    server = await aiohttp_server(upstream.app())
    return upstream, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def gateway(aiohttp_client, lookups, keys):  # type: ignore[no-untyped-def]
    registry = CollectorRegistry()
    proxy = gateway_for(lookups[1], gateway_settings(policy={"callers": mint_policy()}, tokens=tokens_section(keys)),
                        registry=registry)
    return await aiohttp_client(proxy.data_app), proxy, registry


async def test_a_playback_token_has_exactly_the_documented_header_and_claims(gateway, keys, lookups) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = gateway
    body = {"channelArn": channel("VideoMain001"), "allowedOrigins": ["https://a.example", "https://*.b.example"],
            "strictOriginEnforcement": True, "singleUse": True, "viewerId": "viewer-42",
            "viewerSessionVersion": 7, "maximumResolution": "HD", "lifetimeSeconds": 120}
    before = int(time.time())
    answer = await client.post(PLAYBACK, json=body, headers=AS_VIDEO)
    after = int(time.time())
    assert answer.status == 200, await answer.text()
    minted = await answer.json()
    header, claims = verified(minted["token"], keys[0].public_pem)
    assert header == {"alg": "ES384", "typ": "JWT"}
    uuid = claims.pop("aws:single-use-uuid")
    assert len(uuid) == 36 and uuid.count("-") == 4
    assert before + 120 <= claims.pop("exp") <= after + 120
    assert claims == {"aws:channel-arn": channel("VideoMain001"),
                      "aws:access-control-allow-origin": "https://a.example,https://*.b.example",
                      "aws:strict-origin-enforcement": True, "aws:viewer-id": "viewer-42",
                      "aws:viewer-session-version": 7, "aws:maximum-resolution": "HD"}
    assert minted["playbackUrl"] == f"{PLAYBACK_URL}?token={minted['token']}"
    assert minted["expirationTime"].endswith("Z")
    assert lookups[0].calls("/GetChannel") == 1  # signed by the proxy, checked by the upstream


async def test_a_participant_token_carries_the_stage_endpoints_and_the_key_id(gateway, keys, lookups) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = gateway
    body = {"stageArn": STAGE, "userId": "alice", "capabilities": ["PUBLISH"], "attributes": {"seat": "3"},
            "durationMinutes": 30}
    first = await (await client.post(PARTICIPANT, json=body, headers=AS_VIDEO)).json()
    header, claims = verified(first["token"], keys[1].public_pem)
    assert header == {"alg": "ES384", "typ": "JWT", "kid": PUBLIC_KEY_ARN}
    assert claims.pop("exp") - claims.pop("iat") == 30 * 60
    assert claims == {"jti": first["participantId"], "resource": STAGE, "topic": "VideoStage01",
                      "events_url": EVENTS_URL, "whip_url": WHIP_URL, "user_id": "alice",
                      "attributes": {"seat": "3"}, "capabilities": {"allow_publish": True, "allow_subscribe": False},
                      "version": "1.0"}
    second = await (await client.post(PARTICIPANT, json={"stageArn": STAGE}, headers=AS_VIDEO)).json()
    _, claims = verified(second["token"], keys[1].public_pem)
    assert claims["capabilities"] == {"allow_publish": True, "allow_subscribe": True}  # IVS's default: both
    assert claims["exp"] - claims["iat"] == 60 * 60  # tokens.participant_duration_minutes
    assert second["participantId"] != first["participantId"]
    assert lookups[0].calls("/GetStage") == 1  # the second token used the cached answer


@pytest.mark.parametrize(("path", "body", "status", "words"), [
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "singleUse": True, "lifetimeSeconds": 601}, 400, "at most 600"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "viewerId": "v", "lifetimeSeconds": 601}, 400, "at most 600"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "strictOriginEnforcement": True,
                "allowedOrigins": [f"https://{i}.example" for i in range(6)]}, 400, "at most 5 origins"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "viewerId": "v" * 41}, 400, "1 to 40 characters"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "viewerSessionVersion": 1}, 400, "needs viewerId"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "maximumResolution": "4K"}, 400, "SD, HD, FULL_HD"),
    (PLAYBACK, {"channelArn": "arn:aws:ivs:us-west-2:123456789012:stage/VideoMain001"}, 400, "channel ARN"),
    (PLAYBACK, {"channelArn": channel("VideoMain001"), "extra": 1}, 400, "unknown member 'extra'"),
    (PLAYBACK, {"channelArn": channel("ChatMain001")}, 403, "is not allowed to perform ivs-proxy:MintPlaybackToken"),
    (PLAYBACK, {"channelArn": channel("VideoMain001", account="999999999999")}, 403, "not allowed"),
    (PARTICIPANT, {"stageArn": STAGE, "durationMinutes": 20161}, 400, "1 to 20160"),
    (PARTICIPANT, {"stageArn": STAGE, "attributes": {"k": "v" * 1024}}, 400, "at most 1024 bytes"),
    (PARTICIPANT, {"stageArn": STAGE, "capabilities": ["PUBLISH", "PUBLISH"]}, 400, "listed twice"),
    (PARTICIPANT, {"stageArn": STAGE, "capabilities": ["ADMIN"]}, 400, "PUBLISH, SUBSCRIBE"),
    (PARTICIPANT, {"stageArn": STAGE, "userId": "u" * 129}, 400, "0 to 128"),
    (PARTICIPANT, {"stageArn": f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/VideoGone"}, 404, "does not exist"),
])
async def test_refusals_are_clear_and_mint_nothing(gateway, lookups, path, body, status, words) -> None:  # type: ignore[no-untyped-def]
    client, _, registry = gateway
    lookups[0].missing.add(f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/VideoGone")
    answer = await client.post(path, json=body, headers=AS_VIDEO)
    assert answer.status == status
    error = await answer.json()
    assert words in error["message"] and error["message"].startswith("ivs-proxy refused the request: ")
    assert answer.headers["x-amzn-ErrorType"] and "token" not in error
    kind = "playback" if path == PLAYBACK else "participant"
    assert registry.get_sample_value("ivs_proxy_tokens_minted_total", {"kind": kind, "outcome": "refused"}) == 1
    assert registry.get_sample_value("ivs_proxy_tokens_minted_total", {"kind": kind, "outcome": "minted"}) is None


async def test_callers_are_held_to_their_policy_and_caps(gateway, keys) -> None:  # type: ignore[no-untyped-def]
    client, _, registry = gateway
    unauthenticated = await client.post(PLAYBACK, json={"channelArn": channel("VideoMain001")})
    assert unauthenticated.status == 401
    not_allowed = await client.post(PLAYBACK, json={"channelArn": channel("VideoMain001")}, headers=AS_CHAT)
    assert not_allowed.status == 403 and not_allowed.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    publish = await client.post(PARTICIPANT, json={"stageArn": STAGE, "capabilities": ["PUBLISH"]}, headers=AS_CHAT)
    assert publish.status == 403 and "PUBLISH" in (await publish.json())["message"]
    too_long = await client.post(PARTICIPANT, json={"stageArn": STAGE, "durationMinutes": 16}, headers=AS_CHAT)
    assert too_long.status == 403 and "at most 900 seconds" in (await too_long.json())["message"]
    capped = await (await client.post(PARTICIPANT, json={"stageArn": STAGE}, headers=AS_CHAT)).json()
    _, claims = verified(capped["token"], keys[1].public_pem)
    assert claims["exp"] - claims["iat"] == 900  # the default (60 min) shortened to the caller's cap
    assert claims["capabilities"] == {"allow_publish": False, "allow_subscribe": True}
    assert registry.get_sample_value("ivs_proxy_tokens_minted_total", {"kind": "participant", "outcome": "minted"}) == 1
    assert registry.get_sample_value("ivs_proxy_tokens_minted_total", {"kind": "participant", "outcome": "refused"}) == 2


async def test_every_token_is_audited_and_none_is_logged(aiohttp_client, lookups, keys) -> None:  # type: ignore[no-untyped-def]
    with captured_logs() as logs:
        proxy = gateway_for(lookups[1], gateway_settings(policy={"callers": mint_policy()}, tokens=tokens_section(keys)))
        client = await aiohttp_client(proxy.data_app)
        played = await (await client.post(PLAYBACK, json={"channelArn": channel("VideoMain001"), "viewerId": "v-1"},
                                          headers=AS_VIDEO)).json()
        joined = await (await client.post(PARTICIPANT, json={"stageArn": STAGE, "userId": "bob"},
                                          headers=AS_VIDEO)).json()
    minted = [line for line in logs.audit() if line["event"] == "token_minted"]
    assert [(m["caller"], m["kind"], m["resource"], m["subject"], m["key"]) for m in minted] == [
        ("video-team", "playback", channel("VideoMain001"), "v-1", PLAYBACK_KEY_ARN),
        ("video-team", "participant", STAGE, "bob", PUBLIC_KEY_ARN)]
    assert minted[0]["expires_at"] == played["expirationTime"] and minted[1]["participant_id"] == joined["participantId"]
    access = [line for line in logs.access() if line.get("service") == "ivs-proxy"]
    assert [(a["operation"], a["resource"], a["status"]) for a in access] == [
        ("MintPlaybackToken", channel("VideoMain001"), 200), ("MintParticipantToken", STAGE, 200)]
    text = logs.stream.getvalue()
    for secret in (played["token"], joined["token"], *(t.split(".")[2] for t in (played["token"], joined["token"])),
                   keys[0].private.read_text().splitlines()[1], keys[1].private.read_text().splitlines()[1]):
        assert secret not in text


async def test_a_sidecar_mints_only_when_told_to(aiohttp_client, lookups, keys) -> None:  # type: ignore[no-untyped-def]
    body = {"channelArn": channel("AnyChannel")}
    off = await aiohttp_client(proxy_for(lookups[1], {"tokens": tokens_section(keys)}).data_app)
    assert (await off.post(PLAYBACK, json=body)).status == 404  # not an operation this proxy serves
    on = await aiohttp_client(proxy_for(lookups[1], {"tokens": tokens_section(keys, sidecar_minting=True)}).data_app)
    minted = await on.post(PLAYBACK, json=body)
    assert minted.status == 200
    verified((await minted.json())["token"], keys[0].public_pem)


async def test_sighup_rereads_key_files_and_keeps_a_good_key_over_a_bad_file(gateway, keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client, proxy, _ = gateway
    rotated = key_files(tmp_path, "rotated")
    keys[1].private.write_bytes(rotated.private.read_bytes())
    proxy.tokens.reload_keys()
    token = (await (await client.post(PARTICIPANT, json={"stageArn": STAGE}, headers=AS_VIDEO)).json())["token"]
    verified(token, rotated.public_pem)
    keys[1].private.write_text("not a key")
    proxy.tokens.reload_keys()  # logged, and the rotated key stays
    token = (await (await client.post(PARTICIPANT, json={"stageArn": STAGE}, headers=AS_VIDEO)).json())["token"]
    verified(token, rotated.public_pem)


def test_wrong_keys_stop_start_up(lookups, keys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    p256 = key_files(tmp_path, "p256", ec.SECP256R1())
    section = tokens_section(keys)
    section["keys"][0]["private_key_file"] = str(p256.private)
    section["keys"][0].pop("public_key_file")
    with pytest.raises(ConfigError, match="curve secp256r1, IVS tokens need P-384"):
        gateway_for(lookups[1], gateway_settings(tokens=section))
    section = tokens_section(keys)
    section["keys"][0]["public_key_file"] = str(keys[1].public)  # another key's public half
    with pytest.raises(ConfigError, match="not the key in public_key_file"):
        gateway_for(lookups[1], gateway_settings(tokens=section))
    section = tokens_section(keys)
    section["keys"][1]["private_key_file"] = str(keys[1].public)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key") as refused:
        gateway_for(lookups[1], gateway_settings(tokens=section))
    assert "BEGIN" not in str(refused.value)


async def test_without_the_channel_lookup_the_token_comes_without_a_url_and_it_is_asked_once(gateway, keys,  # type: ignore[no-untyped-def]
                                                                                           lookups) -> None:
    client, _, _ = gateway
    lookups[0].missing.add(channel("VideoBackup01"))
    for _ in range(2):
        answer = await client.post(PLAYBACK, json={"channelArn": channel("VideoBackup01")}, headers=AS_VIDEO)
        minted = await answer.json()
        assert answer.status == 200 and "playbackUrl" not in minted
        verified(minted["token"], keys[0].public_pem)
    assert lookups[0].calls("/GetChannel") == 1


async def test_a_real_time_key_is_checked_against_the_public_key_ivs_holds(aiohttp_client, lookups, keys,  # type: ignore[no-untyped-def]
                                                                           tmp_path) -> None:
    lookups[0].public_keys[PUBLIC_KEY_ARN] = key_files(tmp_path, "other").public_pem
    proxy = gateway_for(lookups[1], gateway_settings(tokens=tokens_section(keys)))
    with pytest.raises(ConfigError, match="not the public key IVS holds for this ARN"):
        await aiohttp_client(proxy.data_app)
    del lookups[0].public_keys[PUBLIC_KEY_ARN]
    proxy = gateway_for(lookups[1], gateway_settings(tokens=tokens_section(keys)))
    with pytest.raises(ConfigError, match="IVS refused GetPublicKey .ResourceNotFoundException.*public_key_file"):
        await aiohttp_client(proxy.data_app)


def test_a_served_services_session_policy_grants_kms_signing_only_for_kms_keys(keys) -> None:  # type: ignore[no-untyped-def]
    from proxy.app import own_actions
    from proxy.config import load_config

    assert own_actions(load_config(None, {"tokens": tokens_section(keys)})) == ()
    section = tokens_section(keys)
    section["keys"][0] = {"arn": PLAYBACK_KEY_ARN, "kms_key_id": "alias/ivs-playback"}
    assert own_actions(load_config(None, {"tokens": section})) == ("kms:DescribeKey", "kms:GetPublicKey", "kms:Sign")


#: Values of every JSON type, for members that expect another.
ODD_VALUES = (None, True, -1, 2**70, 1.5, "", "x" * 2000, [], [None], {}, {"a": []})


@pytest.mark.parametrize(("path", "members"), [
    (PLAYBACK, ("channelArn", "allowedOrigins", "strictOriginEnforcement", "singleUse", "viewerId",
                "viewerSessionVersion", "maximumResolution", "lifetimeSeconds")),
    (PARTICIPANT, ("stageArn", "userId", "capabilities", "attributes", "durationMinutes")),
])
async def test_a_value_of_any_wrong_type_is_a_clear_refusal_never_a_500(gateway, path, members) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = gateway
    base = {"channelArn": channel("VideoMain001")} if path == PLAYBACK else {"stageArn": STAGE}
    for member in members:
        for value in ODD_VALUES:
            answer = await client.post(path, json={**base, member: value}, headers=AS_VIDEO)
            assert answer.status < 500, (member, value, await answer.text())
            if answer.status >= 400:
                assert (await answer.json())["message"].startswith("ivs-proxy refused the request: "), (member, value)
    for raw in (b"", b"[]", b"null", b"{", b"\xff\xfe", b'{"channelArn": "a", "channelArn": "b"}'):
        answer = await client.post(path, data=raw, headers={**AS_VIDEO, "Content-Type": "application/json"})
        assert 400 <= answer.status < 500, (raw, await answer.text())
