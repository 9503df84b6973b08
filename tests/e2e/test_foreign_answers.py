"""An upstream answer that is not AWS's (an HTML error page from something in between, an
emulator's plain-text 404) reaches boto3 as a readable error: the upstream's status, what
was sent instead of an AWS answer, a short clean excerpt, `"source": "upstream"`."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.session import Session

from tests.support.examples import REGION
from tests.support.recording_upstream import RecordingUpstream

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>\n"
    b"<center><h1>502 Bad Gateway</h1></center>\x00\xe2\x80\x8b<hr><center>nginx</center>"
    + b"<p>padding</p>" * 500 + b"</body></html>"
)


def ivs_client(proxy_client: TestClient):  # type: ignore[no-untyped-def]
    return Session().create_client(
        "ivs", endpoint_url=str(proxy_client.make_url("/")), region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )


@pytest.mark.parametrize(
    ("status", "content_type", "body", "named", "excerpt"),
    [
        (502, "text/html; charset=utf-8", HTML_PAGE, "text/html", "502 Bad Gateway 502 Bad Gateway nginx padding"),
        (404, "text/plain", b"Not Found: ListChannels is not implemented", "text/plain",
         "Not Found: ListChannels is not implemented"),
        (403, None, b"Forbidden", "no Content-Type", "Forbidden"),
    ],
)
async def test_a_foreign_answer_is_a_readable_sdk_error(  # type: ignore[no-untyped-def]
    proxy_client: TestClient, upstream: RecordingUpstream, status, content_type, body, named, excerpt
) -> None:
    upstream.status, upstream.body = status, body
    # aiohttp labels a body it is given without a type; an empty value is "none".
    upstream.headers = {"Content-Type": content_type or ""}

    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(ivs_client(proxy_client).list_channels)

    error = caught.value.response
    message = error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert error["Error"]["Code"] == "UpstreamNotAwsException"
    assert f"HTTP {status} with {named}, not an AWS answer" in message
    assert excerpt in message
    assert "<" not in message and "\x00" not in message and "\u200b" not in message
    assert len(message) < 400


async def test_the_error_body_says_the_upstream_answered(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    upstream.status, upstream.body, upstream.headers = 500, HTML_PAGE, {"Content-Type": "text/html"}
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 500
    assert response.headers["x-ivs-proxy-error"] == "upstream_not_aws"
    document = json.loads(await response.read())
    assert document["source"] == "upstream"
    assert document["reason"] == "upstream_not_aws"


async def test_a_large_streamed_foreign_answer_is_replaced_too(
    proxy_client: TestClient, upstream: RecordingUpstream
) -> None:
    upstream.status, upstream.headers = 503, {"Content-Type": "text/html"}
    upstream.body = b"<h1>Service Unavailable</h1>" + b"x" * 200_000
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 503
    message = (await response.json())["message"]
    assert message.endswith(": Service Unavailable " + "x" * 180 + "…")


async def test_aws_json_answers_are_untouched(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    upstream.status, upstream.body = 404, b'{"message":"not here"}'
    upstream.headers = {"Content-Type": "application/json", "x-amzn-ErrorType": "ResourceNotFoundException"}
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={"Content-Type": "application/json"})
    assert await response.read() == upstream.body


async def test_json_labelled_otherwise_is_still_aws_shaped(proxy_client: TestClient, upstream: RecordingUpstream) -> None:
    # moto labels its JSON answers text/html; the body, not the label, decides.
    upstream.body, upstream.headers = b'{"channels": []}', {"Content-Type": "text/html; charset=utf-8"}
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 200
    assert await response.read() == upstream.body


async def test_an_xml_error_from_aws_s_front_end_is_aws_shaped(
    proxy_client: TestClient, upstream: RecordingUpstream
) -> None:
    upstream.status, upstream.headers = 403, {"Content-Type": "text/xml"}
    upstream.body = b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>not authorized</Message></Error></ErrorResponse>"
    response = await proxy_client.post("/ListChannels", data=b"{}", headers={"Content-Type": "application/json"})
    assert response.status == 403
    assert await response.read() == upstream.body
