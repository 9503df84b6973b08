"""Reading EventBridge's IVS events from SQS message bodies."""

from __future__ import annotations

import json

import pytest

from proxy.events.envelope import NotAnIvsEvent, parse_event
from tests.support.gateway import channel
from tests.support.ivs_events import event_body, stage, stage_update_detail


def test_an_ivs_event_keeps_its_envelope_and_body() -> None:
    body = event_body([channel("abc")], event_id="e-1")
    event = parse_event(body)
    assert (event.id, event.detail_type, event.region, event.resources) == (
        "e-1", "IVS Stream State Change", "us-west-2", (channel("abc"),))
    assert event.time is not None and event.time.tzinfo is not None
    assert json.loads(event.body) == json.loads(body) and "\n" not in event.body  # one SSE data line
    assert event.type_label == "IVS Stream State Change"


def test_unknown_types_pass_through_labelled_other() -> None:
    event = parse_event(event_body([stage("s1")], "IVS Future Thing", stage_update_detail()))
    assert event.type_label == "other" and event.detail_type == "IVS Future Thing"


@pytest.mark.parametrize(("body", "reason"), [
    ("not json", "not JSON"),
    ("[1]", "not a JSON object"),
    (json.dumps({"source": "aws.s3", "id": "x"}), "source is not aws.ivs"),
    (json.dumps({"source": "aws.ivs", "detail-type": "t", "region": "r"}), "no id"),
    (json.dumps({"source": "aws.ivs", "id": "x", "detail-type": "t", "region": "r", "resources": ["nope"]}),
     "resources is not a list of ARNs"),
    (json.dumps({"source": "aws.ivs", "id": "x", "detail-type": "t", "region": "r", "detail": []}),
     "detail is not an object"),
])
def test_what_is_no_ivs_event_is_named_without_quoting_it(body: str, reason: str) -> None:
    with pytest.raises(NotAnIvsEvent) as refused:
        parse_event(body)
    assert str(refused.value) == reason
