"""Pipeline plumbing that the end-to-end tests exercise only indirectly."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import botocore
import pytest

from proxy.aws.regions import is_plausible_region
from proxy.aws.upstream import Upstream
from proxy.config import UpstreamConfig
from proxy.errors import RequestInvalid
from proxy.model.catalog import SERVICE_MOUNTS, Catalog
from proxy.pipeline import Exchange, IncomingRequest, Pipeline, split_region_prefix


def test_with_body_keeps_every_other_field() -> None:
    # Every field set to a value other than its default, so a field that with_body() forgot
    # would show up as a difference from dataclasses.replace().
    head = IncomingRequest("POST", "/PutMetadata", "a=1", (("content-type", "application/json"),), True)
    assert {f.name for f in dataclasses.fields(head)} == {"method", "path", "query", "headers", "has_body", "body"}
    assert head.with_body(b"{}") == dataclasses.replace(head, body=b"{}")
    assert head.with_body(b"{}").body == b"{}" and head.body == b""


def test_a_region_prefix_is_split_off_the_path() -> None:
    assert split_region_prefix("/eu-west-1/ivs-realtime/CreateStage") == ("eu-west-1", "/ivs-realtime/CreateStage")
    assert split_region_prefix("/eu-west-1/CreateChannel") == ("eu-west-1", "/CreateChannel")
    assert split_region_prefix("/eu-west-1") == ("eu-west-1", "/")
    assert split_region_prefix("/ivs-realtime/CreateStage") == (None, "/ivs-realtime/CreateStage")
    assert split_region_prefix("/CreateChannel") == (None, "/CreateChannel")


def test_no_mount_and_no_operation_path_starts_with_a_region_shaped_segment() -> None:
    # What makes the region prefix unambiguous: checked over every operation of every model.
    catalog = Catalog.load()
    firsts = {op.path_template.split("?", 1)[0].lstrip("/").split("/", 1)[0] for op in catalog.operations}
    firsts |= {mount.strip("/") for mount in SERVICE_MOUNTS.values()}
    assert len(catalog.operations) > 100 and "CreateChannel" in firsts and "tags" in firsts
    assert not [first for first in firsts if is_plausible_region(first)]
    # botocore's own region pattern (endpoints.json's regionRegex) agrees on every real region
    for partition in json.loads(pathlib.Path(botocore.__file__).with_name("data").joinpath("endpoints.json").read_text())["partitions"]:
        regex = re.compile(partition["regionRegex"])
        assert not [first for first in firsts if regex.match(first)]
        assert all(is_plausible_region(region) for region in partition["regions"])
@pytest.mark.parametrize("failure", [ValueError("secret-looking body text"), TypeError("x"), OverflowError("x"),
                                     RecursionError(), KeyError("x")])
def test_a_body_stage_failing_on_a_clients_body_is_a_400_naming_only_the_type(failure: Exception) -> None:
    def stage(exchange: Exchange) -> None:
        raise failure

    pipeline = Pipeline((), (stage,), Upstream(UpstreamConfig()))
    with pytest.raises(RequestInvalid) as refused:
        pipeline.prepare(Exchange(IncomingRequest("POST", "/CreateChannel", "", (), True)), b"{}")
    assert refused.value.status == 400
    assert refused.value.message == f"the body could not be checked ({type(failure).__name__})"
