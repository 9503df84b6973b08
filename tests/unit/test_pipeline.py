"""Pipeline plumbing that the end-to-end tests exercise only indirectly."""

from __future__ import annotations

import dataclasses

import pytest

from proxy.aws.upstream import Upstream
from proxy.config import UpstreamConfig
from proxy.errors import RequestInvalid
from proxy.pipeline import Exchange, IncomingRequest, Pipeline


def test_with_body_keeps_every_other_field() -> None:
    # Every field set to a value other than its default, so a field that with_body() forgot
    # would show up as a difference from dataclasses.replace().
    head = IncomingRequest("POST", "/PutMetadata", "a=1", (("content-type", "application/json"),), True)
    assert {f.name for f in dataclasses.fields(head)} == {"method", "path", "query", "headers", "has_body", "body"}
    assert head.with_body(b"{}") == dataclasses.replace(head, body=b"{}")
    assert head.with_body(b"{}").body == b"{}" and head.body == b""


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
