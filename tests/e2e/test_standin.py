"""The demo's upstream (tests/support/standin.py): moto answers the operations it
implements, the stand-in answers every other one from the model, and both hold the proxy
to a SigV4 check. The stand-in is demo and test code, never part of the image."""

from __future__ import annotations

import datetime
import json
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED, xform_name
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from botocore.model import OperationModel, Shape
from botocore.parsers import create_parser
from botocore.session import get_session

from tests.e2e.conftest import unsigned_client
from tests.support.examples import example_uri_and_query, example_value
from tests.support.moto import REGION, MotoServer, SessionCredentials
from tests.support.proxy_process import ProxyProcess
from tests.support.standin import MOTO_OPERATIONS, SERVICES, StandIn
from tests.support.standin_answers import LABEL_MEMBER, AnswerBuilder, string_fits

REPO = Path(__file__).resolve().parents[2]
SESSION = get_session()
OPERATIONS = [
    SESSION.get_service_model(service).operation_model(name)
    for service in SERVICES for name in SESSION.get_service_model(service).operation_names
]
IDS = [f"{op.service_model.service_name}.{op.name}" for op in OPERATIONS]
MOUNTS = {"ivs": "", "ivs-realtime": "/ivs-realtime", "ivschat": "/ivschat"}


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """This module's own moto: calling every operation leaves channels (some without a
    name) that other modules' listings must not see."""
    server = MotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def role_credentials(moto: MotoServer) -> SessionCredentials:
    return moto.role_credentials()


@pytest.fixture(scope="module")
def standin(moto: MotoServer, role_credentials: SessionCredentials) -> Iterator[StandIn]:
    server = StandIn(moto.url, {role_credentials.access_key: (role_credentials.secret_key, role_credentials.token)})
    server.start()
    yield server
    server.stop()


def example_params(operation: OperationModel) -> dict[str, Any]:
    shape = operation.input_shape
    return {**example_value(shape), **example_uri_and_query(shape)} if shape is not None else {}


def problems(shape: Shape, value: Any, path: str) -> list[str]:
    """Where `value` breaks `shape`: required members, lengths, ranges, enums, patterns."""
    found: list[str] = []
    kind, limits = shape.type_name, shape.metadata
    if kind == "structure":
        found += [f"{path}.{name}: required, missing" for name in shape.required_members if name not in value]
        for name, item in value.items():
            if name in shape.members:
                found += problems(shape.members[name], item, f"{path}.{name}")
    elif kind == "list":
        if not limits.get("min", 0) <= len(value) <= limits.get("max", 10**6):
            found.append(f"{path}: {len(value)} items")
        for index, item in enumerate(value):
            found += problems(shape.member, item, f"{path}[{index}]")
    elif kind == "map":
        for key, item in value.items():
            found += problems(shape.key, key, f"{path} key") + problems(shape.value, item, f"{path}[{key}]")
    elif kind == "string" and not string_fits(shape, value):
        found.append(f"{path}: {value!r} does not fit {shape.name} {limits}")
    elif kind in ("integer", "long", "float", "double") and not (
        limits.get("min", -1e18) <= value <= limits.get("max", 1e18)
    ):
        found.append(f"{path}: {value} outside {limits}")
    return found


@pytest.mark.parametrize("operation", OPERATIONS, ids=IDS)
def test_every_answer_fits_the_output_shape_and_the_sdk_parses_it(operation: OperationModel) -> None:
    status, headers, body = AnswerBuilder(operation, REGION, example_params(operation)).answer()
    assert status == operation.http.get("responseCode", 200)
    if operation.output_shape is None or not body:
        return
    answer = json.loads(body)
    assert answer[LABEL_MEMBER].startswith("answered by the ivs-proxy demo's local stand-in")
    assert problems(operation.output_shape, answer, operation.name) == []
    assert "nextToken" not in answer  # one page: a paginator stops
    parsed = create_parser("rest-json").parse({"status_code": status, "headers": headers, "body": body},
                                              operation.output_shape)
    assert "Error" not in parsed


def test_an_answer_echoes_what_the_request_named() -> None:
    stage_arn = "arn:aws:ivs:eu-west-1:123456789012:stage/AbCdEfGhIjKl"
    model = SESSION.get_service_model("ivs-realtime")
    _, _, body = AnswerBuilder(model.operation_model("GetStage"), "eu-west-1", {"arn": stage_arn}).answer()
    assert json.loads(body)["stage"]["arn"] == stage_arn
    _, _, body = AnswerBuilder(model.operation_model("CreateStage"), "eu-west-1", {"name": "demo"}).answer()
    stage = json.loads(body)["stage"]
    assert stage["name"] == "demo"
    assert stage["arn"].startswith("arn:aws:ivs:eu-west-1:123456789012:stage/")


def moto_implements(moto: MotoServer, operation: OperationModel) -> bool:
    """moto answers the operation as AWS would (a result or an AWS error), not with its
    HTML 404/500 page."""
    assert moto.admin is not None
    client = boto3.client(operation.service_model.service_name, endpoint_url=moto.url, region_name=REGION,
                          aws_access_key_id=moto.admin[0], aws_secret_access_key=moto.admin[1],
                          config=Config(retries={"max_attempts": 1}))
    try:
        getattr(client, xform_name(operation.name))(**example_params(operation))
    except ClientError as error:
        return "<html" not in str(error).lower()
    return True


