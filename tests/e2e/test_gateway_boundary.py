"""The boundary: whatever fails authentication or policy reaches nothing upstream, and
leaves exactly one audit line; rate limits answer 429 with Retry-After."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from proxy.aws.credentials import utc_now
from tests.support.gateway import (
    CHAT,
    POLICY,
    VIDEO,
    captured_logs,
    channel,
    gateway_for,
    gateway_settings,
    sign,
)

OWN = channel("VideoMain001")
INTERN_TOKEN = "intern-token-0123456789abcdef"


def body(**members: Any) -> bytes:
    return json.dumps(members).encode()


PUT = body(channelArn=OWN, metadata="m")


async def test_every_refusal_forwards_nothing_and_is_audited_once(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    upstream_url = str(upstream_server.make_url("")).rstrip("/")
    settings = gateway_settings()
    settings["auth"]["bearer"]["tokens"]["intern"] = [hashlib.sha256(INTERN_TOKEN.encode()).hexdigest()]
    registry = CollectorRegistry()
    client: TestClient = await aiohttp_client(gateway_for(upstream_url, settings, registry=registry).data_app)
    stale: TestClient = await aiohttp_client(gateway_for(
        upstream_url, settings, clock=lambda: utc_now() + datetime.timedelta(minutes=6)).data_app)

    def url(path: str, on: TestClient = client) -> str:
        return str(on.make_url(path))

    signed_put = sign("POST", url("/PutMetadata"), PUT, VIDEO)
    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    cases: list[tuple[TestClient, str, bytes, dict[str, str], int, tuple[str, str, str]]] = [
        # (gateway, path, body, headers, status, (audit event, decision, reason))
        (client, "/PutMetadata", PUT, {"Content-Type": "application/json"}, 401,
         ("authentication", "deny", "missing")),
        (client, "/PutMetadata", PUT, bearer("not-a-known-token"), 401, ("authentication", "deny", "unknown_token")),
        (client, "/PutMetadata", PUT, bearer("spaces are not a token"), 401, ("authentication", "deny", "malformed")),
        (client, "/PutMetadata", PUT, {"Authorization": "Basic dmlkZW86cHc=", "Content-Type": "application/json"},
         401, ("authentication", "deny", "scheme")),
        (client, "/PutMetadata", PUT, sign("POST", url("/PutMetadata"), PUT, VIDEO, secret="wrong-secret-000000000"),
         401, ("authentication", "deny", "bad_signature")),
        (client, "/PutMetadata", body(channelArn=OWN, metadata="tampered"), signed_put, 401,
         ("authentication", "deny", "bad_signature")),
        (client, "/PutMetadata", PUT, {**signed_put, "X-Amz-Security-Token": "leftover"}, 401,
         ("authentication", "deny", "session_token")),
        (client, "/PutMetadata", PUT, sign("POST", url("/PutMetadata"), PUT, VIDEO, service="ivschat"), 401,
         ("authentication", "deny", "scope")),
        (stale, "/PutMetadata", PUT, sign("POST", url("/PutMetadata", stale), PUT, VIDEO), 401,
         ("authentication", "deny", "stale")),
        (client, "/PutMetadata", PUT, signed_put, 200, ("authorization", "allow", "allowed")),
        (client, "/PutMetadata", PUT, signed_put, 401, ("authentication", "deny", "replayed")),
        (client, "/GetChannel", body(arn=OWN), sign("POST", url("/GetChannel"), body(arn=OWN), VIDEO), 403,
         ("authorization", "deny", "no_allow")),
        (client, "/PutMetadata", PUT, bearer(CHAT.token), 403, ("authorization", "deny", "explicit_deny")),
        (client, "/BatchGetChannel", body(arns=[channel("ChatLobby001"), OWN]), bearer(CHAT.token), 403,
         ("authorization", "deny", "explicit_deny")),
        (client, "/ListChannels", b"{}", bearer(VIDEO.token), 403, ("authorization", "deny", "no_allow")),
        (client, "/ListChannels", b"{}", bearer(INTERN_TOKEN), 403, ("authorization", "deny", "no_policy")),
    ]
    with captured_logs() as logs:
        for gateway, path, data, headers, status, _ in cases:
            response = await gateway.post(path, data=data, headers=headers)
            assert response.status == status, (path, headers, await response.text())
            if status != 200:
                answer = await response.json()
                assert answer["source"] == "ivs-proxy" and answer["message"].startswith("ivs-proxy refused")
    # the one request that passed everything is the only one that left the gateway
    assert [(r.raw_path, json.loads(r.body)) for r in upstream.received] == [("/PutMetadata", json.loads(PUT))]
    audit = logs.audit()
    assert [(a["event"], a["decision"], a["reason"]) for a in audit] == [case[-1] for case in cases]
    access = logs.access()
    assert [a["request_id"] for a in audit] == [a["request_id"] for a in access]
    assert {a["logger"] for a in audit} == {"ivs_proxy.audit"} and not any("logger" in a for a in access)
    denied = [a for a in audit if a["event"] == "authorization" and a["decision"] == "deny"]
    assert denied[1]["statements"] == ["NeverVideoChannels"] and denied[2]["resources"] == [channel("ChatLobby001"), OWN]
    everything = logs.stream.getvalue()
    for secret in (VIDEO.secret, VIDEO.token, CHAT.token, INTERN_TOKEN, signed_put["Authorization"][-64:]):
        assert secret not in everything
    assert registry.get_sample_value("ivs_proxy_authentication_failures_total",
                                     {"method": "sigv4", "reason": "bad_signature"}) == 2
    assert registry.get_sample_value("ivs_proxy_authorization_decisions_total",
                                     {"caller": "chat-team", "decision": "deny"}) == 2
    assert registry.get_sample_value("ivs_proxy_rejected_total", {"reason": "unauthenticated"}) == 9
    assert registry.get_sample_value("ivs_proxy_rejected_total", {"reason": "access_denied"}) == 5


async def test_rate_limits_answer_429_with_retry_after(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    settings = gateway_settings(rate_limits={"rules": [
        {"action": "ivs:List*", "rate": 0.5, "burst": 2, "callers": ["chat-team"]},
        {"action": "ivs:PutMetadata", "rate": 2, "burst": 1, "per": "resource"},
    ]})
    registry = CollectorRegistry()
    client: TestClient = await aiohttp_client(
        gateway_for(str(upstream_server.make_url("")).rstrip("/"), settings, registry=registry).data_app)
    headers = {"Authorization": f"Bearer {CHAT.token}", "Content-Type": "application/json"}
    statuses = [(await client.post("/ListChannels", data=b"{}", headers=headers)).status for _ in range(2)]
    throttled = await client.post("/ListChannels", data=b"{}", headers=headers)
    assert statuses == [200, 200] and throttled.status == 429
    assert throttled.headers["x-amzn-ErrorType"] == "ThrottlingException"
    assert throttled.headers["Retry-After"] == "2"
    assert "'chat-team'" in (await throttled.json())["message"]
    assert registry.get_sample_value("ivs_proxy_throttled_total", {"caller": "chat-team"}) == 1

    # PutMetadata: 1 token per channel. A signature refused with 429 is not spent: the
    # SDK's retry (same second, same signature) goes through once the bucket refills.
    url = str(client.make_url("/PutMetadata"))
    first = sign("POST", url, PUT, VIDEO)
    assert (await client.post("/PutMetadata", data=PUT, headers=first)).status == 200
    second_body = body(channelArn=OWN, metadata="second")
    second = sign("POST", url, second_body, VIDEO)
    assert (await client.post("/PutMetadata", data=second_body, headers=second)).status == 429
    other_channel = body(channelArn=channel("VideoBackup01"), metadata="m")
    assert (await client.post("/PutMetadata", data=other_channel,
                              headers=sign("POST", url, other_channel, VIDEO))).status == 200
    await asyncio.sleep(0.55)  # one token per 0.5 s
    assert (await client.post("/PutMetadata", data=second_body, headers=second)).status == 200
    assert (await client.post("/PutMetadata", data=second_body, headers=second)).status == 401
    assert len(upstream.received) == 2 + 3


async def test_sidecar_mode_can_narrow_its_app_with_the_same_policy(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, upstream_server = recording
    narrow = {"policy": {"callers": {"app": POLICY["video-team"]}}}
    client: TestClient = await aiohttp_client(
        gateway_for(str(upstream_server.make_url("")).rstrip("/"), narrow).data_app)
    json_headers = {"Content-Type": "application/json"}
    assert (await client.post("/PutMetadata", data=PUT, headers=json_headers)).status == 200
    denied = await client.post("/ListChannels", data=b"{}", headers=json_headers)
    assert denied.status == 403 and "'app'" in (await denied.json())["message"]
    assert len(upstream.received) == 1
