"""Runs for the query tests: golden traces written as an agent would, and one real run."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "golden"
PROGRAMS = TESTS / "scenarios" / "programs"


def build_run(case: Path, out: Path) -> Path:
    """Encode each .wtxt of a golden case into a run folder."""
    out.mkdir(parents=True)
    for text in sorted(case.glob("*.wtxt")):
        write_file(out / f"{text.stem}.wtrace", from_text(text.read_text(), str(text)))
    return out


@pytest.fixture
def bank_run(tmp_path: Path) -> Path:
    """Two threads deadlocked on two locks (one process, 14 events)."""
    return build_run(GOLDEN / "lock_order_killed", tmp_path / "bank")


@pytest.fixture
def callback_run(tmp_path: Path) -> Path:
    """orders and stock over HTTP with traceparent, a cross-process deadlock, skewed clocks."""
    return build_run(GOLDEN / "http_callback", tmp_path / "callback")


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real run: healthy_shop.py (threads, queues, locks, a condition, asyncio tasks)
    recorded by `willowisp run`."""
    out = tmp_path_factory.mktemp("recorded") / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(out),
            "--",
            sys.executable,
            str(PROGRAMS / "healthy_shop.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    yield out
