"""Recordings several replay test modules share (recorded once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wispkit import record_until_blocked

SHOP = Path(__file__).parent.parent / "view" / "programs" / "hostile_shop.py"


@pytest.fixture(scope="session")
def deadlock_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two processes over HTTP, then two threads deadlocked on two locks (killed)."""
    out = tmp_path_factory.mktemp("replay") / "shop"
    record_until_blocked(SHOP, out, ["ledger_lock", "audit_lock"])
    return out
