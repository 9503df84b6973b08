"""The IVS events EventBridge delivers, as the proxy reads them from an SQS message body.

Every event is EventBridge's envelope (`version`, `id`, `detail-type`, `source`,
`account`, `time`, `region`, `resources`, `detail`); IVS puts the ARNs the event is about
in `resources` (the channel, the stage, the composition) and the rest in `detail`, e.g.
`{"event_name": "Stream Start", "channel_name": ..., "stream_id": ...}`. The types, from
AWS's pages (read 2026-12-02):
- https://docs.aws.amazon.com/ivs/latest/LowLatencyUserGuide/eventbridge.html
- https://docs.aws.amazon.com/ivs/latest/RealTimeUserGuide/eventbridge.html
- https://docs.aws.amazon.com/eventbridge/latest/ref/events-ref-ivs.html

The proxy passes `detail` through untouched (IVS adds fields and event names over time);
it relies only on the envelope: `id` to drop repeated deliveries, `resources` for the
policy, `detail-type` for subscribers' filters, `time` for the delivery lag.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SOURCE = "aws.ivs"

#: The detail-types IVS sends; the `type` label of the event metrics (anything else is "other").
KNOWN_TYPES = (
    "IVS Stream State Change",  # Session Created/Ended, Stream Start/End/Failure, Stream Takeover
    "IVS Stream Health Change",  # Starvation Start/End
    "IVS Limit Breach",  # limit_name, exceeded_by, limit_value, limit_unit
    "IVS Recording State Change",  # Recording Start/End/Start Failure/End Failure
    "IVS Stage Update",  # Participant Joined/Left/Published/Unpublished/..., session_id, participant_id
    "IVS Composition State Change",  # Session Start/End/Failure, Destination Start/End/Failure/Reconnecting
    "IVS Participant Recording State Change",
    "IVS Publisher Recording State Change",
)
OTHER_TYPE = "other"
MAX_EVENT_BYTES = 256 * 1024  # SQS's message limit, and EventBridge's event limit
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{0,12}:[!-~]{1,1024}")


class NotAnIvsEvent(ValueError):
    """A message that is no IVS event: logged by reason, never by content."""


@dataclass(frozen=True, slots=True)
class IvsEvent:
    id: str
    detail_type: str
    region: str
    time: datetime | None
    resources: tuple[str, ...]
    body: str  # the event as received: what subscribers get

    @property
    def type_label(self) -> str:
        return self.detail_type if self.detail_type in KNOWN_TYPES else OTHER_TYPE


def parse_event(body: str, *, compact: bool = False) -> IvsEvent:
    """The event of one SQS message body; NotAnIvsEvent saying what is wrong (never quoting it).
    `compact`: the body is already one line of JSON (the store's, which this function wrote)."""
    if len(body) > MAX_EVENT_BYTES:
        raise NotAnIvsEvent("larger than an EventBridge event can be")
    try:
        decoded = json.loads(body)
    except ValueError:
        raise NotAnIvsEvent("not JSON") from None
    if not isinstance(decoded, dict):
        raise NotAnIvsEvent("not a JSON object")
    if decoded.get("source") != SOURCE:
        raise NotAnIvsEvent(f"source is not {SOURCE}")
    event_id, detail_type, region = (_text(decoded, name) for name in ("id", "detail-type", "region"))
    resources = decoded.get("resources", [])
    if not isinstance(resources, list) or not all(isinstance(r, str) and _ARN.fullmatch(r) for r in resources):
        raise NotAnIvsEvent("resources is not a list of ARNs")
    if not isinstance(decoded.get("detail", {}), dict):
        raise NotAnIvsEvent("detail is not an object")
    return IvsEvent(event_id, detail_type, region, _time(decoded.get("time")), tuple(resources),
                    body if compact else json.dumps(decoded, separators=(",", ":")))


def _text(decoded: dict[str, Any], name: str) -> str:
    value = decoded.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= 256:
        raise NotAnIvsEvent(f"no {name}")
    return value


def _time(value: Any) -> datetime | None:
    """EventBridge's `time` ("2026-12-02T15:54:09Z"); None when absent or unreadable (no lag then)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
