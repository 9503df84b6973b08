"""Credentials from STS (moto, server mode): the proxy assumes a role itself, web identity
(EKS IRSA), a role profile; long-lived keys refused unless allowed. Every signed call is
checked by moto's IAM authentication, and the role's policy (ivs channel actions only,
unlike the admin user's ivs:*) shows which identity signed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import botocore.session
import pytest
from botocore.exceptions import ClientError

from proxy.aws.credential_sources import BotocoreChainSource
from proxy.cli import main
from tests.e2e.conftest import unsigned_client
from tests.support.moto import ACCOUNT, REGION, MotoServer
from tests.support.proxy_process import ProxyProcess
from tests.support.sts_shim import StsShim

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
OTHER_CHANNEL = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"


def hermetic_env(moto: MotoServer, **extra: str) -> dict[str, str]:
    """No profile files, no instance metadata: only what the test puts in."""
    return {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **extra,
    }


def admin_keys(moto: MotoServer) -> dict[str, str]:
    assert moto.admin is not None
    return {"AWS_ACCESS_KEY_ID": moto.admin[0], "AWS_SECRET_ACCESS_KEY": moto.admin[1]}


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([IVS_PROXY, *args], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False)


def whoami(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: Mapping[str, str],
           *args: str) -> tuple[int, str]:
    """`ivs-proxy whoami` in this process (botocore's chain reads os.environ), for speed."""
    use_env(monkeypatch, env)
    capsys.readouterr()
    # whoami configures the process's logging onto capsys's stream, which closes after this
    # test; test_cli.py checks that logging in a real process.
    monkeypatch.setattr("proxy.cli.configure_logging", lambda *_args: None)
    code = main(["whoami", *args])
    return code, capsys.readouterr().out


def use_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def refresh_lines(output: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") in ("credentials_refresh", "credentials_identity")]


def assert_role_signs(proxy: ProxyProcess) -> None:
    ivs = unsigned_client("ivs", proxy.url)
    arn = ivs.create_channel(name="via-role")["channel"]["arn"]
    assert ivs.get_channel(arn=arn)["channel"]["name"] == "via-role"
    with pytest.raises(ClientError) as denied:  # allowed for admin, not for the role
        ivs.batch_get_channel(arns=[OTHER_CHANNEL])
    assert "assumed-role/ivs-proxy/" in str(denied.value)


def test_proxy_assumes_the_role_itself(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        f"credentials:\n  role_arn: {moto.role_arn}\n  role_session_name: sidecar-e2e\n"
        "  external_id: ivs-proxy-tests\n  duration_seconds: 900\n"
    )
    env = hermetic_env(moto, **admin_keys(moto))  # long-lived base keys are fine here
    proxy = ProxyProcess(env, config=config)
    proxy.start()
    try:
        assert_role_signs(proxy)
    finally:
        output = proxy.stop()
    (refresh,) = [line for line in refresh_lines(output) if line["event"] == "credentials_refresh"]
    assert refresh["outcome"] == "success"
    assert refresh["identity"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ivs-proxy/sidecar-e2e"
    assert str(refresh["source"]).endswith(moto.role_arn)
    assert moto.admin is not None and moto.admin[1] not in output

    code, out = whoami(monkeypatch, capsys, env, "--config", str(config))
    assert code == 0
    assert f"source:   ivs-proxy assume-role {moto.role_arn}\n" in out
    assert f"identity: arn:aws:sts::{ACCOUNT}:assumed-role/ivs-proxy/sidecar-e2e\n" in out
    assert "expires:  20" in out and "(in 1" in out  # 15 min: "(in 14 min 59 s)"


def test_web_identity_as_on_eks_with_irsa(moto: MotoServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig")
    assert moto.admin is not None
    with StsShim(moto.url, moto.admin, REGION) as sts:
        env = hermetic_env(
            moto,
            AWS_ROLE_ARN=moto.role_arn,
            AWS_WEB_IDENTITY_TOKEN_FILE=str(token),
            AWS_ROLE_SESSION_NAME="irsa-e2e",
            AWS_ENDPOINT_URL_STS=sts.url,
        )
        proxy = ProxyProcess(env)
        proxy.start()
        try:
            assert_role_signs(proxy)
        finally:
            output = proxy.stop()
    assert sts.tokens and set(sts.tokens) == {token.read_text()}
    refresh = refresh_lines(output)[0]
    assert (refresh["event"], refresh["outcome"]) == ("credentials_refresh", "success")
    assert refresh["source"] == "assume-role-with-web-identity"


def test_role_profile_with_source_profile(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert moto.admin is not None
    profiles = tmp_path / "config"
    profiles.write_text(
        "[profile base]\n"
        f"aws_access_key_id = {moto.admin[0]}\naws_secret_access_key = {moto.admin[1]}\n"
        "[profile ivs]\n"
        f"role_arn = {moto.role_arn}\nsource_profile = base\nrole_session_name = laptop\n"
    )
    env = hermetic_env(moto, AWS_CONFIG_FILE=str(profiles), AWS_PROFILE="ivs")
    code, out = whoami(monkeypatch, capsys, env)
    assert code == 0
    assert "source:   assume-role\n" in out
    assert f"identity: arn:aws:sts::{ACCOUNT}:assumed-role/ivs-proxy/laptop\n" in out

    # botocore caches an assumed role's answer until 15 min before expiry; each refresh
    # the proxy schedules must still call STS again.
    source = BotocoreChainSource(botocore.session.Session(profile="ivs"), region=REGION)
    first, second = source.fetch(), source.fetch()
    assert first.source == second.source == "assume-role"
    assert first.credentials.access_key != second.credentials.access_key


def test_long_lived_keys_are_refused_unless_allowed(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = hermetic_env(moto, **admin_keys(moto))
    refused = run_cli(env, "serve", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    assert refused.returncode == 2
    message = refused.stderr
    assert "configuration error: credentials:" in message and "long-lived access keys" in message
    for fix in ("credentials.role_arn", "SSO", "allow_long_lived_credentials: true", "local development only"):
        assert fix in message
    assert moto.admin is not None and moto.admin[1] not in message

    code, out = whoami(monkeypatch, capsys, env)
    assert code == 2
    assert "source:   env\n" in out and "expires:  never (long-lived access keys)" in out

    config = tmp_path / "dev.yaml"
    config.write_text("credentials:\n  allow_long_lived_credentials: true\n")
    proxy = ProxyProcess(env, config=config)
    proxy.start()
    try:
        assert unsigned_client("ivs", proxy.url).list_channels()["ResponseMetadata"]["HTTPStatusCode"] == 200
    finally:
        proxy.stop()
