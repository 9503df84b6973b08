"""Metrics, access logs and readiness, read the way an operator reads them."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import yaml
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy.observe.logs import configure_logging
from tests.support.inprocess import proxy_for
from tests.support.net import free_port

JSON_HEADERS = {"Content-Type": "application/json"}
CHANNEL_ARN = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"
MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def families(exposition: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(exposition)}


async def scrape(admin: TestClient) -> str:
    response = await admin.get("/metrics")
    assert response.status == 200
    return await response.text()


async def scripted_mix(aiohttp_client, recording):  # type: ignore[no-untyped-def]
    """3 successes, 1 AWS 404, 2 refusals (unknown path, bad header), 1 unreachable upstream."""
    upstream, server = recording
    proxy = proxy_for(str(server.make_url("")).rstrip("/"))
    client = await aiohttp_client(proxy.data_app)
    admin = await aiohttp_client(proxy.admin_app)
    for _ in range(3):
        assert (await client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)).status == 200
    upstream.status = 404
    response = await client.post("/GetChannel", data=json.dumps({"arn": CHANNEL_ARN}), headers=JSON_HEADERS)
    assert response.status == 404
    assert (await client.post("/listchannels", data=b"{}", headers=JSON_HEADERS)).status == 404
    assert (await client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, "Accept": "text/html"})).status == 406

    broken = proxy_for(f"http://127.0.0.1:{free_port()}", registry=None)
    broken_client = await aiohttp_client(broken.data_app)
    assert (await broken_client.post("/ListChannels", data=b"{}", headers=JSON_HEADERS)).status == 502
    broken_admin = await aiohttp_client(broken.admin_app)
    return admin, broken_admin


async def test_metrics_count_exactly_what_happened(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    admin, broken_admin = await scripted_mix(aiohttp_client, recording)
    got = samples(await scrape(admin))

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    assert value("ivs_proxy_requests_total", service="ivs", operation="ListChannels", region="us-west-2",
                 code="200") == 3
    assert value("ivs_proxy_requests_total", service="ivs", operation="GetChannel", region="us-west-2",
                 code="404") == 1
    # refused before a region was chosen
    assert value("ivs_proxy_requests_total", service="unknown", operation="unknown", region="none", code="404") == 1
    assert value("ivs_proxy_requests_total", service="ivs", operation="ListChannels", region="none", code="406") == 1
    assert value("ivs_proxy_rejected_total", reason="unknown_operation") == 1
    assert value("ivs_proxy_rejected_total", reason="header") == 1
    assert sum(v for (n, _), v in got.items() if n == "ivs_proxy_rejected_total") == 2
    assert value("ivs_proxy_request_duration_seconds_count", service="ivs", operation="ListChannels") == 4
    assert value("ivs_proxy_upstream_duration_seconds_count", service="ivs", operation="ListChannels",
                 region="us-west-2") == 3
    # Refused before reaching AWS: the unknown path leaves no (empty) upstream series behind.
    assert {dict(labels).get("operation") for name, labels in got if name.startswith("ivs_proxy_upstream_duration")} \
        == {"ListChannels", "GetChannel"}
    assert value("ivs_proxy_signing_duration_seconds_count") == 4
    assert value("ivs_proxy_inflight_requests") == 0
    assert value("ivs_proxy_credentials_expiry_timestamp_seconds") > 1.7e9
    assert value("ivs_proxy_credential_refresh_total", result="success") == 1
    assert not [k for k in got if k[0] == "ivs_proxy_upstream_errors_total"]

    broken = samples(await scrape(broken_admin))
    assert broken[("ivs_proxy_upstream_errors_total", (("kind", "connect"),))] == 1
    assert broken[("ivs_proxy_requests_total", (("code", "502"), ("operation", "ListChannels"), ("region", "us-west-2"),
                                                ("service", "ivs")))] == 1


async def test_openmetrics_when_the_scraper_asks(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for(str(recording[1].make_url("")).rstrip("/"))
    admin = await aiohttp_client(proxy.admin_app)
    response = await admin.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).rstrip().endswith("# EOF")


async def test_request_id_is_kept_when_sane_and_replaced_otherwise(proxy_client: TestClient) -> None:
    kept = await proxy_client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, "X-Request-Id": "abc-123"})
    assert kept.headers["X-Request-Id"] == "abc-123"
    replaced = await proxy_client.post(
        "/ListChannels", data=b"{}", headers={**JSON_HEADERS, "X-Request-Id": "<script>" + "x" * 200}
    )
    assert re.fullmatch(r"[0-9a-f]{32}", replaced.headers["X-Request-Id"])
    refused = await proxy_client.post("/nope", data=b"{}", headers=JSON_HEADERS)
    assert re.fullmatch(r"[0-9a-f]{32}", refused.headers["X-Request-Id"])


async def test_one_access_line_per_request_with_its_facts(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging("info", "json", stream)
    try:
        upstream, server = recording
        upstream.headers = {"Content-Type": "application/json", "x-amzn-RequestId": "aws-req-1"}
        client = await aiohttp_client(proxy_for(str(server.make_url("")).rstrip("/")).data_app)
        await client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, "X-Request-Id": "req-1"})
        await client.post("/ListChannels", data=b"{}", headers={**JSON_HEADERS, "Accept-Encoding": "br, identity;q=0"})
    finally:
        configure_logging()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert len(access) == 2
    ok, refused = access
    assert ok["request_id"] == "req-1" and ok["status"] == 200 and ok["upstream_status"] == 200
    assert ok["amzn_request_id"] == "aws-req-1"
    assert (ok["service"], ok["operation"], ok["region"]) == ("ivs", "ListChannels", "us-west-2")
    assert ok["upstream_ms"] > 0 and ok["signing_ms"] > 0 and ok["duration_ms"] >= ok["upstream_ms"]
    assert ok["bytes_in"] == 2 and ok["bytes_out"] == 2
    assert refused["status"] == 406 and refused["refused"] == "header"
    assert "upstream_status" not in refused


async def test_readiness_turns_on_draining(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for(str(recording[1].make_url("")).rstrip("/"))
    await aiohttp_client(proxy.data_app)  # starts the credential refresh
    admin = await aiohttp_client(proxy.admin_app)
    assert (await admin.get("/readyz")).status == 200
    proxy.state.draining = True
    response = await admin.get("/readyz")
    assert response.status == 503
    assert (await response.json())["reason"] == "draining"
    health = await admin.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"


async def test_alert_rules_and_dashboard_reference_only_real_metrics(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    admin, _ = await scripted_mix(aiohttp_client, recording)
    live = families(await scrape(admin))
    rules = yaml.safe_load((MONITORING / "alerts.yaml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(expressions) >= 5
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    referenced = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        for expr in expressions
        for name in re.findall(r"\bivs_proxy_[a-z_]+", expr)
    }
    assert referenced, "the monitoring kit references no metric"
    assert referenced <= live, referenced - live
