"""``willowisp validate --ci-mode``: checks on small span files, exit statuses, usage errors,
the baseline file and the ``[[contract]]`` table of willowisp.toml."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from willowisp.cli.main import main
from willowisp.errors import UsageError
from willowisp.project_config import load_project_config

T0 = 1_700_000_000_000_000_000
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


def _attrs(**kv: str) -> list[dict[str, Any]]:
    return [{"key": k.replace("__", "."), "value": {"stringValue": v}} for k, v in kv.items()]


class Spans:
    """An OTLP JSON export built span by span, one resource per service."""

    def __init__(self) -> None:
        self.by_service: dict[str, list[dict[str, Any]]] = {}
        self.n = 0

    def span(
        self, service: str, trace: str, parent: str, kind: int, at_ms: int, **attrs: str
    ) -> str:
        self.n += 1
        sid = f"{self.n:016x}"
        s: dict[str, Any] = {
            "traceId": trace * 32 if len(trace) == 1 else trace,
            "spanId": sid,
            "name": "op",
            "kind": kind,
            "startTimeUnixNano": str(T0 + at_ms * 1_000_000),
            "endTimeUnixNano": str(T0 + at_ms * 1_000_000 + 500_000),
            "attributes": _attrs(**attrs),
        }
        if parent:
            s["parentSpanId"] = parent
        self.by_service.setdefault(service, []).append(s)
        return sid

    def write(self, path: Path) -> Path:
        doc = {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": _attrs(service__name=name, telemetry__sdk__language="go")
                    },
                    "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}],
                }
                for name, spans in self.by_service.items()
            ]
        }
        path.write_text(json.dumps(doc))
        return path


HTTP = {"http__request__method": "POST", "url__path": "/orders"}


def checkout(s: Spans, trace: str, at_ms: int) -> str:
    """gateway receives POST /checkout and calls orders POST /orders: a whole trace."""
    entry = s.span(
        "gateway", trace, "", SERVER, at_ms, http__request__method="POST", url__path="/checkout"
    )
    call = s.span("gateway", trace, entry, CLIENT, at_ms + 1, **HTTP, server__address="orders")
    return s.span("orders", trace, call, SERVER, at_ms + 2, **HTTP)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, [line for line in out.splitlines() if line.strip()], err


def test_clean_traces_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Whole traces: exit 0, nothing on stdout, a count on stderr."""
    s = Spans()
    for i, t in enumerate("abc"):
        checkout(s, t, i * 10)
    code, lines, err = run_cli(capsys, "--ci-mode", str(s.write(tmp_path / "ok.json")))
    assert (code, lines) == (0, [])
    assert "3 trace(s)" in err and "0 problem(s)" in err


