"""Server-sent events of a job (``GET /jobs/<id>/events``): the parser and the event type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

__all__ = ["Event", "SSEParser"]


@dataclass(frozen=True)
class Event:
    """One event of a job's stream.

    Attributes:
        event: ``"status"`` (a change of state or attempt) or ``"progress"`` (a pipeline's
            progress update).
        id: the record's ``version`` (ids increase, and may skip).
        data: the job record, as ``GET /status/<id>`` answers it in JSON.
    """

    event: str
    id: int | None
    data: dict[str, Any]

    @property
    def status(self) -> str:
        """The job's status in this event."""
        return str(self.data.get("status"))

    @property
    def progress(self) -> dict[str, Any] | None:
        """The job's ``progress`` (``{"done", "total"}``) in this event, if it has one."""
        return self.data.get("progress")

    @property
    def final(self) -> bool:
        """Whether this event carries a final state (the stream ends after it)."""
        return self.status in ("succeeded", "failed", "cancelled")


class SSEParser:
    """Turns the lines of a ``text/event-stream`` into :class:`Event`s (comments are skipped)."""

    def __init__(self) -> None:
        self._event = ""
        self._id: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """Takes one line (without its end); returns an event when a blank line completes one."""
        if line == "":
            if not self._data:
                self._event, self._id = "", None
                return None
            event = Event(
                self._event or "message",
                int(self._id) if self._id and self._id.isdigit() else None,
                json.loads("\n".join(self._data)),
            )
            self._event, self._id, self._data = "", None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            self._id = value
        return None

    def parse(self, lines: Iterable[str]) -> Iterator[Event]:
        """All the events in ``lines``."""
        for line in lines:
            event = self.feed(line)
            if event is not None:
                yield event