def test_moto_implements_exactly_the_operations_the_standin_relays_to_it(moto: MotoServer) -> None:
    implemented = {
        (op.service_model.service_name, op.name) for op in OPERATIONS if moto_implements(moto, op)
    }
    relayed = {(service, name) for service, names in MOTO_OPERATIONS.items() for name in names}
    assert implemented == relayed
    assert {name for _, name in relayed} >= {"CreateChannel", "GetChannel", "ListChannels", "DeleteChannel"}


@pytest.mark.parametrize("operation", OPERATIONS, ids=IDS)
def test_every_operation_gets_an_aws_shaped_answer_through_the_demo_proxy(
    operation: OperationModel, demo_proxy: ProxyProcess, standin: StandIn
) -> None:
    service = operation.service_model.service_name
    client = unsigned_client(service, demo_proxy.url + MOUNTS[service])
    call = getattr(client, xform_name(operation.name))
    if standin.upstream_of(operation.name, service) == "stand-in":
        answer = call(**example_params(operation))
        assert answer["ResponseMetadata"]["RequestId"].startswith("stand-in-")
        return
    try:  # moto's: the example names resources that do not exist, or the role may not
        answer = call(**example_params(operation))
    except ClientError as error:
        answer = error.response
        modeled = {shape.name for shape in operation.error_shapes} | {"AccessDeniedException"}
        assert answer["Error"]["Code"] in modeled, str(error)
    assert not answer["ResponseMetadata"]["RequestId"].startswith("stand-in-")


def test_moto_refusing_the_role_reaches_the_sdk_as_ivs_writes_it(demo_proxy: ProxyProcess) -> None:
    ivs = unsigned_client("ivs", demo_proxy.url)
    with pytest.raises(ClientError) as refused:
        ivs.batch_get_channel(arns=["arn:aws:ivs:us-west-2:123456789012:channel/AbCdEfGhIjKl"])
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert str(refused.value).endswith("is not authorized to perform: ivs:BatchGetChannel")


# -- the stand-in's own SigV4 check, asked directly ----------------------------------------


def signed_request(url: str, credentials: Credentials, service: str, at: datetime.datetime) -> urllib.request.Request:
    """A POST of `{}` signed by botocore's SigV4 for `service` at time `at` (AWSRequest
    signing always uses the clock, so the steps are taken one by one)."""
    request = AWSRequest(method="POST", url=url, data=b"{}", headers={"Content-Type": "application/json"})
    timestamp = at.strftime("%Y%m%dT%H%M%SZ")
    request.context["timestamp"] = timestamp
    request.headers["X-Amz-Date"] = timestamp
    if credentials.token:
        request.headers["X-Amz-Security-Token"] = credentials.token
    auth = SigV4Auth(credentials, service, REGION)
    signature = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    scope = f"{credentials.access_key}/{auth.credential_scope(request)}"
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={signature}")
    return urllib.request.Request(url, data=b"{}", method="POST", headers=dict(request.headers.items()))


def answer_of(request: urllib.request.Request) -> tuple[int, str, dict[str, Any]]:
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("x-amzn-ErrorType", ""), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("x-amzn-ErrorType", ""), json.loads(error.read())


NOW = datetime.datetime.now(datetime.UTC)


@pytest.mark.parametrize(("case", "change", "service", "at", "expected"), [
    ("the proxy's own credentials", {}, "ivs", NOW, (200, "")),
    ("a wrong secret", {"secret_key": "wrong"}, "ivs", NOW, (403, "InvalidSignatureException")),
    ("an unknown key", {"access_key": "ASIAUNKNOWN000000000"}, "ivs", NOW, (403, "UnrecognizedClientException")),
    ("another session's token", {"token": "other"}, "ivs", NOW, (403, "UnrecognizedClientException")),
    ("ivschat's signing name", {}, "ivschat", NOW, (403, "InvalidSignatureException")),
    ("a date 20 minutes old", {}, "ivs", NOW - datetime.timedelta(minutes=20), (403, "InvalidSignatureException")),
])
def test_the_standin_checks_signatures_as_aws_does(
    case: str, change: dict[str, str], service: str, at: datetime.datetime, expected: tuple[int, str],
    standin: StandIn, role_credentials: SessionCredentials,
) -> None:
    fields = {"access_key": role_credentials.access_key, "secret_key": role_credentials.secret_key,
              "token": role_credentials.token, **change}
    request = signed_request(standin.urls["ivs-realtime"] + "/ListStages", Credentials(**fields), service, at)
    status, error_type, body = answer_of(request)
    assert (status, error_type) == expected, body
    assert ("stages" in body) == (status == 200)


def test_the_standin_refuses_an_unsigned_request(standin: StandIn) -> None:
    stages = boto3.client("ivs-realtime", endpoint_url=standin.urls["ivs-realtime"], region_name=REGION,
                          config=Config(signature_version=UNSIGNED))
    with pytest.raises(ClientError) as refused:
        stages.list_stages()
    assert refused.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"


def test_the_standin_is_not_in_the_image_or_the_wheel() -> None:
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    admitted = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    standin_files = {"tests/support/standin.py", "tests/support/standin_answers.py", "scripts/demo.py"}
    assert ignore[0] == "*"
    assert not {path for path in standin_files for entry in admitted if path == entry or path.startswith(entry + "/")}
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert packages["include"] == ["proxy*"]
