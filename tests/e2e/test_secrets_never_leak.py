"""Known secret values go through the proxy at debug level; none may appear in any log line,
in the metrics, or in an error the proxy writes."""

from __future__ import annotations

import io
import json
import logging

from proxy.observe.logs import configure_logging
from tests.support.inprocess import TEST_CREDENTIALS, proxy_for

JSON_HEADERS = {"Content-Type": "application/json"}
CHANNEL_ARN = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"
STREAM_KEY = "sk_us-west-2_SecretStreamKeyValue0001"
METADATA = "secret-metadata-payload-0002"
PARTICIPANT_TOKEN = "eyJhbGciOiJLTVMiLCJ0eXAiOiJKV1QifQ.secret-participant-token-0003"
CALLER_BEARER = "caller-bearer-token-0004"
CALLER_SIGNATURE = "0f" * 32


async def test_no_secret_in_logs_metrics_or_errors(aiohttp_client, recording) -> None:  # type: ignore[no-untyped-def]
    upstream, server = recording
    stream = io.StringIO()
    stdlib = io.StringIO()
    handler = logging.StreamHandler(stdlib)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    configure_logging("debug", "json", stream)
    answers: list[bytes] = []
    try:
        proxy = proxy_for(str(server.make_url("")).rstrip("/"))
        client = await aiohttp_client(proxy.data_app)
        admin = await aiohttp_client(proxy.admin_app)

        upstream.body = json.dumps({"streamKey": {"arn": CHANNEL_ARN, "value": STREAM_KEY}}).encode()
        response = await client.post("/CreateStreamKey", data=json.dumps({"channelArn": CHANNEL_ARN}), headers=JSON_HEADERS)
        assert STREAM_KEY in await response.text()  # the caller gets it; nobody else does

        upstream.body = b""
        upstream.status = 204
        response = await client.post(
            "/PutMetadata", data=json.dumps({"channelArn": CHANNEL_ARN, "metadata": METADATA}), headers=JSON_HEADERS
        )
        assert response.status == 204

        upstream.status = 200
        upstream.body = json.dumps({"participantToken": {"token": PARTICIPANT_TOKEN}}).encode()
        stage = CHANNEL_ARN.replace("channel", "stage")
        response = await client.post(
            "/ivs-realtime/CreateParticipantToken", data=json.dumps({"stageArn": stage}), headers=JSON_HEADERS
        )
        assert response.status == 200

        refusals = [
            ("/PutMetadata", {"channelArn": CHANNEL_ARN, "metadata": METADATA, "extra": METADATA}, {}),
            ("/PutMetadata", {"channelArn": CHANNEL_ARN, "metadata": [METADATA]}, {}),
            ("/ListChannels", {}, {"Authorization": f"Bearer {CALLER_BEARER}"}),
            ("/ListChannels", {}, {"Authorization": f"AWS4-HMAC-SHA256 Credential=AKIA/x, Signature={CALLER_SIGNATURE}"}),
            ("/ListChannels", {}, {"X-Amz-Security-Token": CALLER_BEARER}),
        ]
        for path, body, headers in refusals:
            response = await client.post(path, data=json.dumps(body), headers={**JSON_HEADERS, **headers})
            assert response.status == 400
            answers.append(await response.read())
        scrape = await (await admin.get("/metrics")).text()
    finally:
        configure_logging()
        root.removeHandler(handler)
        root.setLevel(previous_level)

    our_signatures = [r.headers["authorization"].rsplit("Signature=", 1)[1] for r in upstream.received]
    assert len(our_signatures) == 3
    secrets = [
        TEST_CREDENTIALS.secret_key,
        TEST_CREDENTIALS.token,
        STREAM_KEY,
        METADATA,
        PARTICIPANT_TOKEN,
        CALLER_BEARER,
        CALLER_SIGNATURE,
        *our_signatures,
    ]
    logged = stream.getvalue() + stdlib.getvalue()
    assert logged.count('"event": "request"') == 3 + len(refusals)
    for secret in secrets:
        assert secret not in logged
        assert secret not in scrape
        for answer in answers:
            assert secret.encode() not in answer


async def test_no_minted_token_signature_or_key_in_logs_metrics_or_errors(aiohttp_client, aiohttp_server,
                                                                           tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    from tests.support.tokens import PLAYBACK_KEY_ARN, PUBLIC_KEY_ARN, IvsLookups, key_files

    lookups = IvsLookups(TEST_CREDENTIALS.secret_key)
    server = await aiohttp_server(lookups.app())
    playback, participant = key_files(tmp_path, "playback"), key_files(tmp_path, "participant")
    lookups.public_keys[PUBLIC_KEY_ARN] = participant.public_pem
    tokens = {"sidecar_minting": True, "keys": [
        {"arn": PLAYBACK_KEY_ARN, "private_key_file": str(playback.private)},
        {"arn": PUBLIC_KEY_ARN, "private_key_file": str(participant.private)}]}
    stream, stdlib = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(stdlib)
    root = logging.getLogger()
    root.addHandler(handler)
    previous_level = root.level
    root.setLevel(logging.DEBUG)
    configure_logging("debug", "json", stream)
    minted: list[str] = []
    answers: list[bytes] = []
    try:
        proxy = proxy_for(str(server.make_url("")).rstrip("/"), {"tokens": tokens})
        client = await aiohttp_client(proxy.data_app)
        admin = await aiohttp_client(proxy.admin_app)
        stage = CHANNEL_ARN.replace("channel", "stage")
        for path, body in (("/_ivs-proxy/tokens/playback", {"channelArn": CHANNEL_ARN, "viewerId": "v"}),
                           ("/_ivs-proxy/tokens/participant", {"stageArn": stage, "userId": "u"})):
            answer = await client.post(path, json=body)
            assert answer.status == 200
            minted.append((await answer.json())["token"])
        for path, body in (("/_ivs-proxy/tokens/playback", {"channelArn": CHANNEL_ARN, "viewerId": "v" * 41}),
                           ("/_ivs-proxy/tokens/participant", {"stageArn": stage, "attributes": {"k": "v" * 2000}}),
                           ("/_ivs-proxy/tokens/playback", {"channelArn": CHANNEL_ARN.replace("123456789012", "1")})):
            refused = await client.post(path, json=body)
            assert refused.status == 400
            answers.append(await refused.read())
        proxy.tokens.reload_keys()  # logs the reload, never the keys
        scrape = await (await admin.get("/metrics")).text()
    finally:
        configure_logging()
        root.removeHandler(handler)
        root.setLevel(previous_level)

    key_lines = [line for files in (playback, participant) for line in files.private.read_text().splitlines()
                 if "-----" not in line]
    scalars = []
    for files in (playback, participant):
        key = serialization.load_pem_private_key(files.private.read_bytes(), None)
        scalars.append(format(key.private_numbers().private_value, "x"))  # type: ignore[union-attr]
    secrets = [*minted, *(token.rsplit(".", 1)[1] for token in minted), *key_lines, *scalars]
    logged = stream.getvalue() + stdlib.getvalue()
    assert '"event": "token_minted"' in logged and "token_keys_reloaded" in logged
    for secret in secrets:
        assert secret not in logged
        assert secret not in scrape
        for answer in answers:
            assert secret.encode() not in answer
