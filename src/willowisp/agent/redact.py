"""The redaction in force in this process (see ``willowisp.model.redaction``), read once at
start from ``WILLOWISP_REDACT``. Hooks read ``ACTIVE``; a bad value is an agent fault and
leaves the defaults (which keep the least)."""

from __future__ import annotations

from willowisp.agent import recorder as _r
from willowisp.errors import UsageError
from willowisp.model.redaction import DEFAULT, Redaction, from_env_value

ACTIVE: Redaction = DEFAULT


def configure(value: str) -> None:
    global ACTIVE
    ACTIVE = DEFAULT
    if not value.strip():
        return
    try:
        ACTIVE = from_env_value(value)
    except UsageError as exc:
        rec = _r.RECORDER
        if rec is not None:
            rec.fault("redact", exc)
