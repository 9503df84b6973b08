from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.model.catalog import Catalog

REPO = Path(__file__).resolve().parents[2]

IVS_PROXY = str(Path(sys.executable).with_name("ivs-proxy"))


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
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
        env={"PATH": "/usr/bin:/bin", "AWS_REGION": "us-west-2"},
    )
    assert result.returncode == 2
    assert "regions.ivs" in result.stderr and "mars-north-1" in result.stderr
    assert "Traceback" not in result.stderr


def test_version() -> None:
    result = subprocess.run([IVS_PROXY, "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert result.stdout.startswith("ivs-proxy ") and "botocore" in result.stdout


def test_a_taken_port_is_a_runtime_failure_without_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
               "AWS_SECRET_ACCESS_KEY": "x", "AWS_SESSION_TOKEN": "y", "AWS_CONFIG_FILE": "/dev/null",
               "AWS_CREDENTIAL_EXPIRATION": "2099-01-01T00:00:00Z", "AWS_EC2_METADATA_DISABLED": "true"}
        result = subprocess.run(
            [IVS_PROXY, "serve", "--listen", f"127.0.0.1:{port}", "--admin-listen", "127.0.0.1:0"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["serve", "routes", "check-config", "whoami", "policy-check", "dev"])
def test_every_command_has_help_with_examples(command: str) -> None:
    result = subprocess.run([IVS_PROXY, command, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "examples:" in result.stdout and f"ivs-proxy {command}" in result.stdout
