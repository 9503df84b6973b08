"""Output members the model binds to response headers reach the SDK: for every operation
whose output shape has `"location": "header"` members, the recording upstream answers
those headers and boto3, through the proxy, parses every one of them."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient
from botocore import UNSIGNED, xform_name
from botocore.config import Config
from botocore.session import Session

from proxy.model.catalog import SERVICE_MOUNTS, Catalog
from tests.support.examples import REGION, example_uri_and_query, example_value
from tests.support.recording_upstream import RecordingUpstream

CATALOG = Catalog.load()



def header_members(operation) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Member name -> header name, read from the model here rather than from the proxy."""
    shape = operation.model.output_shape
    members = shape.members if shape is not None else {}
    return {name: m.serialization["name"] for name, m in members.items() if m.serialization.get("location") == "header"}


HEADER_BOUND = [op for op in CATALOG.operations if header_members(op)]


def test_the_models_do_bind_output_members_to_headers() -> None:
    # If a botocore update dropped them all, the test below would pass vacuously.
    names = {(op.service.name, op.name) for op in HEADER_BOUND}
    assert ("ivs-realtime", "StartParticipantReplication") in names
    assert ("ivs", "BatchGetChannel") in names


@pytest.mark.parametrize("operation", HEADER_BOUND, ids=[f"{op.service.name}.{op.name}" for op in HEADER_BOUND])
async def test_every_header_bound_member_is_parsed_by_the_sdk(
    operation, proxy_client: TestClient, upstream: RecordingUpstream  # type: ignore[no-untyped-def]
) -> None:
    bound = header_members(operation)
    sent = {wire: f"value-of-{name}" for name, wire in bound.items()}
    upstream.headers = {"Content-Type": "application/json", **sent}

    shape = operation.model.input_shape
    params = {**example_value(shape), **example_uri_and_query(shape)} if shape is not None else {}
    client = Session().create_client(
        operation.service.name,
        endpoint_url=str(proxy_client.make_url(SERVICE_MOUNTS[operation.service.name])),
        region_name=REGION,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )
    # boto3 blocks; the proxy and the upstream run on this loop.
    answer = await asyncio.to_thread(getattr(client, xform_name(operation.name)), **params)

    assert len(upstream.received) == 1
    assert {name: answer.get(name) for name in bound} == {name: f"value-of-{name}" for name in bound}
