"""Goroutine names in a Go agent's recording: the start function and the creator, whichever
of the agent's records and the tracer's stream speaks of a goroutine last.

The program (programs/go_agent_names) starts one goroutine before the agent (so before its
tracer) and one after, which keeps making HTTP calls while the agent stops: a hop made
after the tracer stopped is the agent's own event, whose unit record knows the goroutine
only by number and says so (provisional). Whether one lands in that window is the
scheduler's call; the loader's rule for it is tested on its own in test_load.py
(test_a_provisional_unit_record_only_fills_gaps) and the agent's record in the Go agent's
TestHopWithoutTheTracerDefinesItsGoroutineProvisionally.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from willowisp.ingest.files import split_embedded
from willowisp.wtrace.reader import read_file
from wispkit import clean_env

PROGRAM = Path(__file__).resolve().parent / "programs" / "go_agent_names"
BUILD = Path(__file__).resolve().parents[2] / ".cache" / "go-name-tests"
GO = shutil.which("go")
R_UNIT = 2

pytestmark = pytest.mark.skipif(GO is None, reason="go is not installed")


@pytest.fixture(scope="module")
def program() -> Path:
    """The test program, built once into the checkout's ignored .cache/ folder."""
    BUILD.mkdir(parents=True, exist_ok=True)
    target = BUILD / "names"
    done = subprocess.run(
        [str(GO), "build", "-o", str(target), "."],
        cwd=PROGRAM,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return target


def wisp(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def units(run: Path) -> list[dict[str, Any]]:
    out = wisp("query", str(run), "select number, name, parent from units", "--format", "json")
    table = json.loads(out)
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row, strict=True)) for row in table["rows"]]


def agent_unit_records(run: Path) -> list[dict[str, Any]]:
    """The unit records of the agent's own chunks (goroutines it knows by number only)."""
    found: list[dict[str, Any]] = []
    for path in run.glob("*.wtrace"):
        _, native = split_embedded(read_file(path))
        for chunk in native.chunks if native is not None else []:
            found += [dict(r.attrs) for r in chunk.records if r.rtype == R_UNIT]
    return found


def test_goroutines_are_named_by_start_function_and_creator(program: Path, tmp_path: Path) -> None:
    """A goroutine the agent also defined by number keeps its start function and parent."""
    run = tmp_path / "run"
    assert "calls" in wisp("run", "--out", str(run), "--", str(program))
    rows = units(run)
    by_name = {r["name"].split(" #")[0]: r for r in rows}
    main = by_name["main.main"]
    poller = by_name.get("main.poller")
    assert poller is not None, [r["name"] for r in rows if r["name"].startswith("goroutine #")]
    # any the agent wrote (a hop after the tracer stopped) is marked a guess
    assert all(r.get("provisional") == 1 for r in agent_unit_records(run))
    assert str(poller["parent"]).endswith(f":{main['number']}")
    # created before the tracer: named from its stack (its creator is not in the trace)
    assert "main.early" in by_name
