"""Tokens from a real gateway process: KMS-held keys in moto (server mode, IAM auth on, so
every Sign call is signed by the proxy and checked), GetStage and GetChannel from a
signature-checking upstream (moto has no ivs-realtime), a backend calling with an ordinary
HTTP client and a bearer token, every token verified by PyJWT with KMS's public key."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tests.support.moto import MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess
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

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
BACKEND_TOKEN = "backend-bearer-token-0123456789abcdef"
OTHER_TOKEN = "other-bearer-token-0123456789abcdef"
CHANNEL = f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/ShopLive01"
STAGE = f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/ShopStage01"


def kms_key(moto: MotoServer, spec: str = "ECC_NIST_P384") -> tuple[str, bytes]:
    """A new KMS signing key: its id and its public half as PEM (what is imported into IVS)."""
    kms = moto.client("kms", *moto.admin)
    key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])  # boto3: DER bytes
    return key_id, public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def gateway_config(tmp_path: Path, playback_key: str, participant_key: str, public_pem: bytes) -> Path:
    public = tmp_path / "playback.pub.pem"
    public.write_bytes(public_pem)
    config: dict[str, Any] = {
        "mode": "gateway",
        "auth": {"bearer": {"tokens": {"shop-backend": [hashlib.sha256(BACKEND_TOKEN.encode()).hexdigest()],
                                       "other-team": [hashlib.sha256(OTHER_TOKEN.encode()).hexdigest()]}}},
        "policy": {"callers": {
            "shop-backend": {"Statement": [
                {"Effect": "Allow", "Action": "ivs-proxy:MintPlaybackToken",
                 "Resource": f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/Shop*"},
                {"Effect": "Allow", "Action": "ivs-proxy:MintParticipantToken",
                 "Resource": f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/Shop*"}]},
            "other-team": {"Statement": [{"Effect": "Allow", "Action": "ivs:ListChannels", "Resource": "*"}]},
        }},
        "tokens": {"keys": [
            {"arn": PLAYBACK_KEY_ARN, "kms_key_id": playback_key, "public_key_file": str(public)},
            {"arn": PUBLIC_KEY_ARN, "kms_key_id": participant_key},
        ], "callers": {"shop-backend": {"max_lifetime_seconds": 3600}}},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


async def post(url: str, body: dict[str, Any], token: str | None = BACKEND_TOKEN) -> tuple[int, dict[str, Any]]:
    """An ordinary backend's HTTP call (aiohttp's client: no SDK, no signing). Async: the
    lookups upstream answers on this test's event loop."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
            session.post(url, json=body, headers=headers) as answer:
        return answer.status, await answer.json()


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as answer:
        return await answer.text()


@pytest.fixture
async def lookups(aiohttp_server, role_credentials: SessionCredentials):  # type: ignore[no-untyped-def]
    upstream = IvsLookups(role_credentials.secret_key)
    server = await aiohttp_server(upstream.app())
    return upstream, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def gateway(moto: MotoServer, role_credentials: SessionCredentials, lookups, tmp_path: Path):  # type: ignore[no-untyped-def]
    playback_key, playback_pem = kms_key(moto)
    participant_key, participant_pem = kms_key(moto)
    lookups[0].public_keys[PUBLIC_KEY_ARN] = participant_pem  # as `aws ivs-realtime import-public-key` did
    env = {**role_credentials.env(), "AWS_REGION": REGION, "AWS_ENDPOINT_URL": lookups[1],
           "AWS_ENDPOINT_URL_KMS": moto.url}
    process = ProxyProcess(env, config=gateway_config(tmp_path, playback_key, participant_key, playback_pem))
    # In a thread: the start-up check asks the lookups upstream, which answers on this loop.
    await asyncio.to_thread(process.start)
    yield process, playback_pem, participant_pem
    output = process.stop()
    assert "Traceback" not in output


async def test_a_backend_gets_both_tokens_from_a_gateway(gateway, lookups) -> None:  # type: ignore[no-untyped-def]
    process, playback_pem, participant_pem = gateway
    status, played = await post(f"{process.url}/_ivs-proxy/tokens/playback",
                          {"channelArn": CHANNEL, "viewerId": "viewer-7", "lifetimeSeconds": 300})
    assert status == 200, played
    header, claims = verified(played["token"], playback_pem)
    assert header == {"alg": "ES384", "typ": "JWT"}
    assert claims["aws:channel-arn"] == CHANNEL and claims["aws:viewer-id"] == "viewer-7"
    assert played.get("playbackUrl") == f"{PLAYBACK_URL}?token={played['token']}", process.output()

    status, joined = await post(f"{process.url}/_ivs-proxy/tokens/participant",
                          {"stageArn": STAGE, "userId": "shopper", "capabilities": ["SUBSCRIBE"]})
    assert status == 200, joined
    header, claims = verified(joined["token"], participant_pem)
    assert header == {"alg": "ES384", "typ": "JWT", "kid": PUBLIC_KEY_ARN}
    assert (claims["resource"], claims["topic"], claims["events_url"], claims["whip_url"]) == (
        STAGE, "ShopStage01", EVENTS_URL, WHIP_URL)
    assert claims["capabilities"] == {"allow_publish": False, "allow_subscribe": True} and claims["version"] == "1.0"
    # GetStage and GetChannel reached the upstream signed with the proxy's own credentials.
    assert lookups[0].calls("/GetStage") == 1 and lookups[0].calls("/GetChannel") == 1

    metrics = await scrape(process.admin_url)
    assert 'ivs_proxy_tokens_minted_total{kind="playback",outcome="minted"} 1.0' in metrics
    assert 'ivs_proxy_tokens_minted_total{kind="participant",outcome="minted"} 1.0' in metrics
    output = process.output()
    assert '"event": "token_minted"' in output or '"event":"token_minted"' in output
    for token in (played["token"], joined["token"]):
        assert token not in output and token.split(".")[2] not in output and token not in metrics


