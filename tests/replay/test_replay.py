"""``willowisp replay``: stepping a real recording in causal order (scripted and in the
terminal UI), and what-if re-simulation with delays on real recorded runs."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from willowisp.analysis.engine import analyze
from willowisp.ingest.load import load
from willowisp.replay.script import Session
from willowisp.replay.steps import Stepper
from wispkit import wisp

HERE = Path(__file__).parent
FLIP = HERE / "programs" / "flip.py"


@pytest.fixture(scope="module")
def flips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("flip")
    runs = []
    for name, extra in (("racy", []), ("fixed", ["fixed"])):
        out = base / name
        done = wisp("run", "--out", str(out), "--", sys.executable, str(FLIP), *extra)
        assert done.returncode == 0, done.stderr
        runs.append(out)
    return runs[0], runs[1]


def test_script_walks_to_the_cycle_and_prints_each_units_state(
    deadlock_run: Path, tmp_path: Path
) -> None:
    a = analyze(load([deadlock_run]))
    (deadlock,) = [f for f in a.findings if f.kind == "deadlock"]
    script = tmp_path / "steps.txt"
    script.write_text(f"# walk to the cycle\ngoto finding {deadlock.id}\nstate\n")
    done = wisp("replay", str(deadlock_run), "--script", str(script))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"finding {deadlock.id}" in out
    state = out.split("> state", 1)[1]
    blocked = [line for line in state.splitlines() if "blocked on lock" in line]
    assert len(blocked) == 2
    assert any("ledger_lock" in b and "held by" in b and " one " in b for b in blocked)
    assert any("audit_lock" in b and "held by" in b and " other " in b for b in blocked)
    held = state.split("locks held:", 1)[1]
    assert "lock ledger_lock:" in held and "lock audit_lock:" in held


def test_causal_order_follow_breakpoints_and_back(deadlock_run: Path) -> None:
    """Every edge goes forward in step order; a breakpoint on a kind stops there; follow
    from a request goes to the other process; back returns."""
    a = analyze(load([deadlock_run]))
    s = Stepper(a)
    g = a.causality.graph
    assert (s.position[g.dst] > s.position[g.src]).all()
    session = Session(s)
    session.run("break kind=rpc.response")
    hit = session.run("continue")
    assert hit[0].startswith("breakpoint kind=rpc.response")
    here = s.cut.step
    proc_here = int(a.trace.events.proc[s.event()])
    session.run("follow")
    assert s.cut.step < here  # the response came from the server's reply, before it
    assert int(a.trace.events.proc[s.event()]) != proc_here
    session.run("back")
    assert s.cut.step == here
    # the request is in flight between its send and its response
    session.run("goto start")
    session.run("break kind=unit.block")
    lines = []
    while True:
        out = session.run("continue")
        if out[0].startswith("no breakpoint"):
            break
        lines += out
        if s.cut.inflight:
            break
    assert s.cut.inflight, "a request was in flight while its client waited"


def test_bad_scripts_and_delays_get_one_clear_line(deadlock_run: Path, tmp_path: Path) -> None:
    script = tmp_path / "bad.txt"
    script.write_text("next\nfly away\n")
    done = wisp("replay", str(deadlock_run), "--script", str(script))
    assert done.returncode == 2
    assert done.stderr.strip().endswith(
        "bad.txt:2: unknown command 'fly' (see willowisp replay --help)"
    )
    assert "Traceback" not in done.stderr
    for delay, words in (
        ("nothing=5ms", "no unit, resource or hop matches"),
        ("unit:one=fast", "is not a duration"),
        ("unit:one=2h", "is not a duration"),
        ("unit:nobody=1ms", "no unit matches"),
    ):
        done = wisp("replay", str(deadlock_run), "--delay", delay)
        assert done.returncode == 2 and words in done.stderr, (delay, done.stderr)
    done = wisp("replay", str(deadlock_run), stdin="")
    assert done.returncode == 2 and "needs a terminal" in done.stderr


def test_delay_exposes_a_race_and_the_fixed_version_keeps_its_order(
    flips: tuple[Path, Path],
) -> None:
    racy, fixed = flips
    done = wisp("replay", str(racy), "--delay", "unit:writer=80ms", "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["reordered"]["races_total"] == 1
    (pair,) = doc["reordered"]["races"]
    assert pair["first"].startswith("reader") and "order:7" in pair["first"]
    assert pair["then"].startswith("writer")
    assert doc["deadlock"] == []
    done = wisp("replay", str(fixed), "--delay", "unit:writer=80ms", "--format", "json")
    doc = json.loads(done.stdout)
    assert doc["reordered"]["races_total"] == 0
    # the reader waited for the writer: the delay moves it too
    rec, new = doc["makespan_ns"]["recorded"], doc["makespan_ns"]["simulated"]
    assert new - rec >= 75_000_000


def test_what_if_keeps_a_recorded_deadlock_and_text_says_so(deadlock_run: Path) -> None:
    done = wisp("replay", str(deadlock_run), "--delay", "hop:price=20ms")
    assert done.returncode == 0, done.stderr
    assert "3 hop(s) slower" in done.stdout
    assert "not a proof over all interleavings" in done.stdout
    assert "deadlock: the simulated run cannot finish" in done.stdout
    assert "ledger_lock" in done.stdout and "audit_lock" in done.stdout


def test_terminal_ui_steps_and_takes_commands(deadlock_run: Path) -> None:
    """The Textual app, driven headless by its own test pilot: keys step, a command jumps
    to the finding, the units table shows both threads blocked."""
    from textual.widgets import DataTable, Static

    from willowisp.replay.tui import ReplayApp

    a = analyze(load([deadlock_run]))
    (deadlock,) = [f for f in a.findings if f.kind == "deadlock"]

    async def drive() -> tuple[str, list[str], str]:
        app = ReplayApp(a)
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.press("n", "n", "n")
            assert app.session.stepper.cut.step == 2
            await pilot.press("colon")
            for ch in f"goto finding {deadlock.id}":
                await pilot.press("space" if ch == " " else ch)
            await pilot.press("enter")
            await pilot.pause()
            table = app.query_one("#units", DataTable)
            states = [str(table.get_row_at(r)[1]) for r in range(table.row_count)]
            step = str(app.query_one("#step", Static).render())
            held = str(app.query_one("#held", Static).render())
        return step, states, held

    step, states, held = asyncio.run(drive())
    assert "step " in step
    assert sum(s.startswith("blocked on lock") for s in states) == 2
    assert "ledger_lock" in held and "audit_lock" in held
