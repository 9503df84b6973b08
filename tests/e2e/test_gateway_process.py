"""`ivs-proxy` as operators run it in gateway mode: start-up refusals, `check-config`,
`policy-check`, and the bearer tokens file re-read on SIGHUP."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import yaml

from proxy.cli import main
from tests.support.gateway import CHAT, POLICY, channel
from tests.support.inprocess import TEST_CREDENTIALS
from tests.support.proxy_process import ProxyProcess

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["--listen", "0.0.0.0:{port}"], "listen: '0.0.0.0:"),  # sidecar, no auth: loopback only
        (["--config", "{gateway_without_auth}"], "auth: gateway mode needs"),
    ],
)
def test_serve_refuses_to_expose_an_unauthenticated_proxy(tmp_path: Path, args: list[str], key: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("mode: gateway\n")
    argv = [a.format(port=0, gateway_without_auth=config) for a in args]
    result = subprocess.run([IVS_PROXY, "serve", "--admin-listen", "127.0.0.1:0", *argv], capture_output=True,
                            text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-west-2"})
    assert result.returncode == 2, result.stderr
    assert key in result.stderr and "Traceback" not in result.stderr


def test_check_config_knows_the_gateway_example_and_the_exposure_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(CONFIG_DIR / "gateway.yaml")]) == 0
    exposed = tmp_path / "exposed.yaml"
    exposed.write_text('listen: "0.0.0.0:8080"\n')
    assert main(["check-config", str(exposed)]) == 2
    assert "loopback" in capsys.readouterr().err


def test_policy_check_explains_the_decision(capsys: pytest.CaptureFixture[str]) -> None:
    config = str(CONFIG_DIR / "gateway.yaml")
    own = "arn:aws:ivs:us-west-2:123456789012:channel/VideoMain001"
    assert main(["policy-check", "--config", config, "--caller", "video-team", "--action", "ivs:PutMetadata",
                 "--resource", own]) == 0
    out = capsys.readouterr().out
    assert f"resource: {own}: ALLOW (allowed by statement PutMetadataOnOwnChannels)" in out
    assert "decision: ALLOW" in out
    assert main(["policy-check", "--config", config, "--caller", "chat-team", "--action", "ivs:GetChannel",
                 "--resource", own]) == 1
    out = capsys.readouterr().out
    assert "DENY (denied by statement NeverVideoChannels)" in out and "decision: DENY (explicit_deny)" in out
    assert main(["policy-check", "--config", config, "--caller", "video-team", "--action", "ivs:ListChannels"]) == 1
    assert "resource: *: DENY (no statement allows it)" in capsys.readouterr().out


async def test_the_tokens_file_is_reloaded_on_sighup(recording, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, upstream_server = recording
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"chat-team: {digest('first-token-0000000000')}\n")
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "mode": "gateway", "region": "us-west-2",
        "auth": {"bearer": {"tokens_file": str(tokens)}},
        "policy": {"callers": {"chat-team": POLICY["chat-team"]}},
    }))
    env = {"AWS_ENDPOINT_URL": str(upstream_server.make_url("")).rstrip("/"), "AWS_REGION": "us-west-2",
           "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS.access_key, "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS.secret_key,
           "AWS_SESSION_TOKEN": TEST_CREDENTIALS.token or "", "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z",
           "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    process = ProxyProcess(env, args=("--drain-delay", "0"), config=config)
    await asyncio.to_thread(process.start)
    assert process.process is not None

    async def status(session: aiohttp.ClientSession, token: str) -> int:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with session.post(f"{process.url}/GetChannel", json={"arn": channel("ChatLobby001")},
                                headers=headers) as response:
            return response.status

    async def after_sighup(session: aiohttp.ClientSession, token: str, expected: int) -> int:
        process.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while (found := await status(session, token)) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return found

    try:
        async with aiohttp.ClientSession() as session:
            assert await status(session, "first-token-0000000000") == 200
            assert await status(session, CHAT.token) == 401
            tokens.write_text(f"chat-team: [{digest(CHAT.token)}]\n")
            assert await after_sighup(session, CHAT.token, 200) == 200
            assert await status(session, "first-token-0000000000") == 401
            tokens.write_text("chat-team: [not-a-digest]\n")  # a bad file keeps the tokens loaded
            process.process.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.3)
            assert await status(session, CHAT.token) == 200
    finally:
        output = await asyncio.to_thread(process.stop)
    assert '"event": "bearer_tokens_reloaded"' in output and '"event": "bearer_tokens_reload_failed"' in output
    assert process.process.returncode == 0, output
