"""A Server-Sent Events reader, as a browser's EventSource parses the stream (the WHATWG
rules for `id:`, `event:`, `data:` and comments), over an aiohttp response."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Message:
    id: str | None
    event: str  # "message" unless named
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


class SseStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.last_id: str | None = None
        self.comments: list[str] = []

    async def next(self, timeout: float = 10.0) -> Message | None:
        """The next message; None when the stream ended."""
        fields: dict[str, list[str]] = {}
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            if not raw:
                return None
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if "data" in fields:
                    message = Message(fields.get("id", [self.last_id])[-1], fields.get("event", ["message"])[-1],
                                      "\n".join(fields["data"]))
                    if "id" in fields:
                        self.last_id = message.id
                    return message
                fields = {}
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))

    async def events(self, count: int, timeout: float = 10.0) -> list[Message]:
        """The next `count` IVS events (control messages kept too, in order), or fewer if it ends."""
        found: list[Message] = []
        while sum(1 for m in found if m.event == "message") < count:
            message = await self.next(timeout)
            if message is None:
                break
            found.append(message)
        return found
