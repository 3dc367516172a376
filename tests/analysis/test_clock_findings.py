"""clock-skew only when the interval excludes +/-1 ms; false-causality counts per pair."""

from __future__ import annotations

from pathlib import Path

from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis.engine import analyze
from willowisp.analysis.naming import fmt_duration
from willowisp.ingest import load

DATA = Path(__file__).parent / "data"


def _pair(tmp_path: Path, skew_ns: int, latency_ns: int = 100_000) -> list[str]:
    """Client and server on two machines, the server's clock ``skew_ns`` ahead; one request."""
    client = chunk(
        process("c1", 1, "client", run_root=1),
        f"ev 0 clock.anchor a={WALL0}",
        'rec resource 1 kind="rpc" trace_id="'
        + "1" * 32
        + '" span_id="'
        + "a" * 16
        + '" method="GET" target="/x" protocol="http"',
        "ev 1000000 msg.send u=1 r=1",
        "ev 1000100 unit.block u=1 r=1 a=7",
        f"ev {1000000 + 2 * latency_ns + 50_000} rpc.response u=1 r=1 a=200",
    )
    server = chunk(
        process("s1", 2, "server", boot="other"),
        f"ev 0 clock.anchor a={WALL0 + skew_ns}",
        'rec resource 1 kind="rpc" trace_id="'
        + "1" * 32
        + '" span_id="'
        + "b" * 16
        + '" parent_span_id="'
        + "a" * 16
        + '" method="GET" target="/x"',
        f"ev {1000000 + latency_ns} msg.recv u=1 r=1",
        f"ev {1000000 + latency_ns + 50_000} rpc.reply u=1 r=1 a=200",
    )
    run = analyze_run(tmp_path, client=client, server=server)
    return sorted(f.kind for f in run.findings)


def test_skew_within_a_millisecond_is_not_reported(tmp_path: Path) -> None:
    """0.5 ms of skew with a 0.1 ms wire: the interval includes +/-1 ms values, so no finding;
    the reply still runs backwards in raw time, which false-causality reports."""
    assert _pair(tmp_path, 500_000) == ["false-causality"]


def test_skew_beyond_a_millisecond_is_reported(tmp_path: Path) -> None:
    """5 ms of skew bracketed within 0.1 ms: clock-skew and false-causality."""
    assert _pair(tmp_path, 5_000_000) == ["clock-skew", "false-causality"]


def test_agreeing_clocks_give_no_clock_findings(tmp_path: Path) -> None:
    """Two machines whose clocks agree: raw order is causal order; nothing to say."""
    assert _pair(tmp_path, 0) == []


def test_a_one_sided_skew_says_the_bound_it_proved() -> None:
    """OTel spans (Python SDK through ``collect``) of a backend run 300 ms behind under
    faketime, its requests only bounding the offset from one side: the summary's "at least"
    is the bound the explanation proves (+299.411 ms), not the larger offset chosen to
    align (+299.919 ms: the summary said "at least 299.9 ms")."""
    a = analyze(load([DATA / "otel_backend_300ms_behind.wtrace"]))
    (f,) = [f for f in a.findings if f.kind == "clock-skew"]
    extra = dict(f.extra)
    assert extra["offset_max_ns"] is None and extra["offset_ns"] > extra["offset_min_ns"]
    bound = fmt_duration(extra["offset_min_ns"])
    assert f.summary.endswith(f"is at least {bound} behind frontend's"), f.summary
