"""`ivs-proxy dev` and its credential endpoint, run as a developer runs them.

moto (IAM authentication on) is STS and IVS: the dev profile holds moto's admin keys
(long-lived), the broker assumes moto's role with them and hands out the role's session
credentials; a botocore session that knows nothing but the two printed `export` values
signs an IVS call with them, and moto checks that signature.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import botocore.session
import pytest
from aiohttp.test_utils import TestClient

from proxy.aws.credential_sources import served_services_policy
from proxy.aws.credentials import CredentialStore
from proxy.cli import main
from proxy.dev.broker import Broker, create_broker_app, loopback_address, narrowed_role_source
from proxy.errors import ConfigError
from tests.e2e.conftest import unsigned_client
from tests.support.inprocess import StaticSource
from tests.support.moto import ACCOUNT, REGION, MotoServer
from tests.support.net import free_port, wait_for_http
from tests.support.port_server import PortTestServer

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
EXPORT = re.compile(r"^export (AWS_CONTAINER_CREDENTIALS_FULL_URI|AWS_CONTAINER_AUTHORIZATION_TOKEN)=(\S+)$", re.MULTILINE)


def developer_env(moto: MotoServer, home: Path, **extra: str) -> dict[str, str]:
    """A laptop with one profile, `dev`, holding moto's admin access keys."""
    assert moto.admin is not None
    config = home / "aws-config"
    config.write_text(
        f"[profile dev]\naws_access_key_id = {moto.admin[0]}\naws_secret_access_key = {moto.admin[1]}\nregion = {REGION}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(home),
        AWS_CONFIG_FILE=str(config),
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=moto.url,
        **extra,
    )
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """`ivs-proxy ARGS` in this process, with exactly `env` as its environment: for the runs
    that end before anything listens (a subprocess costs 1.5 s of imports each)."""

    def run(env: Mapping[str, str], *args: str) -> Result:
        with monkeypatch.context() as patch:
            for name in list(os.environ):
                patch.delenv(name)
            for name, value in env.items():
                patch.setenv(name, value)
            code = main(list(args))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path
    proxy_url: str
    credentials_url: str
    token: str

    @property
    def credentials_port(self) -> int:
        return int(self.credentials_url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture(scope="module")
def dev(moto: MotoServer) -> Iterator[DevProcess]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        ports = [free_port() for _ in range(3)]
        stdout, stderr = home / "stdout", home / "stderr"
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen(
                [IVS_PROXY, "dev", "--profile", "dev", "--role-arn", moto.role_arn, "--serve-credentials",
                 "--listen", f"127.0.0.1:{ports[0]}", "--admin-listen", f"127.0.0.1:{ports[1]}",
                 "--credentials-listen", f"127.0.0.1:{ports[2]}"],
                env=developer_env(moto, home), stdout=out, stderr=err, text=True,
            )  # fmt: skip
        try:
            wait_for_http(f"http://127.0.0.1:{ports[1]}/readyz")
            wait_for_http(f"http://127.0.0.1:{ports[2]}/credentials", expect_status=401)
            exports = dict(EXPORT.findall(stdout.read_text()))
            yield DevProcess(
                process, stdout, stderr, f"http://127.0.0.1:{ports[0]}",
                exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"], exports["AWS_CONTAINER_AUTHORIZATION_TOKEN"],
            )  # fmt: skip
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def sdk_session(monkeypatch: pytest.MonkeyPatch, moto: MotoServer, env: Mapping[str, str]) -> botocore.session.Session:
    """A botocore session whose only way to credentials is what `env` says."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        **env,
    }.items():
        monkeypatch.setenv(name, value)
    return botocore.session.Session()


def get(port: int, host: str, headers: Mapping[str, str]) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.putrequest("GET", "/credentials", skip_host=True)
        connection.putheader("Host", host)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


# -- the dev proxy and its credential endpoint --------------------------------------------


def test_prints_the_two_export_lines_once_and_logs_for_people(dev: DevProcess) -> None:
    printed = dev.stdout.read_text()
    assert re.search(r"^export AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127\.0\.0\.1:\d+/credentials$", printed, re.MULTILINE)
    assert printed.count(dev.token) == 1
    logs = dev.stderr.read_text()
    assert dev.token not in logs
    assert "credentials_refresh" in logs and not any(line.startswith("{") for line in logs.splitlines())


def test_the_dev_proxy_signs_unsigned_calls(dev: DevProcess) -> None:
    ivs = unsigned_client("ivs", dev.proxy_url)
    assert "channels" in ivs.list_channels()


def test_a_real_sdk_gets_credentials_and_signs_a_call_moto_accepts(
    dev: DevProcess, moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = sdk_session(monkeypatch, moto, {
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": dev.credentials_url,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": dev.token,
    })  # fmt: skip
    credentials = session.get_credentials()
    assert credentials is not None and credentials.method == "container-role"
    frozen = credentials.get_frozen_credentials()
    assert moto.admin is not None and frozen.access_key != moto.admin[0]  # never the profile's keys
    assert frozen.token
    ivs = session.create_client("ivs", region_name=REGION, endpoint_url=moto.url)
    assert "channels" in ivs.list_channels()  # moto verified the SigV4 signature and token
    sts = session.create_client("sts", region_name=REGION, endpoint_url=moto.url)
    arn = sts.get_caller_identity()["Arn"]
    assert arn == f"arn:aws:sts::{ACCOUNT}:assumed-role/ivs-proxy/ivs-proxy-dev-broker"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "wrong"}, {"Authorization": ""}])
def test_missing_or_wrong_token_is_401(dev: DevProcess, headers: dict[str, str]) -> None:
    status, body = get(dev.credentials_port, f"127.0.0.1:{dev.credentials_port}", headers)
    assert status == 401
    assert "AccessKeyId" not in body


def test_prefix_of_the_token_is_401(dev: DevProcess) -> None:
    status, _ = get(dev.credentials_port, f"127.0.0.1:{dev.credentials_port}", {"Authorization": dev.token[:-1]})
    assert status == 401


@pytest.mark.parametrize("host", ["attacker.example:{port}", "attacker.example", "127.0.0.1:1", "localhost.attacker.example:{port}"])
def test_foreign_host_is_refused_even_with_the_token(dev: DevProcess, host: str) -> None:
    status, body = get(dev.credentials_port, host.format(port=dev.credentials_port), {"Authorization": dev.token})
    assert status == 403
    assert "AccessKeyId" not in body


def test_browser_requests_are_refused(dev: DevProcess) -> None:
    headers = {"Authorization": dev.token, "Origin": "http://attacker.example"}
    status, _ = get(dev.credentials_port, f"127.0.0.1:{dev.credentials_port}", headers)
    assert status == 403


def test_the_right_token_and_host_get_credentials(dev: DevProcess) -> None:
    for host in (f"127.0.0.1:{dev.credentials_port}", f"localhost:{dev.credentials_port}"):
        status, body = get(dev.credentials_port, host, {"Authorization": dev.token})
        assert status == 200
        assert set(body) == {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(body["Expiration"]))


def test_the_role_is_assumed_with_the_served_services_session_policy(
    moto: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert moto.admin is not None
    session = sdk_session(monkeypatch, moto, {"AWS_ENDPOINT_URL": moto.url})
    session.set_credentials(*moto.admin)
    sent: list[dict[str, object]] = []
    session.register("provide-client-params.sts.AssumeRole", lambda params, **_: sent.append(dict(params)))
    services = ("ivs", "ivs-realtime", "ivschat")
    snapshot = narrowed_role_source(session, moto.role_arn, services, region=REGION).fetch()
    assert snapshot.expires_at is not None and snapshot.credentials.access_key != moto.admin[0]
    (params,) = sent
    assert params["Policy"] == served_services_policy(services)
    assert json.loads(str(params["Policy"]))["Statement"][0]["Action"] == ["ivs:*", "ivschat:*"]


# -- refused at start ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "address"),
    [("--credentials-listen", "0.0.0.0:{port}"), ("--credentials-listen", "[::]:{port}"),
     ("--listen", "0.0.0.0:{port}"), ("--admin-listen", "192.0.2.1:{port}"), ("--credentials-listen", "example.com:{port}")],
)  # fmt: skip
def test_non_loopback_bind_is_refused_at_start(moto: MotoServer, tmp_path: Path, flag: str, address: str, run_cli: Callable[..., Result]) -> None:
    port = free_port()
    args = ["dev", "--profile", "dev", "--role-arn", moto.role_arn, "--serve-credentials"]
    if flag != "--listen":
        args += ["--listen", f"127.0.0.1:{free_port()}"]
    result = run_cli(developer_env(moto, tmp_path), *args, flag, address.format(port=port))
    assert result.returncode == 2, result.stderr
    assert "is not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr and "export" not in result.stdout


def test_loopback_addresses() -> None:
    assert loopback_address("localhost:9911", "k") == ("127.0.0.1", 9911)
    assert loopback_address("127.0.0.2:1", "k") == ("127.0.0.2", 1)
    assert loopback_address("[::1]:1", "k") == ("::1", 1)
    for bad in ("0.0.0.0:1", "10.0.0.1:1", "[::]:1", "host.example:1", ":1"):
        with pytest.raises(ConfigError):
            loopback_address(bad, "k")


def test_serving_credentials_needs_a_role(moto: MotoServer, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli(developer_env(moto, tmp_path), "dev", "--profile", "dev", "--serve-credentials")
    assert result.returncode == 2
    assert "--role-arn" in result.stderr and "never hands out the profile's own credentials" in result.stderr


def test_access_keys_without_a_role_are_refused_with_the_fix(
    moto: MotoServer, tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    result = run_cli(developer_env(moto, tmp_path), "dev", "--profile", "dev")
    assert result.returncode == 2
    assert "long-lived access keys" in result.stderr and "--role-arn ARN" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_port_is_reported_before_the_profile_is_asked(
        moto: MotoServer, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    # A profile whose credential source leaves a mark: it must not have been asked.
    env = developer_env(moto, tmp_path)
    fetched = tmp_path / "fetched"
    with open(env["AWS_CONFIG_FILE"], "a") as config:
        config.write(f"[profile marked]\ncredential_process = /bin/sh -c 'touch {fetched}; exit 1'\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run_cli(env, "dev", "--profile", "marked", "--listen", address,
                         "--admin-listen", f"127.0.0.1:{free_port()}")  # fmt: skip
    assert result.returncode == 2
    assert f"configuration error: listen: cannot listen on {address}: address already in use" in result.stderr
    assert "Traceback" not in result.stderr
    assert not fetched.exists()
    free = ["--listen", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{free_port()}"]
    assert run_cli(env, "dev", "--profile", "marked", *free).returncode == 1  # ports free: it asks, and fails
    assert fetched.exists()


def test_unknown_profile_is_a_usage_error(moto: MotoServer, tmp_path: Path, run_cli: Callable[..., Result]) -> None:
    result = run_cli(developer_env(moto, tmp_path), "dev", "--profile", "nope")
    assert result.returncode == 2
    assert "no profile named 'nope'" in result.stderr


SSO_PROFILES = """\
[profile legacy-sso]
sso_start_url = https://legacy.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = Developer
region = us-west-2

[profile session-sso]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = Developer
region = us-west-2

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = us-east-1
"""


@pytest.mark.parametrize("profile", ["legacy-sso", "session-sso"])
@pytest.mark.parametrize("token", ["never logged in", "expired"])
def test_expired_sso_session_says_run_aws_sso_login(tmp_path: Path, profile: str, token: str, run_cli: Callable[..., Result]) -> None:
    (tmp_path / ".aws" / "sso" / "cache").mkdir(parents=True)
    (tmp_path / ".aws" / "config").write_text(SSO_PROFILES)
    if token == "expired":  # the token files `aws sso login` leaves, expired, without a refresh token
        import hashlib

        for key in ("https://legacy.awsapps.com/start", "corp"):
            cached = {"accessToken": "t", "expiresAt": "2020-01-01T00:00:00Z", "region": "us-east-1", "startUrl": key}
            (tmp_path / ".aws" / "sso" / "cache" / f"{hashlib.sha1(key.encode()).hexdigest()}.json").write_text(
                json.dumps(cached)
            )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_DISABLED="true")
    result = run_cli(env, "dev", "--profile", profile, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    assert result.returncode == 1
    assert f"aws sso login --profile {profile}" in result.stderr
    assert "Traceback" not in result.stderr


# -- the endpoint in-process: what it answers without valid credentials --------------------


class FailingSource:
    def fetch(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("sts is down")


@pytest.mark.parametrize("source", [StaticSource(), FailingSource()])
async def test_endpoint_answers_from_the_store(source: object) -> None:
    store = CredentialStore(source)  # type: ignore[arg-type]
    port = free_port()
    broker = Broker(store, "secret-token", "127.0.0.1", port)
    server = PortTestServer(create_broker_app(broker), host="127.0.0.1", port=port)
    async with TestClient(server) as client:
        response = await client.get("/credentials", headers={"Authorization": "secret-token"})
        body = await response.json()
    if isinstance(source, FailingSource):
        assert response.status == 503
        assert "sts is down" in body["message"]
    else:
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert body["AccessKeyId"] == "ASIATESTACCESSKEY000"
