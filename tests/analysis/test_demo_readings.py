"""How the analysis reads what the demo's recordings show: the contention table without Go's
own locks, and a hop whose context was dropped as one group naming both sides."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wispkit import clean_env

PROGRAMS = Path(__file__).resolve().parent / "programs"
GOLDEN = Path(__file__).resolve().parents[1] / "golden"
GO = shutil.which("go")


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


def rows(path: Path, sql: str) -> list[dict[str, Any]]:
    table = json.loads(wisp("query", str(path), sql, "--format", "json"))
    names = [c["name"] for c in table["columns"]]
    return [dict(zip(names, row, strict=True)) for row in table["rows"]]


@pytest.mark.skipif(GO is None, reason="go is not installed")
def test_go_runtime_internal_locks_stay_out_of_the_contention_table(tmp_path: Path) -> None:
    """A wait on internal/poll's descriptor lock is in the trace, not in the contention table."""
    binary = tmp_path / "fdlock"
    subprocess.run(
        [str(GO), "build", "-o", str(binary), str(PROGRAMS / "fdlock" / "main.go")],
        check=True,
        timeout=300,
        env={**os.environ, "GO111MODULE": "off"},
    )
    raw, wtrace = tmp_path / "trace.out", tmp_path / "fd.wtrace"
    subprocess.run([str(binary), str(raw)], check=True, timeout=120)
    wisp("import", str(raw), "-o", str(wtrace))
    internal = rows(
        wtrace, "select kind, name, file, line from resources where file like '%/internal/poll/%'"
    )
    assert internal, "the writers never waited for the pipe's descriptor lock"
    report = json.loads(wisp("analyze", str(wtrace), "--format", "json"))
    table = {(c["resource"]["kind"], c["resource"]["where"]) for c in report["contention"]}
    for r in internal:
        where = f"{Path(r['file']).name}:{r['line']}"
        assert (r["kind"], where) not in table
    # the program's own mutex, contended at its own line, is still there
    assert any(k == "lock" and w.startswith("main.go:") for k, w in table)
    text = wisp("analyze", str(wtrace))
    assert "fd_mutex.go" not in text


def test_a_hop_whose_context_was_dropped_is_one_group_naming_both_sides(tmp_path: Path) -> None:
    """Requests a proxy stripped of traceparent are one hop group, client → server, counted
    as dropped-context, not a client half to '?' and a server half from '? (not traced)'."""
    run = tmp_path / "run"
    program = PROGRAMS / "dropped"
    out = wisp(
        "run", "--out", str(run), "--", sys.executable,
        str(program / "client.py"), str(program / "server.py"),
    )  # fmt: skip
    assert "sent 5" in out
    report = json.loads(wisp("analyze", str(run), "--format", "json"))
    [finding] = [f for f in report["findings"] if f["kind"] == "dropped-context"]
    http = [g for g in report["hops"] if g["protocol"] == "http"]
    assert [(g["from"]["service"], g["to"]["service"]) for g in http] == [("client", "server")]
    [group] = http
    assert (group["count"], group["linked"]) == (5, 0)
    assert group["unlinked"] == {"dropped-context": 5}
    assert group["libraries"] == ["urllib", "http.server"]
    assert finding["count"] == 5
    text = wisp("analyze", str(run))
    assert "client (python) → server (python)  http" in text
    assert "not traced" not in text
