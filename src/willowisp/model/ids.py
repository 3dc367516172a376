"""Typed identities. Ids are strings on the outside (``<process id>:<n>``) and ints inside."""

from __future__ import annotations

import os
from typing import NewType

ProcessId = NewType("ProcessId", str)  # 32 lowercase hex digits
UnitId = NewType("UnitId", str)  # "<process id>:<unit number>"
EventId = NewType("EventId", str)  # "<process id>:<sequence number>"

NO_UNIT = 0  # unit number meaning "no unit" in the event columns
NO_RESOURCE = 0
NO_LOCATION = 0


def new_process_id() -> ProcessId:
    """A random 128-bit process id, like OpenTelemetry's service.instance.id."""
    return ProcessId(os.urandom(16).hex())


def unit_id(process: str, n: int) -> UnitId:
    return UnitId(f"{process}:{n}")


def event_id(process: str, seq: int) -> EventId:
    return EventId(f"{process}:{seq}")
