"""Names that survive a re-run: what diff matches two runs by."""

from __future__ import annotations

from pathlib import Path

from golden.tracetext import chunk, process, write_trace
from willowisp.analysis.naming import command_key, unit_label
from willowisp.ingest import load


def test_command_key_keeps_programs_and_folds_what_changes_per_run() -> None:
    """Paths by their base name, numbers (ports) folded; a path the recorder cut short
    (it ends in '/') by its last folder, not the whole path with its home directory."""
    assert command_key("/root/.cache/demo/go/inventory 36305 39343") == "inventory N N"
    assert command_key("/usr/bin/node /tmp/x/pricing.js 8080") == "node pricing.js N"
    assert command_key("env FAKETIME=-1.5 /root/.cache/willowisp/") == "env FAKETIME=-N.N willowisp"
    assert command_key("sh -c 'a / b'") == "sh -c 'a / b'"


def test_a_unit_label_says_only_what_is_known(tmp_path: Path) -> None:
    """A native thread: ``name (pid, service, runtime)``; an imported span has no pid and
    may have no runtime: no ``pid 0`` and no ``?`` for them (the QA's ``backend (pid 0, ?)``)."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            process("aa", 4242, "orders", run_root=1),
            'rec unit 1 kind="thread" name="worker"',
            "ev 10 unit.start u=1",
        ),
    )
    write_trace(
        tmp_path / "b.wtrace",
        chunk(
            process("bb", 0, "backend").replace('runtime="python"', 'runtime=""'),
            'rec unit 1 kind="span" name="GET /price"',
            "ev 10 unit.start u=1",
        ),
    )
    trace = load([tmp_path])
    labels = sorted(unit_label(trace, u.index) for u in trace.units)
    assert labels == ["GET /price (span, backend)", "worker (pid 4242, orders, python)"]
    assert sorted(p.label() for p in trace.processes) == ["backend", "orders (pid 4242)"]
    assert sorted(p.track_name() for p in trace.processes) == [
        "backend (h)",
        "orders (pid 4242, h)",
    ]
