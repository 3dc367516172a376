"""The redaction in force in this process (see ``willowisp.model.redaction``), read once at
start from ``WILLOWISP_REDACT``. Hooks read ``ACTIVE``; a bad value is an agent fault and
leaves the defaults (which keep the least)."""

from __future__ import annotations

from willowisp.agent import recorder as _r
from willowisp.errors import UsageError
from willowisp.model.redaction import BODY_MAX, DEFAULT, Redaction, from_env_value

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


def body_attrs(data: bytes, total: int | None = None) -> dict[str, str | int]:
    """A request body as resource attributes: ``body`` (UTF-8 text, else ``base64:...``) of
    at most ``BODY_MAX`` bytes, ``body_bytes`` (the whole body's size) and ``body_cut``."""
    size = len(data) if total is None else total
    kept = bytes(data[:BODY_MAX])
    try:
        text = kept.decode("utf-8")
    except UnicodeDecodeError:
        import base64

        text = "base64:" + base64.b64encode(kept).decode("ascii")
    return {"body": text, "body_bytes": size, "body_cut": int(size > len(kept))}
