"""Pipeline plumbing that the end-to-end tests exercise only indirectly."""

from __future__ import annotations

import dataclasses

from proxy.pipeline import IncomingRequest


def test_with_body_keeps_every_other_field() -> None:
    # Every field set to a value other than its default, so a field that with_body() forgot
    # would show up as a difference from dataclasses.replace().
    head = IncomingRequest("POST", "/PutMetadata", "a=1", (("content-type", "application/json"),), True)
    assert {f.name for f in dataclasses.fields(head)} == {"method", "path", "query", "headers", "has_body", "body"}
    assert head.with_body(b"{}") == dataclasses.replace(head, body=b"{}")
    assert head.with_body(b"{}").body == b"{}" and head.body == b""
