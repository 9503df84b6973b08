"""The SQS queue an EventBridge rule for IVS events targets, long-polled with the proxy's
own credentials (proxy/aws/json_api.py: its signer, its endpoint rules, its Upstream).

A message is deleted only once its event is in the store (or was already: a repeat), so
the proxy being killed at any point loses nothing: what is not yet stored is still in the
queue, and reappears after the queue's visibility timeout. A message that is no IVS event
can never be delivered: it is deleted and counted (`unreadable`), never logged by content.

Faults never stop the proxy or its API path:
- SQS unreachable, throttling or refusing: the poll backs off exponentially (with jitter,
  up to `max_backoff_seconds`) and retries; `delayed` is set and logged once.
- The store down: no message is deleted (they stay in the queue) and no more are received
  until the store answers again, so no receive count is spent on messages that cannot be
  stored (a redrive policy would otherwise move them to a dead-letter queue).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from proxy.aws.json_api import AwsCallFailed, AwsJsonClient
from proxy.errors import ProxyError
from proxy.events.envelope import IvsEvent, NotAnIvsEvent, parse_event
from proxy.events.store import EventStore, StoreDown

log = structlog.get_logger("ivs_proxy.events")

#: How long to wait before asking a store that failed again.
STORE_RETRY_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.5


@dataclass
class SourceCounts:
    """Callbacks for the metrics, so this module needs no registry."""

    received: Callable[[IvsEvent], None] = lambda event: None
    duplicate: Callable[[], None] = lambda: None
    unreadable: Callable[[str], None] = lambda reason: None
    sqs_error: Callable[[str], None] = lambda kind: None
    delayed: Callable[[bool], None] = lambda delayed: None


def error_kind(error: Exception) -> str:
    """A fixed token for the `kind` label: throttled, server_error, denied, refused, unreachable."""
    if isinstance(error, AwsCallFailed):
        if error.retryable:
            return "throttled" if error.status < 500 else "server_error"
        return "denied" if error.status == 403 or "Denied" in error.code else "refused"
    return "unreachable"


class SqsSource:
    def __init__(
        self,
        sqs: AwsJsonClient,
        queue_url: str,
        region: str,
        store: EventStore,
        *,
        wait_seconds: int = 20,
        max_messages: int = 10,
        max_backoff_seconds: float = 30.0,
        counts: SourceCounts | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._region = region
        self._store = store
        self._wait_seconds = wait_seconds
        self._max_messages = max_messages
        self._max_backoff = max_backoff_seconds
        self._counts = counts or SourceCounts()
        self._sleep = sleep
        self._failures = 0
        self._store_down = False
        self.delayed = False

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            await self.poll_once()

    async def poll_once(self) -> None:
        """One receive, store, delete round; waits out a backoff itself after a failure."""
        try:
            if self._store_down:
                await self._store.bounds()  # answers again? Until then, nothing more is received
            self._store_down = False
            messages = await self._receive()
            stored = await self._store_all(messages)
            if stored:
                await self._delete(stored)
        except StoreDown:
            self._store_down = True
            self._set_delayed(True, "store_unavailable")
            await self._sleep(STORE_RETRY_SECONDS)
            return
        except (AwsCallFailed, ProxyError) as error:
            await self._failed(error)
            return
        self._failures = 0
        self._set_delayed(False)

    async def _receive(self) -> list[dict[str, Any]]:
        answer = await self._sqs.call("ReceiveMessage", {
            "QueueUrl": self._queue_url, "MaxNumberOfMessages": self._max_messages,
            "WaitTimeSeconds": self._wait_seconds,
        }, region=self._region, timeout=self._wait_seconds + 10)
        messages = answer.get("Messages") or []
        return [m for m in messages if isinstance(m, dict)]

    async def _store_all(self, messages: list[dict[str, Any]]) -> list[str]:
        """The receipt handles of messages whose events are now stored (or were already, or
        never can be). StoreDown stops at the first one that could not be: nothing of this
        batch is deleted then (the stored ones are repeats when they come back)."""
        done = []
        for message in messages:
            handle = message.get("ReceiptHandle")
            if not isinstance(handle, str):
                continue
            try:
                event = parse_event(str(message.get("Body", "")))
            except NotAnIvsEvent as exc:
                self._counts.unreadable(str(exc))
                log.warning("event_unreadable", reason=str(exc), message_id=str(message.get("MessageId", ""))[:100],
                            effect="deleted from the queue: it can never be delivered")
                done.append(handle)
                continue
            if await self._store.append(event) is None:
                self._counts.duplicate()
            else:
                self._counts.received(event)
            done.append(handle)
        return done

    async def _delete(self, handles: list[str]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)]
        answer = await self._sqs.call("DeleteMessageBatch", {"QueueUrl": self._queue_url, "Entries": entries},
                                      region=self._region)
        failed = answer.get("Failed") or []
        if failed:
            # They come back after the visibility timeout and are dropped then as repeats.
            self._counts.sqs_error("delete_failed")
            log.warning("events_delete_failed", messages=len(failed), effect="redelivered later, dropped as repeats")

    async def _failed(self, error: Exception) -> None:
        kind = error_kind(error)
        self._counts.sqs_error(kind)
        self._failures += 1
        backoff = min(self._max_backoff, FIRST_BACKOFF_SECONDS * 2 ** min(self._failures - 1, 16))
        self._set_delayed(True, kind, error=str(error)[:300], retry_in_seconds=round(backoff, 3))
        await self._sleep(random.uniform(backoff / 2, backoff))

    def _set_delayed(self, delayed: bool, reason: str = "", **fields: Any) -> None:
        if delayed == self.delayed:
            return
        self.delayed = delayed
        self._counts.delayed(delayed)
        if delayed:
            log.warning("events_delayed", reason=reason, effect="events wait in the SQS queue; API calls are "
                        "unaffected", **fields)
        else:
            log.info("events_flowing")
