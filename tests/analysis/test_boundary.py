"""Boundaries in analysis: which events are inside, and what is suppressed outside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.golden.test_golden import GOLDEN, build_run

from willowisp.analysis.engine import Options, analyze
from willowisp.cli.main import main
from willowisp.ingest.load import load
from willowisp.model.boundary import parse_boundary
from willowisp.model.spec import K


@pytest.fixture
def proxy_run(tmp_path: Path) -> Path:
    """shop -> pay: GET /health linked, three POST /charge whose context a proxy dropped."""
    return build_run(GOLDEN / "dropped_context_proxy", tmp_path / "run")


def _analyze(run: Path, *specs: str, suppress: bool = True):  # type: ignore[no-untyped-def]
    bounds = tuple(parse_boundary(s) for s in specs)
    return analyze(load([run]), Options(boundaries=bounds, suppress=suppress))


def test_instances_cover_the_entry_handling_only(proxy_run: Path) -> None:
    a = _analyze(proxy_run, "entry=http:GET /health")
    assert a.inside is not None
    (inst,) = a.inside.per_boundary
    assert inst.entries == 1
    ev = a.trace.events
    inside_kinds = sorted(K(int(k)).name for k in ev.kind[a.inside.mask])
    # pay's msg.recv and rpc.reply of GET /health, nothing of the POST /charge handling
    assert inside_kinds == ["MSG_RECV", "RPC_REPLY"]
    assert inst.latency_ns == (100_000,)


def test_a_warning_outside_every_boundary_is_suppressed(proxy_run: Path) -> None:
    a = _analyze(proxy_run, "entry=http:GET /health")
    assert [f.kind for f in a.findings] == []
    assert a.suppressed == 1
    shown = _analyze(proxy_run, "entry=http:GET /health", suppress=False)
    assert [f.kind for f in shown.findings] == ["dropped-context"]
    assert shown.suppressed == 0


def test_a_finding_inside_a_boundary_is_kept(proxy_run: Path) -> None:
    a = _analyze(proxy_run, "entry=http:POST /charge*")
    assert [f.kind for f in a.findings] == ["dropped-context"]
    assert a.suppressed == 0
    assert a.inside is not None and a.inside.per_boundary[0].entries == 3


def test_runtimes_restrict_the_boundary(proxy_run: Path) -> None:
    a = _analyze(proxy_run, "entry=http:POST /charge*;runtimes=go")
    assert a.inside is not None and a.inside.per_boundary[0].entries == 0
    assert a.suppressed == 1


def test_willowisp_toml_declares_boundaries_and_options(
    proxy_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "willowisp.toml").write_text(
        '[[boundary]]\nentry = "http:GET /health"\nruntimes = ["python"]\n'
        '[analyze]\nfail_on = ["dropped-context"]\n'
    )
    assert main(["analyze", str(proxy_run), "--format", "json"]) == 0  # suppressed: no fail
    doc = json.loads(capsys.readouterr().out)
    (b,) = doc["trace"]["boundaries"]
    assert (b["entry"], b["source"], b["instances"]) == ("http:GET /health", "given", 1)
    assert doc["trace"]["suppressed_findings"] == 1
    assert main(["analyze", str(proxy_run), "--format", "json", "--no-suppress"]) == 1
    capsys.readouterr()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boundries = []\n", "unknown key 'boundries'"),
        ("[run]\nmode = 'fast'\n", "mode must be"),
        ("[run]\ntrace_ratio = true\n", "trace_ratio has the wrong type"),
        ("[[boundary]]\nexit = 'http:reply'\n", "needs entry=PROTOCOL:WHAT"),
        ("[analyze]\nfail_on = ['nope']\n", "unknown finding kind nope"),
        ("this is = not toml [\n", "not valid TOML"),
    ],
)
def test_a_bad_willowisp_toml_is_one_clear_error(
    proxy_run: Path, tmp_path: Path, text: str, message: str, capsys
) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "willowisp.toml"
    cfg.write_text(text)
    assert main(["analyze", str(proxy_run), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert str(cfg) in err and message in err
    assert "Traceback" not in err


def test_an_exit_hop_cuts_the_instance(tmp_path: Path) -> None:
    """shop's handler (entry POST /checkout) calls pay then audit; with exit=http:POST /pay the
    instance ends at pay's answer, so the audit call and what follows are outside."""
    text = (Path(__file__).parent / "exit_hop.wtxt").read_text()
    from willowisp.wtrace.text import from_text
    from willowisp.wtrace.writer import write_file

    run = tmp_path / "run"
    run.mkdir()
    write_file(run / "shop.wtrace", from_text(text, "exit_hop.wtxt"))
    cut = _analyze(run, "entry=http:POST /checkout;exit=http:POST /pay")
    whole = _analyze(run, "entry=http:POST /checkout")
    assert cut.inside is not None and whole.inside is not None
    assert cut.inside.per_boundary[0].events == 3  # recv, send /pay, its response
    assert cut.inside.per_boundary[0].latency_ns == (200_000,)
    assert whole.inside.per_boundary[0].events == 6
    assert whole.inside.per_boundary[0].latency_ns == (500_000,)


def test_work_handed_to_a_pool_is_inside(tmp_path: Path) -> None:
    """A handler inside the boundary hands job 7 to a pool thread through a queue (the Java
    agent's executor hand-off, a work queue): the pool thread's handling of job 7 is inside,
    up to the next job it takes, which a handler outside the boundary handed over."""
    from willowisp.wtrace.text import from_text
    from willowisp.wtrace.writer import write_file

    text = (Path(__file__).parent / "handoff.wtxt").read_text()
    run = tmp_path / "run"
    run.mkdir()
    write_file(run / "shop.wtrace", from_text(text, "handoff.wtxt"))
    a = _analyze(run, "entry=http:POST /work")
    assert a.inside is not None
    ev = a.trace.events
    pool = [u.index for u in a.trace.units if u.name == "pool-1"]
    on_pool = ev.unit == pool[0]
    inside_pool = sorted(int(t) for t in ev.time[a.inside.mask & on_pool])
    # queue.get of job 7 and its four lock events; job 8 (handed over by GET /peek) outside
    assert inside_pool == [1_000_400_000 + k * 100_000 for k in range(5)]
    assert a.inside.per_boundary[0].units == 2
    # the inversion has a side inside: the predicted deadlock is not suppressed
    assert "potential-deadlock" in [f.kind for f in a.findings]
    outside = _analyze(run, "entry=http:GET /none")
    assert "potential-deadlock" not in [f.kind for f in outside.findings]


def test_a_periodic_task_stays_inside_over_its_runs(tmp_path: Path) -> None:
    """A task scheduled at a fixed rate from inside an instance hands itself its next run
    (a put and a get of the same token on its own thread): every run is inside, not only
    the first (the graph leaves same-unit queue pairs out; the instances follow them)."""
    from willowisp.wtrace.text import from_text
    from willowisp.wtrace.writer import write_file

    run = tmp_path / "run"
    run.mkdir()
    text = (Path(__file__).parent / "periodic.wtxt").read_text()
    write_file(run / "shop.wtrace", from_text(text, "periodic.wtxt"))
    a = _analyze(run, "entry=http:POST /tick")
    assert a.inside is not None
    ev = a.trace.events
    sched = next(u.index for u in a.trace.units if u.name == "scheduler-1")
    inside = sorted(int(t) for t in ev.time[a.inside.mask & (ev.unit == sched)])
    assert inside == [1_000_400_000 + k * 100_000 for k in range(7)]
