"""IVS-shaped EventBridge events, as AWS's pages show them (proxy/events/envelope.py cites them)."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from tests.support.gateway import ACCOUNT, REGION


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
