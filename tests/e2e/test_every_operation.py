"""Every operation of the three models routes through the proxy: botocore's own serializer
builds the request, and the recording upstream checks method, path, signing name, region
and the signature itself."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from botocore.serialize import create_serializer

from proxy.model.catalog import SERVICE_MOUNTS, Catalog
from tests.support.examples import REGION, example_uri_and_query, example_value
from tests.support.recording_upstream import RecordingUpstream

CATALOG = Catalog.load()
SERIALIZER = create_serializer("rest-json", include_validation=True)


def serialized(operation_model):  # type: ignore[no-untyped-def]
    shape = operation_model.input_shape
    params = {**example_value(shape), **example_uri_and_query(shape)} if shape is not None else {}
    return SERIALIZER.serialize_to_request(params, operation_model)


@pytest.mark.parametrize(
    "operation", CATALOG.operations, ids=[f"{op.service.name}.{op.name}" for op in CATALOG.operations]
)
async def test_operation_is_routed_signed_and_forwarded(
    operation, proxy_client: TestClient, upstream: RecordingUpstream  # type: ignore[no-untyped-def]
) -> None:
    request = serialized(operation.model)
    path = request["url_path"]
    query = "&".join(
        f"{key}={value}" for key, values in request["query_string"].items()
        for value in (values if isinstance(values, list) else [values])
    )
    target = SERVICE_MOUNTS[operation.service.name] + path + (f"?{query}" if query else "")
    body = request["body"] if isinstance(request["body"], bytes) else request["body"].encode()
    headers = {k: v for k, v in request["headers"].items()}
    if body:
        headers.setdefault("Content-Type", "application/json")

    response = await proxy_client.request(request["method"], target, data=body, headers=headers)
    assert response.status == 200, await response.text()

    (received,) = upstream.received
    assert received.method == operation.method
    assert received.raw_path.split("?")[0] == path
    assert received.service == operation.service.signing_name
    assert received.region == REGION
    assert received.signature_valid
    assert received.body == body
