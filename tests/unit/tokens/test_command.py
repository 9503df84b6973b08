"""`ivs-proxy token playback|participant` for operators, `ivs-proxy dev --token-key`, and
`policy-check` explaining a caller's token caps."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from proxy.cli import _parser, main
from proxy.dev.devmode import plan
from proxy.errors import ConfigError
from proxy.observe.logs import configure_logging
from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.net import free_port
from tests.support.proxy_process import static_credentials_env
from tests.support.tokens import (
    ACCOUNT,
    PLAYBACK_KEY_ARN,
    PUBLIC_KEY_ARN,
    REGION,
    WHIP_URL,
    IvsLookups,
    key_files,
    verified,
)

CHANNEL = f"arn:aws:ivs:{REGION}:{ACCOUNT}:channel/AbCdEfGhIjKl"
STAGE = f"arn:aws:ivs:{REGION}:{ACCOUNT}:stage/abcdABCDefgh"
IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))


@pytest.fixture(autouse=True)
def default_logging():  # type: ignore[no-untyped-def]
    yield
    configure_logging()  # `token` logs to the stderr capsys replaced, which closes after the test


@pytest.fixture
def config(tmp_path: Path):  # type: ignore[no-untyped-def]
    playback, participant = key_files(tmp_path, "playback"), key_files(tmp_path, "participant")
    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": {"keys": [
        {"arn": PLAYBACK_KEY_ARN, "private_key_file": str(playback.private)},
        {"arn": PUBLIC_KEY_ARN, "private_key_file": str(participant.private),
         "public_key_file": str(participant.public)}],
        "callers": {"app": {"max_lifetime_seconds": 60, "capabilities": ["SUBSCRIBE"]}}},
        "policy": {"callers": {"app": {"Statement": [
            {"Effect": "Allow", "Action": "ivs-proxy:MintParticipantToken", "Resource": "*"}]}}}}))
    return path, playback, participant


def test_an_operator_mints_a_playback_token(config, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    path, playback, _ = config
    # Nothing listens there: GetChannel fails at once, so the answer has no playbackUrl.
    for name, value in static_credentials_env(f"http://127.0.0.1:{free_port()}").items():
        monkeypatch.setenv(name, value)
    assert main(["token", "playback", "--config", str(path), "--channel-arn", CHANNEL, "--viewer-id", "ops-1",
                 "--single-use", "--allowed-origin", "https://a.example", "--lifetime-seconds", "60"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert set(answer) == {"token", "expirationTime"}
    header, claims = verified(answer["token"], playback.public_pem)
    assert header == {"alg": "ES384", "typ": "JWT"}
    assert (claims["aws:channel-arn"], claims["aws:viewer-id"], claims["aws:access-control-allow-origin"]) == (
        CHANNEL, "ops-1", "https://a.example")
    assert main(["token", "playback", "--config", str(path), "--channel-arn", CHANNEL, "--single-use",
                 "--lifetime-seconds", "601"]) == 1
    assert "at most 600" in capsys.readouterr().err


async def test_an_operator_mints_a_participant_token(config, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    path, _, participant = config
    lookups = IvsLookups(TEST_CREDENTIALS.secret_key)
    server = await aiohttp_server(lookups.app())
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
           **static_credentials_env(str(server.make_url("")).rstrip("/"))}
    process = await asyncio.create_subprocess_exec(
        IVS_PROXY, "token", "participant", "--config", str(path), "--stage-arn", STAGE, "--user-id", "alice",
        "--capability", "PUBLISH", "--attribute", "seat=3", "--duration-minutes", "5", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    answer = json.loads(out)
    header, claims = verified(answer["token"], participant.public_pem)
    assert header["kid"] == PUBLIC_KEY_ARN and claims["whip_url"] == WHIP_URL
    # The operator is no caller: no policy, no caps (app's would refuse PUBLISH and 5 minutes).
    assert claims["capabilities"] == {"allow_publish": True, "allow_subscribe": False}
    assert claims["attributes"] == {"seat": "3"} and claims["exp"] - claims["iat"] == 300
    assert answer["token"] not in err.decode()


def test_the_dev_proxy_mints_with_a_local_key_file(tmp_path: Path) -> None:
    files = key_files(tmp_path)
    args = _parser().parse_args(["dev", "--token-key", f"{PLAYBACK_KEY_ARN}={files.private}"])
    dev = plan(args, {})
    assert dev.config.tokens.sidecar_minting
    assert [(k.arn, k.private_key_file) for k in dev.config.tokens.keys] == [(PLAYBACK_KEY_ARN, str(files.private))]
    with pytest.raises(ConfigError, match="ARN=PRIVATE_KEY_FILE"):
        plan(_parser().parse_args(["dev", "--token-key", str(files.private)]), {})


def test_policy_check_shows_the_callers_token_caps(config, capsys) -> None:  # type: ignore[no-untyped-def]
    path = config[0]
    assert main(["policy-check", "--config", str(path), "--caller", "app", "--action",
                 "ivs-proxy:MintParticipantToken", "--resource", STAGE]) == 0
    out = capsys.readouterr().out
    assert "caps:     tokens.callers.app: lifetime at most 60 s; participant capabilities SUBSCRIBE" in out