def test_incomplete_trace_reports_what_it_can(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A trace whose middle span is missing: the caller's request has no receiver
    (missing-span) and the callee names a parent nobody sent (broken-link). A trace made of
    one server span whose parent came from outside (no root recorded) is not a problem."""
    s = Spans()
    checkout(s, "a", 0)
    entry = s.span(
        "gateway", "b", "", SERVER, 10, http__request__method="POST", url__path="/checkout"
    )
    s.span(
        "gateway",
        "b",
        entry,
        CLIENT,
        11,
        http__request__method="GET",
        url__path="/auth",
        server__address="auth",
    )
    s.span("orders", "b", "00000000deadbeef", SERVER, 12, **HTTP)  # its caller is not here
    s.span(
        "stock",
        "c",
        "00000000cafef00d",
        SERVER,
        20,
        http__request__method="GET",
        url__path="/reserve",
    )
    code, lines, _ = run_cli(capsys, "--ci-mode", str(s.write(tmp_path / "gap.json")))
    assert code == 1
    kinds = sorted(line.split()[1].rstrip(":") for line in lines)
    assert kinds == ["broken-link", "missing-span"], lines
    assert all("b" * 16 in line for line in lines)
    broken = next(line for line in lines if "broken-link" in line)
    assert "orders (go" in broken and "POST /orders" in broken
    assert not any("c" * 16 in line for line in lines)


def _two_problems_in_one_trace(tmp_path: Path, trace: str) -> str:
    """A trace whose middle span is missing: a missing-span and a broken-link in it."""
    s = Spans()
    e = s.span("gateway", trace, "", SERVER, 10, http__request__method="POST", url__path="/c")
    s.span("gateway", trace, e, CLIENT, 11, **HTTP, server__address="elsewhere")
    s.span("orders", trace, "00000000deadbeef", SERVER, 12, **HTTP)
    return str(s.write(tmp_path / f"{trace}.json"))


def _junit_cases(path: Path) -> list[ET.Element]:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None
    return suite.findall("testcase")


def test_junit_one_failure_per_testcase_named_stably(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JUnit: one testcase per problem with exactly one <failure>, named by the problem's id
    and kind, so the same problems in a trace with another id are the same tests."""
    names = []
    for trace in "be":
        xml = tmp_path / f"{trace}.xml"
        code, lines, _ = run_cli(
            capsys, "--ci-mode", _two_problems_in_one_trace(tmp_path, trace), "--junit", str(xml)
        )
        assert code == 1 and len(lines) == 2
        cases = _junit_cases(xml)
        failing = [c for c in cases if c.findall("failure")]
        assert len(failing) == 2
        assert all(len(c.findall("failure")) == 1 for c in failing)
        for c in failing:
            [f] = c.findall("failure")
            pid, kind = c.get("name", "").split()
            assert f.get("type") == kind and (f.text or "").startswith(f"{pid} {kind}")
            assert trace * 32 in (f.text or "")  # the trace id is in the body, not the name
        names.append(sorted(c.get("name", "") for c in cases))
    assert names[0] == names[1]
    assert not any("b" * 16 in n for n in names[0])
    base, xml = tmp_path / "base.json", tmp_path / "acc.xml"
    path = _two_problems_in_one_trace(tmp_path, "b")
    run_cli(capsys, "--ci-mode", path, "--write-baseline", str(base))
    code, _, _ = run_cli(capsys, "--ci-mode", path, "--baseline", str(base), "--junit", str(xml))
    assert code == 0
    skipped = sorted(c.get("name", "") for c in _junit_cases(xml) if c.findall("skipped"))
    assert skipped == [n for n in names[0] if n != "checked traces"]


def test_message_hop_that_lost_its_context(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A producer that sent context and a consumer of the same topic that got none: one
    dropped-context problem naming both services."""
    s = Spans()
    served = checkout(s, "a", 0)
    s.span(
        "orders",
        "a",
        served,
        PRODUCER,
        3,
        messaging__system="kafka",
        messaging__destination__name="orders",
    )
    s.span(
        "ledger",
        "d",
        "",
        CONSUMER,
        5,
        messaging__system="kafka",
        messaging__destination__name="orders",
    )
    code, lines, _ = run_cli(capsys, "--ci-mode", str(s.write(tmp_path / "msg.json")))
    assert code == 1
    assert len(lines) == 1
    assert "dropped-context" in lines[0] and "orders (go" in lines[0] and "ledger (go" in lines[0]
    assert "kafka orders" in lines[0]


def test_last_n_is_by_root_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--last 1 checks only the trace that started last, whatever its order in the file."""
    s = Spans()
    s.span("orders", "e", "00000000deadbeef", SERVER, 50, **HTTP)
    bad = s.span(
        "gateway", "e", "", SERVER, 49, http__request__method="POST", url__path="/checkout"
    )
    s.span("gateway", "e", bad, CLIENT, 50, http__request__method="GET", url__path="/x")
    checkout(s, "f", 100)  # the latest, and whole
    path = str(s.write(tmp_path / "two.json"))
    assert run_cli(capsys, "--ci-mode", path)[0] == 1
    code, lines, err = run_cli(capsys, "--ci-mode", path, "--last", "1")
    assert (code, lines) == (0, [])
    assert "1 trace(s)" in err


def test_corrupt_file_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A .wtrace that is not one: one unreadable-file line naming it, exit 1 (not 2)."""
    bad = tmp_path / "svc-1-00000000-1.wtrace"
    bad.write_bytes(b"\x00garbage" * 64)
    code, lines, _ = run_cli(capsys, "--ci-mode", str(bad))
    assert code == 1
    assert len(lines) == 1 and "unreadable-file" in lines[0] and str(bad) in lines[0]


def test_sarif_uri_is_percent_encoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SARIF: a file under a folder with a space and non-ASCII letters gets a percent-encoded
    URI, relative to the working directory, '/' kept."""
    folder = tmp_path / "sp ace" / "é"
    folder.mkdir(parents=True)
    (folder / "svc-1-00000000-1.wtrace").write_bytes(b"\x00garbage" * 64)
    monkeypatch.chdir(tmp_path)
    sarif = tmp_path / "r.sarif"
    assert run_cli(capsys, "--ci-mode", str(folder), "--sarif", str(sarif))[0] == 1
    [result] = json.loads(sarif.read_text())["runs"][0]["results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "sp%20ace/%C3%A9/svc-1-00000000-1.wtrace"


def test_baseline_file_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--write-baseline then --baseline: exit 0; the SARIF marks the accepted result as
    suppressed, with the same fingerprint."""
    s = Spans()
    s.span("orders", "b", "00000000deadbeef", SERVER, 12, **HTTP)
    e = s.span("gateway", "b", "", SERVER, 10, http__request__method="POST", url__path="/c")
    s.span("gateway", "b", e, CLIENT, 11, **HTTP, server__address="elsewhere")
    path = str(s.write(tmp_path / "x.json"))
    base, sarif = tmp_path / "b.json", tmp_path / "r.sarif"
    assert run_cli(capsys, "--ci-mode", path, "--write-baseline", str(base))[0] == 0
    ids = {a["id"] for a in json.loads(base.read_text())["accepted"]}
    assert ids
    code, lines, err = run_cli(
        capsys, "--ci-mode", path, "--baseline", str(base), "--sarif", str(sarif)
    )
    assert (code, lines) == (0, [])
    assert f"{len(ids)} accepted" in err
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert {r["partialFingerprints"]["willowispProblemId/v1"] for r in results} == ids
    assert all(r["suppressions"][0]["kind"] == "external" for r in results)


def test_write_baseline_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--write-baseline with --json prints the JSON object: every problem found, accepted."""
    path = _two_problems_in_one_trace(tmp_path, "b")
    base = tmp_path / "base.json"
    code, lines, _ = run_cli(capsys, "--ci-mode", path, "--write-baseline", str(base), "--json")
    assert code == 0
    doc = json.loads("\n".join(lines))
    assert doc["schema"] == "willowisp.validate/1" and doc["ok"] is True
    assert doc["problems"] == []
    written = {a["id"] for a in json.loads(base.read_text())["accepted"]}
    assert {p["id"] for p in doc["accepted"]} == written and len(written) == 2


def test_contract_absent_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A contract whose second hop never happens fails every instance, as one problem."""
    s = Spans()
    checkout(s, "a", 0)
    checkout(s, "b", 10)
    cfg = tmp_path / "w.toml"
    cfg.write_text('[[contract]]\nentry = "http:POST /checkout"\npath = ["rpc", "queue"]\n')
    code, lines, _ = run_cli(
        capsys, "--ci-mode", str(s.write(tmp_path / "c.json")), "--config", str(cfg)
    )
    assert code == 1
    assert len(lines) == 1, lines
    assert "step 2 (queue) never happened" in lines[0] and "in 2 of 2" in lines[0]
    cfg.write_text('[[contract]]\nentry = "http:POST /checkout"\npath = ["http"]\n')
    assert run_cli(capsys, "--ci-mode", str(tmp_path / "c.json"), "--config", str(cfg))[0] == 0


def test_contract_that_matches_nothing_is_a_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contract whose entry no trace has (a typo) fails the gate unless a baseline accepts it."""
    s = Spans()
    checkout(s, "a", 0)
    path = str(s.write(tmp_path / "c.json"))
    cfg = tmp_path / "w.toml"
    cfg.write_text('[[contract]]\nentry = "http:POST /chekout"\npath = ["http"]\n')
    code, lines, _ = run_cli(capsys, "--ci-mode", path, "--config", str(cfg))
    assert code == 1
    [line] = lines
    assert " contract: contract 'http:POST /chekout'" in line
    assert "its entry http:POST /chekout never happened in these traces" in line
    assert "nothing was checked" in line
    code, lines, _ = run_cli(capsys, "--ci-mode", path, "--config", str(cfg), "--json")
    doc = json.loads("\n".join(lines))
    assert code == 1 and doc["ok"] is False
    assert [(p["kind"], p["traces"]) for p in doc["problems"]] == [("contract", [])]
    base = tmp_path / "b.json"
    run_cli(capsys, "--ci-mode", path, "--config", str(cfg), "--write-baseline", str(base))
    code, lines, _ = run_cli(
        capsys, "--ci-mode", path, "--config", str(cfg), "--baseline", str(base)
    )
    assert (code, lines) == (0, [])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of"),
        (["--ci-mode"], "no PATH"),
        (["--ci-mode", "/no/such/run"], "no such file"),
        (["--replay-against", "http://127.0.0.1:9", "x"], "no such file"),
        (["--ci-mode", ".", "--baseline", "a.json", "--write-baseline", "b.json"], "not both"),
    ],
)
def test_usage_errors_exit_two(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad usage: exit 2 and one line on stderr."""
    code, lines, err = run_cli(capsys, *args)
    assert code == 2 and lines == []
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_last_and_rate_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    """--last 0 and --rate 0x are refused by the parser (exit 2)."""
    for bad in (["--last", "0"], ["--rate", "0x"]):
        with pytest.raises(SystemExit) as exc:
            main(["validate", "--ci-mode", ".", *bad])
        assert exc.value.code == 2
    capsys.readouterr()


def test_bad_baseline_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A baseline that is not one: exit 2 naming it."""
    base = tmp_path / "b.json"
    base.write_text('{"accepted": []}')
    code, _, err = run_cli(capsys, "--ci-mode", str(tmp_path), "--baseline", str(base))
    assert code == 2 and str(base) in err and "schema" in err


def test_contract_table_is_checked(tmp_path: Path) -> None:
    """[[contract]]: parsed into a Contract; an unknown key, a missing path, an empty path or
    a bad entry is one error naming the file and the table."""
    cfg = tmp_path / "willowisp.toml"
    cfg.write_text(
        '[[contract]]\nname = "co"\nentry = "http:POST /checkout"\npath = ["HTTP", "queue"]\n'
    )
    (c,) = load_project_config(str(cfg)).contracts
    assert (c.name, c.entry.entry, c.path) == ("co", "http:POST /checkout", ("http", "queue"))
    assert c.entry.matches("http", "POST", "/checkout?x=1")
    for body, words in [
        ('entry = "http:POST /c"\npath = ["http"]\nhops = 2\n', "unknown key 'hops'"),
        ('entry = "http:POST /c"\n', "needs path"),
        ('entry = "http:POST /c"\npath = []\n', "non-empty list"),
        ('entry = "POST /c"\npath = ["http"]\n', "entry=PROTOCOL:WHAT"),
        ('entry = "http:POST /c"\npath = "http"\n', "wrong type"),
        ('entry = "htp:POST /c"\npath = ["http"]\n', "unknown protocol 'htp'"),
    ]:
        cfg.write_text("[[contract]]\n" + body)
        with pytest.raises(UsageError) as exc:
            load_project_config(str(cfg))
        assert str(cfg) in str(exc.value) and "[[contract]] #1" in str(exc.value)
        assert words in str(exc.value)
    cfg.write_text('[[contract]]\nentry = "http:/a"\npath = ["http"]\n' * 2)
    with pytest.raises(UsageError, match="two \\[\\[contract\\]\\] tables are named"):
        load_project_config(str(cfg))


def _wtrace(folder: Path, name: str, text: str) -> None:
    from willowisp.wtrace.text import from_text
    from willowisp.wtrace.writer import write_file

    folder.mkdir(exist_ok=True)
    write_file(folder / name, from_text(text, name))


_PROC = (
    'rec process 0 process_id="{pid}" pid={n} ppid=1 host="box" service="{svc}" '
    'runtime="python" boot_id="b" time_ns="t" fake_time="" simulated_offset_ns=0 segment=1'
)


def test_reverse_dropped_context_and_broken_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """shop sends POST /charge with no context and pay receives it with a parent nobody
    sent (a sidecar injected it): one reverse dropped-context, not a broken link. pay's
    GET /refund names a parent missing in a trace whose caller, shop, is recorded and not
    downstream of pay: a broken link."""
    run = tmp_path / "run"
    shop = "\n".join(
        [
            "wtrace 1.0",
            "chunk",
            _PROC.format(pid="11" * 16, n=10, svc="shop"),
            'rec location 1 file="/srv/shop/pay.py" line=9 func="charge"',
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            'rec resource 1 kind="rpc" name="GET /health" trace_id="' + "a1" * 16 + '" '
            'span_id="a1a1a1a1a1a1a101" protocol="http" library="urllib" method="GET" '
            'target="/health" peer="10.0.0.7:80"',
            'rec resource 2 kind="rpc" name="POST /charge" protocol="http" library="urllib" '
            'method="POST" target="/charge" peer="10.0.0.7:80"',
            'rec resource 3 kind="rpc" name="GET /refund" trace_id="' + "c3" * 16 + '" '
            'span_id="c3c3c3c3c3c3c301" protocol="http" library="urllib" method="GET" '
            'target="/refund" peer="10.0.0.8:80"',
            "seq 1",
            "ev 1000000000 clock.anchor a=1700000600000000000",
            "ev 1000100000 unit.start u=1",
            "ev 1001000000 msg.send u=1 r=1",
            "ev 1001900000 rpc.response u=1 r=1 a=200",
            "ev 1002000000 msg.send u=1 r=2 l=1",
            "ev 1002900000 rpc.response u=1 r=2 a=200",
            "ev 1003000000 msg.send u=1 r=3",
            "ev 1003900000 rpc.response u=1 r=3 a=200",
            "ev 1005000000 unit.end u=1",
            "end",
        ]
    )
    pay = "\n".join(
        [
            "wtrace 1.0",
            "chunk",
            _PROC.format(pid="22" * 16, n=20, svc="pay"),
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            'rec resource 1 kind="rpc" name="GET /health" trace_id="' + "a1" * 16 + '" '
            'span_id="a1a1a1a1a1a1a102" parent_span_id="a1a1a1a1a1a1a101" protocol="http" '
            'library="http.server" method="GET" target="/health"',
            'rec resource 2 kind="rpc" name="POST /charge" trace_id="' + "b2" * 16 + '" '
            'span_id="b2b2b2b2b2b2b202" parent_span_id="b2b2b2b2b2b2b201" protocol="http" '
            'library="http.server" method="POST" target="/charge"',
            'rec resource 3 kind="rpc" name="GET /refund" trace_id="' + "c3" * 16 + '" '
            'span_id="c3c3c3c3c3c3c303" parent_span_id="c3c3c3c3c3c3c3ff" protocol="http" '
            'library="http.server" method="GET" target="/refund"',
            "seq 1",
            "ev 2000000000 clock.anchor a=1700000600000000000",
            "ev 2000100000 unit.start u=1",
            "ev 2001400000 msg.recv u=1 r=1",
            "ev 2001500000 rpc.reply u=1 r=1 a=200",
            "ev 2002400000 msg.recv u=1 r=2",
            "ev 2002500000 rpc.reply u=1 r=2 a=200",
            "ev 2003400000 msg.recv u=1 r=3",
            "ev 2003500000 rpc.reply u=1 r=3 a=200",
            "end",
        ]
    )
    _wtrace(run, "shop-10-11111111-1.wtrace", shop)
    _wtrace(run, "pay-20-22222222-1.wtrace", pay)
    code, lines, _ = run_cli(capsys, "--ci-mode", str(run))
    assert code == 1
    assert len(lines) == 3, lines
    reverse = next(line for line in lines if "dropped-context" in line)
    assert "shop (python, urllib) → pay (python, http.server) http POST /charge" in reverse
    assert "caller did not send" in reverse and "b2" * 8 in reverse
    broken = next(line for line in lines if "broken-link" in line)
    assert "GET /refund" in broken and "c3" * 8 in broken
    missing = next(line for line in lines if "missing-span" in line)  # shop's /refund call
    assert "10.0.0.8:80" in missing


def test_replay_against_nothing_listening(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--replay-against a port nobody listens on: no answer at all is a usage error (exit 2)
    naming the URL, after the recorded entry requests were found and sent."""
    import socket

    s = Spans()
    checkout(s, "a", 0)
    path = str(s.write(tmp_path / "rec.json"))
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    code, lines, err = run_cli(
        capsys, "--replay-against", url, "--staging-run", str(tmp_path / "st"), path
    )
    assert code == 2 and lines == []
    assert url in err and "no answer" in err


def _golden_run(tmp_path: Path) -> Path:
    """A real .wtrace file of two chunks (the golden bank deadlock) in a run folder."""
    from willowisp.wtrace.text import from_text
    from willowisp.wtrace.writer import write_file

    case = Path(__file__).resolve().parents[1] / "golden" / "lock_order_killed" / "bank.wtxt"
    run = tmp_path / "run"
    run.mkdir()
    path = run / "bank-4242-4b1d0c0f-1.wtrace"
    write_file(path, from_text(case.read_text(), str(case)))
    return path


def test_file_cut_inside_its_first_chunk_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Header plus part of a chunk (40 bytes): one unreadable-file line naming it, exit 1."""
    path = _golden_run(tmp_path)
    path.write_bytes(path.read_bytes()[:40])
    code, lines, err = run_cli(capsys, "--ci-mode", str(path.parent))
    assert code == 1
    assert len(lines) == 1, lines
    assert "unreadable-file" in lines[0] and str(path) in lines[0]
    assert "no complete chunk" in lines[0]
    assert "in 1 file(s): 1 problem(s)" in err


def test_file_whose_last_chunk_is_torn_fails_the_gate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file cut inside its last chunk lost data: one line naming it and the cut, exit 1."""
    path = _golden_run(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    code, lines, err = run_cli(capsys, "--ci-mode", str(path.parent))
    assert code == 1
    torn = [line for line in lines if "unreadable-file" in line]
    assert len(torn) == 1 and str(path) in torn[0] and "cut short" in torn[0], lines
    assert "chunk 1 " in torn[0] and "writer killed" in torn[0]
    assert "in 1 file(s)" in err


def test_whole_file_passes_the_gate_on_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same file, whole, has no unreadable-file problem."""
    path = _golden_run(tmp_path)
    _, lines, _ = run_cli(capsys, "--ci-mode", str(path.parent))
    assert not [line for line in lines if "unreadable-file" in line], lines


def test_the_same_damage_in_another_run_has_the_same_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A damaged segment's problem id leaves out the pid and process id in its name, so a
    baseline accepting it holds in the next run (another pid) of the same service."""
    ids = []
    for pid, prefix in ((4242, "aaaaaaaa"), (5353, "bbbbbbbb")):
        (tmp_path / str(pid)).mkdir()
        path = _golden_run(tmp_path / str(pid))
        cut = path.with_name(f"bank-{pid}-{prefix}-1.wtrace")
        cut.write_bytes(path.read_bytes()[:-3])
        path.unlink()
        code, lines, _ = run_cli(capsys, "--ci-mode", str(cut.parent))
        assert code == 1
        [torn] = [line for line in lines if "unreadable-file" in line]
        ids.append(torn.split()[0])
    assert ids[0] == ids[1] and ids[0].startswith("F-"), ids
