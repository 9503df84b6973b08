"""The proxy's own operations: a path prefix no IVS path can take, `ivs-proxy:` actions in
policies, and the gateway's authentication and policy applied to them over HTTP."""

from __future__ import annotations

import copy

import pytest
from aiohttp import web

from proxy.errors import ConfigError
from proxy.gateway.own_access import OWN_OPERATIONS, OWN_PATH_PREFIX, OwnOperation, known_actions
from proxy.model.catalog import SERVICE_MOUNTS, Catalog
from proxy.policy import PolicyDocument, PolicySet
from proxy.serve.own_routes import OwnRequest, json_object, json_response
from proxy.serve.server import create_data_app
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
from tests.support.inprocess import proxy_for

#: A stand-in own operation (its action is a real one, so policies may name it), echoing its caller.
ECHO = OwnOperation("MintPlaybackToken", "POST", OWN_PATH_PREFIX + "echo", "channel ARN")


def test_no_ivs_path_or_mount_can_take_the_own_prefix() -> None:
    catalog = Catalog.load()
    paths = [op.path_template for op in catalog.operations] + list(SERVICE_MOUNTS.values())
    assert len(paths) > 100
    assert not [p for p in paths if p.startswith(OWN_PATH_PREFIX.rstrip("/"))]
    assert all(op.path.startswith(OWN_PATH_PREFIX) for op in OWN_OPERATIONS)


def test_policies_may_name_own_actions_and_typos_are_refused() -> None:
    known = known_actions(op.iam_action for op in Catalog.load().operations)
    doc = PolicyDocument.from_config({"Statement": [{"Effect": "Allow", "Action": "ivs-proxy:Mint*Token",
                                                     "Resource": channel("*")}]}, "policy.callers.t")
    policies = PolicySet({"t": doc}, known)
    assert policies.evaluate("t", "ivs-proxy:MintPlaybackToken", [channel("abc")]).allowed
    assert not policies.evaluate("t", "ivs-proxy:SubscribeEvents", [channel("abc")]).allowed
    typo = PolicyDocument.from_config({"Statement": [{"Effect": "Allow", "Action": "ivs-proxy:MintPlaybakToken",
                                                      "Resource": "*"}]}, "policy.callers.t")
    with pytest.raises(ConfigError, match="did you mean ivs-proxy:MintPlaybackToken"):
        PolicySet({"t": typo}, known)


async def echo(request: web.Request, own: OwnRequest) -> web.StreamResponse:
    arn = json_object(own.body).get("channelArn")
    own.call.region = "us-west-2"
    return json_response({"caller": own.caller.name, "method": own.caller.method, "arn": arn})


def with_echo(proxy):  # type: ignore[no-untyped-def]
    return create_data_app(proxy.state, [(ECHO, authorized_echo(proxy))], proxy.own_access)


def authorized_echo(proxy):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request, own: OwnRequest) -> web.StreamResponse:
        arn = json_object(own.body)["channelArn"]
        proxy.own_access.authorize(own.caller, ECHO, [arn], "us-west-2")
        return await echo(request, own)
    return handler


async def test_sidecar_callers_are_the_app(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    proxy = proxy_for("http://127.0.0.1:9")
    client = await aiohttp_client(with_echo(proxy))
    answer = await client.post(ECHO.path, json={"channelArn": channel("abc")})
    assert answer.status == 200 and answer.headers["x-ivs-proxy-source"] == "ivs-proxy"
    assert await answer.json() == {"caller": "app", "method": "none", "arn": channel("abc")}
    refused = await client.post(ECHO.path, data=b"[1")
    assert refused.status == 400 and refused.headers["x-amzn-ErrorType"] == "ValidationException"
    assert (await refused.json())["message"].startswith("ivs-proxy refused the request: the body is not valid JSON")


async def test_gateway_authenticates_authorizes_and_audits(aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    policy = copy.deepcopy(POLICY)
    policy["video-team"]["Statement"].append({"Sid": "EchoOwn", "Effect": "Allow", "Action": "ivs-proxy:MintPlaybackToken",
                                              "Resource": channel("Video*")})
    with captured_logs() as logs:
        proxy = gateway_for("http://127.0.0.1:9", gateway_settings(policy={"callers": policy}))
        client = await aiohttp_client(with_echo(proxy))
        missing = await client.post(ECHO.path, json={"channelArn": channel("VideoMain001")})
        assert missing.status == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
        body = {"channelArn": channel("VideoMain001")}
        allowed = await client.post(ECHO.path, json=body, headers={"Authorization": f"Bearer {VIDEO.token}"})
        assert allowed.status == 200 and (await allowed.json())["caller"] == "video-team"
        denied = await client.post(ECHO.path, json=body, headers={"Authorization": f"Bearer {CHAT.token}"})
        assert denied.status == 403 and denied.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        # An SDK-style signature with an internal key, scoped to the signing name ivs-proxy.
        raw = b'{"channelArn": "%s"}' % channel("VideoMain001").encode()
        url = f"http://{client.host}:{client.port}{ECHO.path}"
        signed_headers = sign("POST", url, raw, VIDEO, service="ivs-proxy")
        signed = await client.post(ECHO.path, data=raw, headers=signed_headers)
        assert signed.status == 200 and (await signed.json())["method"] == "sigv4"
        replayed = await client.post(ECHO.path, data=raw, headers=signed_headers)  # the same signature again
        assert replayed.status == 401 and "already used" in (await replayed.json())["message"]
        wrong_scope = await client.post(ECHO.path, data=raw, headers=sign("POST", url, raw, VIDEO, service="ivs"))
        assert wrong_scope.status == 401 and wrong_scope.headers["x-amzn-ErrorType"] == "InvalidSignatureException"
    decisions = [(line["caller"], line["decision"]) for line in logs.audit() if line["event"] == "authorization"]
    assert decisions == [("video-team", "allow"), ("chat-team", "deny"), ("video-team", "allow")]
    access = [(line["service"], line["operation"], line["caller"], line["status"]) for line in logs.access()]
    assert ("ivs-proxy", ECHO.name, "video-team", 200) in access and ("ivs-proxy", ECHO.name, None, 401) in access
