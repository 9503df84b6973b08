"""IVS-shaped EventBridge events, as AWS's pages show them (proxy/events/envelope.py cites them)."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from tests.support.gateway import ACCOUNT, REGION
from tests.support.moto import MotoServer


def stage(name: str, region: str = REGION) -> str:
    return f"arn:aws:ivs:{region}:{ACCOUNT}:stage/{name}"


def stream_state_detail(channel_arn: str, event_name: str = "Stream Start") -> dict[str, Any]:
    return {"event_name": event_name, "channel_name": channel_arn.rsplit("/", 1)[-1], "stream_id": "st-1AbCdEfGhIjKlMn"}


def stage_update_detail(event_name: str = "Participant Published") -> dict[str, Any]:
    return {"session_id": "st-ZyXwVuTsRqPoNm", "event_name": event_name, "user_id": "alice",
            "participant_id": "xYz1aBc2dEf3"}


def event_body(resources: list[str], detail_type: str = "IVS Stream State Change",
               detail: dict[str, Any] | None = None, *, event_id: str | None = None,
               region: str = REGION) -> str:
    """One event exactly as EventBridge puts it in an SQS message body."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({
        "version": "0", "id": event_id or str(uuid.uuid4()), "detail-type": detail_type, "source": "aws.ivs",
        "account": ACCOUNT, "time": now, "region": region, "resources": resources,
        "detail": detail if detail is not None else stream_state_detail(resources[0] if resources else ""),
    })


def create_queue_and_rule(moto: MotoServer, visibility_timeout: int = 2) -> tuple[str, Any, Any]:
    """What docs/events.md does with the AWS CLI: the queue, its policy, the rule, the target."""
    assert moto.admin is not None
    sqs, events = moto.client("sqs", *moto.admin), moto.client("events", *moto.admin)
    name = f"ivs-events-{uuid.uuid4().hex[:8]}"
    # A short visibility timeout: what a killed replica had received comes back within seconds.
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility_timeout)})["QueueUrl"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    rule_arn = events.put_rule(Name=name, EventPattern=json.dumps({"source": ["aws.ivs"]}))["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}}}]})})
    events.put_targets(Rule=name, Targets=[{"Id": "ivs-proxy", "Arn": queue_arn}])
    return url, sqs, events
