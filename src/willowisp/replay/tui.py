"""The replay terminal UI (Textual): the step, every unit's state, the locks held and the
requests in flight, driven by keys or by the same commands ``--script`` runs.

Every string from the trace is shown as a ``rich.text.Text`` (never parsed as markup), so a
unit named ``[bold red]`` or ``[link=...]`` shows as those characters.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Input, RichLog, Static

from willowisp.analysis.engine import Analysis
from willowisp.analysis.naming import resource_name
from willowisp.errors import UsageError
from willowisp.replay.script import Session, state_lines
from willowisp.replay.steps import Stepper

MAX_ROWS = 500


class ReplayApp(App[None]):
    """``willowisp replay PATH`` in a terminal."""

    TITLE = "willowisp replay"
    CSS = """
    #step { height: auto; padding: 0 1; background: $boost; }
    #units { width: 2fr; }
    #side { width: 1fr; }
    #held { height: 1fr; border: round $primary; padding: 0 1; }
    #log { height: 1fr; border: round $primary; }
    #command { dock: bottom; }
    """
    BINDINGS: ClassVar[list[Any]] = [
        Binding("n", "cmd('next')", "next"),
        Binding("p", "cmd('prev')", "prev"),
        Binding("u", "unit_step", "next on unit"),
        Binding("f", "cmd('follow')", "follow edge"),
        Binding("b", "cmd('back')", "back"),
        Binding("c", "cmd('continue')", "continue"),
        Binding("home", "cmd('goto start')", "start"),
        Binding("end", "cmd('goto end')", "end"),
        Binding("right_square_bracket", "finding(1)", "next finding"),
        Binding("colon", "command", "command"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, a: Analysis) -> None:
        super().__init__()
        self.session = Session(Stepper(a))
        self.finding = -1
        self.unit_rows: list[int] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="step")
        with Horizontal():
            yield DataTable(id="units", cursor_type="row", zebra_stripes=True)
            with Vertical(id="side"):
                yield Static(id="held")
                yield RichLog(id="log", wrap=True, markup=False)
        yield Input(placeholder="command (next, goto finding ID, break resource=…): ':'",
                    id="command")  # fmt: skip
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#units", DataTable)
        table.add_columns("unit", "state", "since")
        log = self.query_one("#log", RichLog)
        a = self.session.stepper.a
        n = len(a.findings)
        log.write(Text(f"{len(self.session.stepper)} steps, {n} finding{'' if n == 1 else 's'}"))
        for f in a.findings[:20]:
            log.write(Text(f"{f.id} {f.kind}: {f.summary}"))
        self.refresh_state()
        table.focus()

    # -- actions -----------------------------------------------------------------------

    def action_cmd(self, line: str) -> None:
        self.run_command(line)

    def action_unit_step(self) -> None:
        table = self.query_one("#units", DataTable)
        row = table.cursor_row
        if 0 <= row < len(self.unit_rows):
            self.session.unit = self.unit_rows[row]
            self.run_command("next-unit")

    def action_finding(self, delta: int) -> None:
        findings = self.session.stepper.a.findings
        if not findings:
            return
        self.finding = (self.finding + delta) % len(findings)
        self.run_command(f"goto finding {findings[self.finding].id}")

    def action_command(self) -> None:
        self.query_one("#command", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        line = event.value
        event.input.value = ""
        self.run_command(line)
        self.query_one("#units", DataTable).focus()

    def run_command(self, line: str) -> None:
        log = self.query_one("#log", RichLog)
        try:
            out = self.session.run(line)
        except UsageError as e:
            out = [f"error: {e}"]
        log.write(Text(f"> {line}"))
        for text in out:
            log.write(Text(text))
        self.refresh_state()

    # -- drawing -----------------------------------------------------------------------

    def refresh_state(self) -> None:
        s = self.session.stepper
        lines = self.session.position()
        self.query_one("#step", Static).update(Text("\n".join(lines)))
        table = self.query_one("#units", DataTable)
        table.clear()
        trace = s.a.trace
        cut = s.cut
        self.unit_rows = []
        for u, st in sorted(cut.units.items())[:MAX_ROWS]:
            state = st.status
            if st.status == "blocked":
                r = st.resource
                on = f"{trace.resources[r].kind} {resource_name(trace, r)}" if r >= 0 else "?"
                state = f"blocked on {on} ({st.reason})"
            style = "bold red" if st.status == "blocked" else ""
            table.add_row(Text(s.unit_name(u)), Text(state, style=style), Text(str(st.since + 1)))
            self.unit_rows.append(u)
        self.query_one("#held", Static).update(Text("\n".join(_after_units(state_lines(s)))))


def _after_units(lines: list[str]) -> list[str]:
    """The cut's text from "locks held" on (the units are in the table)."""
    for k, line in enumerate(lines):
        if line.startswith("locks held"):
            return lines[k:]
    return lines


def run_tui(a: Analysis) -> None:
    ReplayApp(a).run()
