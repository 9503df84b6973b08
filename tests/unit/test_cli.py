from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.model.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))
# The venv's `ivs-proxy` imports whichever tree is installed editable; a child started with a
# bare environment must still run this tree's code.
TREE = str(Path(__file__).resolve().parents[2])
BARE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": TREE}
NO_CREDENTIALS_ENV = {**BARE_ENV, "AWS_REGION": "us-west-2", "AWS_CONFIG_FILE": "/dev/null",
                      "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
STATIC_CREDENTIALS_ENV = {**NO_CREDENTIALS_ENV, "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x",
                          "AWS_SESSION_TOKEN": "y", "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z"}


def test_routes_prints_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(Catalog.load().operations)
    assert any(line.split() == ["ivs", "POST", "/CreateChannel", "CreateChannel"] for line in lines)
    assert any(line.split() == ["ivs-realtime", "POST", "/ivs-realtime/CreateStage", "CreateStage"] for line in lines)
    assert any(line.split() == ["ivschat", "DELETE", "/ivschat/tags/{resourceArn}", "UntagResource"] for line in lines)


def test_check_config_accepts_good_and_names_the_bad_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("listen: 127.0.0.1:8081\n")
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstream:\n  read_timeout_seconds: -1\n")
    assert main(["check-config", str(bad)]) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "upstream.read_timeout_seconds" in error


def test_check_config_warns_when_the_inflight_cap_exceeds_the_upstream_pool(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-west-2")  # else it warns of the missing region too
    config = tmp_path / "config.yaml"
    config.write_text("limits:\n  max_inflight_requests: 200\nupstream:\n  max_connections: 50\n")
    assert main(["check-config", str(config)]) == 0  # it runs; the warning says what it costs
    captured = capsys.readouterr()
    assert "ok" in captured.out
    assert "warning: limits.max_inflight_requests: 200 exceeds upstream.max_connections (50)" in captured.err
    assert main(["check-config", str(REPO / "config" / "reference.yaml")]) == 0
    assert "warning" not in capsys.readouterr().err  # the defaults agree (100 and 100)


def test_serve_with_a_bad_config_exits_2_before_listening(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions:\n  ivs: [mars-north-1]\n")
    result = subprocess.run(
        [IVS_PROXY, "serve", "--config", str(bad)], capture_output=True, text=True, timeout=60, check=False,
        env={**BARE_ENV, "AWS_REGION": "us-west-2"},
    )
    assert result.returncode == 2
    assert "regions.ivs" in result.stderr and "mars-north-1" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run([IVS_PROXY, "--version"], capture_output=True, text=True, timeout=60, check=False,
                            env=BARE_ENV)
    assert result.returncode == 0
    assert result.stdout.startswith("ivs-proxy ") and "botocore" in result.stdout


@pytest.mark.parametrize("taken_key", ["listen", "admin_listen"])
def test_a_taken_port_is_reported_before_any_credential_fetch(taken_key: str, tmp_path: Path) -> None:
    # The credential source is a process that leaves a mark and fails: if start-up had
    # fetched before binding, the mark would be there.
    fetched = tmp_path / "fetched"
    profile = tmp_path / "config"
    profile.write_text(f"[default]\ncredential_process = /bin/sh -c 'touch {fetched}; exit 1'\n")
    env = {**NO_CREDENTIALS_ENV, "AWS_CONFIG_FILE": str(profile)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        held = f"127.0.0.1:{taken.getsockname()[1]}"
        listen, admin = (held, "127.0.0.1:0") if taken_key == "listen" else ("127.0.0.1:0", held)
        result = subprocess.run(
            [IVS_PROXY, "serve", "--listen", listen, "--admin-listen", admin],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )
    assert result.returncode == 2, result.stderr
    flag = "--listen" if taken_key == "listen" else "--admin-listen"
    assert (f"ivs-proxy: configuration error: {taken_key}: cannot listen on {held}: address already in use: "
            f"another process listens there; stop it or choose another port ({flag} or {taken_key}:)") in result.stderr
    assert "Traceback" not in result.stderr and "credentials_refresh" not in result.stderr + result.stdout
    assert not fetched.exists()
    # The same source, asked by `whoami`, does leave its mark.
    subprocess.run([IVS_PROXY, "whoami"], capture_output=True, timeout=60, env=env, check=False)
    assert fetched.exists()


@pytest.mark.parametrize("command", ["serve", "routes", "check-config", "whoami", "policy-check", "dev"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = subprocess.run([IVS_PROXY, command, "--help"], capture_output=True, text=True, timeout=60, check=False,
                            env=BARE_ENV)
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"ivs-proxy {command}" in result.stdout


def test_routes_columns_line_up(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["routes"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # Each column starts at the same offset on every line: where the first line's words start.
    first = lines[0]
    starts = [i for i, char in enumerate(first) if char != " " and (i == 0 or first[i - 1] == " ")]
    assert len(starts) == 4
    for line in lines:
        assert all(line[start] != " " and line[start - 1] == " " for start in starts[1:]), line


def test_routes_into_a_pipe_closed_early_exits_quietly() -> None:
    """`ivs-proxy routes | head -1`: the reader stops; no "Broken pipe" and no exit 1."""
    # The reader is gone before the first line (the output would fit in a pipe's buffer).
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run([IVS_PROXY, "routes"], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                                check=False, env=BARE_ENV)
    finally:
        os.close(writer)
    assert result.returncode == 128 + signal.SIGPIPE
    assert result.stderr == ""


def test_serve_help_explains_the_log_flags() -> None:
    result = subprocess.run([IVS_PROXY, "serve", "--help"], capture_output=True, text=True, timeout=60,
                            check=False, env=BARE_ENV)
    flags = " ".join(result.stdout.split())
    assert "--log-level {debug,info,warning,error} least severe log line written" in flags
    assert "--log-format {json,console} json: one JSON object a line" in flags


def test_policy_check_help_names_every_exit_code() -> None:
    result = subprocess.run([IVS_PROXY, "policy-check", "--help"], capture_output=True, text=True, timeout=60,
                            check=False, env=BARE_ENV)
    assert "0 when allowed, 1 when denied, 2 for a bad flag or config" in result.stdout


def test_policy_check_with_a_bad_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("policy:\n  callers:\n    video-team: not-a-policy\n")
    assert main(["policy-check", "--config", str(config), "--caller", "video-team", "--action", "ivs:GetChannel"]) == 2
    assert "policy" in capsys.readouterr().err


def test_whoami_prints_no_debug_line_at_the_default_level() -> None:
    # STS is unreachable here, so the identity lookup fails: that is logged at debug only.
    result = subprocess.run([IVS_PROXY, "whoami"], capture_output=True, text=True, timeout=60, check=False,
                            env={**STATIC_CREDENTIALS_ENV, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    assert "source:   env" in result.stdout
    assert result.stderr == ""


def test_whoami_without_credentials_says_what_to_do() -> None:
    result = subprocess.run([IVS_PROXY, "whoami"], capture_output=True, text=True, timeout=60, check=False,
                            env=NO_CREDENTIALS_ENV)
    assert result.returncode == 1
    assert "found no credentials" in result.stderr
    assert "aws sso login --profile NAME" in result.stderr and "AWS_PROFILE=NAME" in result.stderr


def test_policy_check_explains_a_region_condition(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({"mode": "gateway", "region": "us-west-2", "auth": {"bearer": {"tokens": {
        "team": ["0" * 64]}}}, "policy": {"callers": {"team": {"Statement": [
            {"Effect": "Allow", "Action": "ivs:*", "Resource": "*"},
            {"Sid": "EuropeOnly", "Effect": "Deny", "Action": "ivs:*", "Resource": "*",
             "Condition": {"StringNotLike": {"aws:RequestedRegion": "eu-*"}}}]}}}}))
    base = ["policy-check", "--config", str(config), "--caller", "team", "--action"]
    assert main([*base, "ivs:CreateChannel", "--region", "eu-west-1"]) == 0
    assert "region:   eu-west-1 (aws:RequestedRegion)" in capsys.readouterr().out
    assert main([*base, "ivs:CreateChannel"]) == 1  # the config's region
    out = capsys.readouterr().out
    assert "region:   us-west-2" in out and "denied by statement EuropeOnly" in out
    assert main([*base, "ivs:GetChannel", "--resource", "arn:aws:ivs:eu-central-1:123456789012:channel/a"]) == 0
    assert "region:   eu-central-1" in capsys.readouterr().out  # the ARN's region, as the proxy chooses


# --- one validation, wherever a config is read (issue 13) -------------------------------------

GATEWAY_POLICY = {"mode": "gateway", "region": "us-west-2", "auth": {"bearer": {"tokens": {"video-team": ["0" * 64]}}},
                  "policy": {"callers": {"video-team": {"Statement": [
                      {"Effect": "Allow", "Action": "ivs:GetChannel", "Resource": "*"}]}}}}


def _write(tmp_path: Path, config: dict[str, object]) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))
    return str(path)


def test_check_config_refuses_a_misspelt_policy_action_as_serve_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, {**GATEWAY_POLICY, "policy": {"callers": {"video-team": {"Statement": [
        {"Effect": "Allow", "Action": "ivs:GetChanel", "Resource": "*"}]}}}})
    for command in (["check-config", config], ["serve", "--config", config]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "'ivs:GetChanel' matches no operation" in err and "did you mean ivs:GetChannel?" in err


@pytest.mark.parametrize(("config", "flags", "key"), [
    ({"region": "us-wset-2"}, [], "region"),
    ({}, ["--region", "us-wset-2"], "region"),
    ({"regions": {"ivs": ["us-west-2", "us-wset-2"]}}, [], "regions.ivs[1]"),
])
def test_a_region_botocore_does_not_list_is_refused_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], config: dict[str, object], flags: list[str],
        key: str) -> None:
    path = _write(tmp_path, config)
    commands = [["serve", "--config", path, *flags], ["dev", "--config", path, *flags]]
    commands += [] if flags else [["check-config", path]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"configuration error: {key}: " in err and "did you mean us-west-2?" in err


def test_a_proxy_without_a_region_warns_that_calls_naming_no_arn_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert main(["check-config", _write(tmp_path, {})]) == 0
    assert "warning: region: no default region" in capsys.readouterr().err
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert main(["check-config", _write(tmp_path, {})]) == 0
    assert "warning" not in capsys.readouterr().err


def test_serve_logs_the_missing_region_once_before_it_starts() -> None:
    env = {k: v for k, v in STATIC_CREDENTIALS_ENV.items() if k != "AWS_REGION"}
    with socket.socket() as taken:  # serve stops at bind (exit 2), after its start-up checks
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        result = subprocess.run([IVS_PROXY, "serve", "--listen", listen, "--admin-listen", "127.0.0.1:0"],
                                capture_output=True, text=True, timeout=60, check=False, env=env)
    assert result.returncode == 2, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() + result.stdout.splitlines()
             if line.startswith("{")]
    warned = [line for line in lines if line.get("event") == "config_warning" and line.get("key") == "region"]
    assert len(warned) == 1, lines
    assert warned[0]["level"] == "warning" and "is refused" in warned[0]["detail"]


def test_policy_check_refuses_an_unknown_caller_or_action_with_a_suggestion(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy-check", "--config", _write(tmp_path, GATEWAY_POLICY)]
    assert main([*base, "--caller", "video-teem", "--action", "ivs:GetChannel"]) == 2
    err = capsys.readouterr().err
    assert "--caller: 'video-teem' is not in policy.callers; did you mean video-team?" in err
    assert main([*base, "--caller", "video-team", "--action", "ivs:GetChanel"]) == 2
    assert "--action: 'ivs:GetChanel' is no IAM action of a served operation nor an ivs-proxy action; did you mean ivs:GetChannel?" in (
        capsys.readouterr().err)
    assert main([*base, "--caller", "video-team", "--action", "ivs:GetChannel", "--region", "us-wset-2"]) == 2
    assert "did you mean us-west-2?" in capsys.readouterr().err
    assert main([*base, "--caller", "video-team", "--action", "ivs:GetChannel"]) == 0


def test_policy_check_allows_in_a_sidecar_without_a_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, {"region": "us-west-2"})
    assert main(["policy-check", "--config", config, "--caller", "app", "--action", "ivs:CreateChannel"]) == 0
    assert "decision: ALLOW (sidecar mode without policy.callers" in capsys.readouterr().out


def test_policy_check_explains_event_delivery(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["policy-check", "--config", str(REPO / "config" / "gateway.yaml"), "--caller", "video-team",
            "--action", "ivs-proxy:SubscribeEvents", "--resource"]
    assert main([*base, "arn:aws:ivs:us-west-2:123456789012:channel/VideoMain001"]) == 0
    allowed = capsys.readouterr().out
    assert "decision: ALLOW" in allowed and "by statement EventsOfOwnChannels" in allowed
    assert "events:   the same decision, per ARN, filters each event" in allowed
    assert main([*base, "arn:aws:ivs:us-west-2:123456789012:channel/ChatMain001"]) == 1
