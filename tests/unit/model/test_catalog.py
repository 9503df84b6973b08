from __future__ import annotations

import botocore.loaders
import pytest

from proxy.errors import MethodNotAllowed, RequestInvalid, UnknownOperation
from proxy.model.catalog import SERVICE_MOUNTS, Catalog, parse_query, render_query

ARN = "arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"
ENCODED_ARN = "arn%3Aaws%3Aivs%3Aus-west-2%3A123456789012%3Achannel%2FAbCdEfGhIjKl"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def test_every_model_operation_is_in_the_catalog(catalog: Catalog) -> None:
    loader = botocore.loaders.create_loader()
    for service in SERVICE_MOUNTS:
        names = set(loader.load_service_model(service, "service-2")["operations"])
        assert names == {op.name for op in catalog.operations if op.service.name == service}
        assert len(names) > 10


def test_every_operation_matches_its_own_path_at_its_mount(catalog: Catalog) -> None:
    for op in catalog.operations:
        path = op.path_template.replace("{resourceArn}", ENCODED_ARN)
        mounts = [SERVICE_MOUNTS[op.service.name]] + ([""] if op.service.name == "ivs" else [])
        for mount in mounts:
            assert catalog.match(op.method, mount + path).operation is op


def test_signing_names_come_from_the_models(catalog: Catalog) -> None:
    assert catalog.services["ivs"].signing_name == "ivs"
    assert catalog.services["ivs-realtime"].signing_name == "ivs"
    assert catalog.services["ivschat"].signing_name == "ivschat"
    assert catalog.services["ivs-realtime"].service_id == "IVS RealTime"


def test_path_parameters_are_decoded_and_re_encoded(catalog: Catalog) -> None:
    match = catalog.match("GET", f"/ivschat/tags/{ENCODED_ARN}")
    assert match.operation.name == "ListTagsForResource"
    assert match.operation.service.name == "ivschat"
    assert match.uri_params == {"resourceArn": ARN}
    assert match.operation.render_path(match.uri_params) == f"/tags/{ENCODED_ARN}"


def test_lower_case_percent_escapes_are_normalised_for_the_wire(catalog: Catalog) -> None:
    match = catalog.match("GET", "/tags/" + ENCODED_ARN.replace("%3A", "%3a").replace("%2F", "%2f"))
    assert match.operation.render_path(match.uri_params) == f"/tags/{ENCODED_ARN}"


def test_untag_query_keeps_every_key(catalog: Catalog) -> None:
    match = catalog.match("DELETE", f"/tags/{ENCODED_ARN}", "tagKeys=team&tagKeys=cost%20center&tagKeys=a%2Bb")
    assert match.operation.name == "UntagResource"
    assert match.query_params == {"tagKeys": ["team", "cost center", "a+b"]}
    assert render_query(match.query_params) == "tagKeys=team&tagKeys=cost%20center&tagKeys=a%2Bb"


def test_plus_in_a_query_is_a_plus_not_a_space() -> None:
    assert parse_query("tagKeys=a+b") == {"tagKeys": ["a+b"]}


@pytest.mark.parametrize(
    ("method", "path", "error", "hint"),
    [
        ("POST", "/createchannel", UnknownOperation, "did you mean /CreateChannel"),
        ("POST", "/ivs-realtime/createstage", UnknownOperation, "did you mean /CreateStage"),
        ("POST", "/CreateRoom", UnknownOperation, "/ivschat/CreateRoom"),
        ("POST", "/Tags/" + ENCODED_ARN, UnknownOperation, "did you mean /tags/{resourceArn}"),
        ("GET", "/CreateChannel", MethodNotAllowed, "use POST"),
        ("PATCH", "/tags/" + ENCODED_ARN, MethodNotAllowed, "DELETE, GET, POST"),
        ("POST", "/nothing", UnknownOperation, "ivs-proxy routes"),
        ("GET", "/tags/", UnknownOperation, ""),
    ],
)
def test_misses_explain_themselves(catalog: Catalog, method: str, path: str, error: type, hint: str) -> None:
    with pytest.raises(error) as raised:
        catalog.match(method, path)
    assert hint in raised.value.message


def test_invalid_percent_encoding_is_a_client_error(catalog: Catalog) -> None:
    with pytest.raises(RequestInvalid):
        catalog.match("GET", "/tags/%ff%fe")
    with pytest.raises(RequestInvalid):
        catalog.match("DELETE", f"/tags/{ENCODED_ARN}", "tagKeys=%ff")


def test_iam_actions_use_the_signing_name(catalog: Catalog) -> None:
    assert catalog.match("POST", "/ivs-realtime/CreateStage").operation.iam_action == "ivs:CreateStage"
    assert catalog.match("POST", "/ivschat/CreateRoom").operation.iam_action == "ivschat:CreateRoom"