async def test_refusals_from_the_gateway(gateway) -> None:  # type: ignore[no-untyped-def]
    process, _, _ = gateway
    url = f"{process.url}/_ivs-proxy/tokens/playback"
    assert (await post(url, {"channelArn": CHANNEL}, token=None))[0] == 401
    status, error = await post(url, {"channelArn": CHANNEL}, token=OTHER_TOKEN)
    assert status == 403 and "other-team" in error["message"]
    status, error = await post(url, {"channelArn": f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/NotOurs01"})
    assert status == 403 and "NotOurs01" in error["message"]
    status, error = await post(url, {"channelArn": CHANNEL, "singleUse": True, "lifetimeSeconds": 900})
    assert status == 400 and "at most 600" in error["message"]
    status, error = await post(url, {"channelArn": CHANNEL, "lifetimeSeconds": 7200})
    assert status == 403 and "at most 3600 seconds" in error["message"]


async def test_kms_unavailable_is_a_503_and_mints_nothing(gateway, moto: MotoServer) -> None:  # type: ignore[no-untyped-def]
    process, _, _ = gateway
    iam = moto.client("iam", *moto.admin)
    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "kms:Sign", "Resource": "*"}]}
    iam.put_role_policy(RoleName="ivs-proxy", PolicyName="no-kms-sign", PolicyDocument=json.dumps(deny))
    try:
        status, error = await post(f"{process.url}/_ivs-proxy/tokens/playback", {"channelArn": CHANNEL})
    finally:
        iam.delete_role_policy(RoleName="ivs-proxy", PolicyName="no-kms-sign")
    assert status == 503 and error["reason"] == "token_signing_unavailable" and "token" not in error
    assert "KMS did not sign the token (AccessDenied" in error["message"]
    metrics = await scrape(process.admin_url)
    assert 'ivs_proxy_tokens_minted_total{kind="playback",outcome="failed"} 1.0' in metrics
    assert 'outcome="minted"' not in metrics
    assert "token_minted" not in process.output()
    # KMS back: minting resumes.
    assert (await post(f"{process.url}/_ivs-proxy/tokens/playback", {"channelArn": CHANNEL}))[0] == 200


def serve_until_exit(config: Path, moto: MotoServer, credentials: SessionCredentials) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", **credentials.env(), "AWS_REGION": REGION, "AWS_ENDPOINT_URL": moto.url,
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
           **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    return subprocess.run([IVS_PROXY, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
                           "--config", str(config)], capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.mark.parametrize("spec", ["ECC_NIST_P256", "RSA_2048"])
def test_a_wrong_kms_key_stops_start_up(moto: MotoServer, role_credentials: SessionCredentials, tmp_path: Path,
                                        spec: str) -> None:
    wrong, _ = kms_key(moto, spec)
    right, pem = kms_key(moto)
    config = gateway_config(tmp_path, wrong, right, pem)
    result = serve_until_exit(config, moto, role_credentials)
    assert result.returncode == 2, result.stderr
    assert f"the key spec is {spec}, IVS tokens need ECC_NIST_P384" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_kms_public_half_must_be_the_imported_key(moto: MotoServer, role_credentials: SessionCredentials,
                                                      tmp_path: Path) -> None:
    playback, _ = kms_key(moto)
    participant, other_pem = kms_key(moto)
    config = gateway_config(tmp_path, playback, participant, other_pem)  # playback key checked against another key
    result = serve_until_exit(config, moto, role_credentials)
    assert result.returncode == 2 and "not the key in public_key_file" in result.stderr, result.stderr


async def test_sighup_rereads_a_rotated_key_file(lookups, role_credentials: SessionCredentials,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    old, new = key_files(tmp_path, "old"), key_files(tmp_path, "new")
    mounted = tmp_path / "mounted.pem"
    mounted.write_bytes(old.private.read_bytes())
    config = tmp_path / "sidecar.yaml"
    config.write_text(yaml.safe_dump({"tokens": {"sidecar_minting": True, "keys": [
        {"arn": PLAYBACK_KEY_ARN, "private_key_file": str(mounted)}]}}))
    env = {**role_credentials.env(), "AWS_REGION": REGION, "AWS_ENDPOINT_URL": lookups[1]}
    process = ProxyProcess(env, config=config)
    process.start()
    try:
        url = f"{process.url}/_ivs-proxy/tokens/playback"
        status, first = await post(url, {"channelArn": CHANNEL}, token=None)
        assert status == 200
        verified(first["token"], old.public_pem)
        mounted.write_bytes(new.private.read_bytes())  # the secret was rotated
        assert process.process is not None
        process.process.send_signal(signal.SIGHUP)
        for _ in range(100):  # bounded: the reload is logged once done
            if "token_keys_reloaded" in process.output():
                break
            await asyncio.sleep(0.05)
        status, second = await post(url, {"channelArn": CHANNEL}, token=None)
        assert status == 200
        verified(second["token"], new.public_pem)
    finally:
        output = process.stop()
    assert "token_keys_reloaded" in output and first["token"] not in output
