"""`make demo DEMO_ARGS=--once` (scripts/demo.py) as a newcomer runs it: every sample call
of the three services behaves as expected, each line says who answered, the refusals read
as the SDK's messages, and the proxy's log goes to the file the demo names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.standin import MOTO_OPERATIONS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(REPO / "scripts" / "demo.py"), "--once"], capture_output=True,
                          text=True, timeout=300, check=False)


def sample_lines(output: str) -> list[list[str]]:
    """Each sample's line: outcome, service, then the rest."""
    return [line.split(None, 2) for line in output.splitlines() if re.match(r"  (ok |BAD|-- ) ", line)]


def test_the_demo_exits_0_with_every_sample_as_expected(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    lines = sample_lines(demo.stdout)
    assert [line for line in lines if line[0] != "ok"] == []
    assert {line[1] for line in lines} == {"ivs", "ivs-realtime", "ivschat"}
    assert re.search(r"^demo: all \d+ sample calls behaved as expected$", demo.stdout, re.MULTILINE)


def test_the_demo_says_who_serves_and_who_answered_each_call(demo: subprocess.CompletedProcess[str]) -> None:
    assert f"serves ivs {', '.join(sorted(MOTO_OPERATIONS['ivs']))}" in demo.stdout
    assert "a local stand-in (tests/support/standin.py), not AWS and not moto" in demo.stdout
    answered = {service: set() for service in ("ivs", "ivs-realtime", "ivschat")}
    for line in sample_lines(demo.stdout):
        answered[line[1]] |= {who for who in ("moto", "stand-in", "the proxy") if f" {who} " in f" {line[2]} "}
    assert answered == {"ivs": {"moto", "stand-in", "the proxy"}, "ivs-realtime": {"stand-in"}, "ivschat": {"stand-in"}}


def test_refusals_read_as_the_sdks_messages(demo: subprocess.CompletedProcess[str]) -> None:
    assert ("An error occurred (AccessDeniedException) when calling the BatchGetChannel operation: "
            "User: arn:aws:sts::123456789012:assumed-role/ivs-proxy/ivs-proxy-demo is not authorized") in demo.stdout
    assert "ivs-proxy refused the request: `latencyMode` must be one of" in demo.stdout
    assert "<?xml" not in demo.stdout


def test_the_proxy_log_is_in_the_file_the_demo_names(demo: subprocess.CompletedProcess[str]) -> None:
    assert not [line for line in demo.stdout.splitlines() if line.startswith("{")]
    (path,) = re.findall(r"its log \(one JSON object a line\): (\S+)", demo.stdout)
    events = [json.loads(line)["event"] for line in Path(path).read_text().splitlines()]
    assert events.count("request") >= 18
