"""Completeness findings: dropped context per hop, broken links, orphaned units."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from golden.tracetext import WALL0, analyze_run, chunk, process
from willowisp.analysis import analyze_paths
from willowisp.analysis.finding import Finding
from willowisp.cli.run import build_env

ANCHOR = f"ev 0 clock.anchor a={WALL0}"


def _kinds(findings: tuple[Finding, ...], kind: str) -> list[Finding]:
    return [f for f in findings if f.kind == kind]


def _record(tmp_path: Path, code: str) -> Path:
    """Run ``code`` under the agent as ``willowisp run`` would; return the run folder."""
    out = tmp_path / "run"
    script = tmp_path / "shop.py"
    script.write_text(textwrap.dedent(code))
    env = build_env(str(out), "full", 1.0, [], None)
    r = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok"], r.stdout
    return out


SERVER = """
    import http.client, threading, urllib.request
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    seen = []
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("traceparent"))
            self.send_response(200); self.end_headers()
        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(self.headers.get("traceparent"))
            self.send_response(204); self.end_headers()
        def log_message(self, *a):
            pass
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True, name="server").start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    urllib.request.urlopen(base + "/health").read()
"""


def test_recorded_header_stripping_client_is_dropped_context(tmp_path: Path) -> None:
    """A real client whose bytes lose traceparent after injection: one finding for the hop."""
    out = _record(
        tmp_path,
        SERVER
        + """
    class StripTraceparent(http.client.HTTPConnection):
        # what a header-filtering proxy does, in one class: the agent injects traceparent,
        # the bytes that leave do not carry it
        def send(self, data):
            if isinstance(data, bytes):
                lines = data.split(b"\\r\\n")
                data = b"\\r\\n".join(
                    x for x in lines if not x.lower().startswith(b"traceparent:")
                )
            super().send(data)
    for _ in range(2):
        conn = StripTraceparent("127.0.0.1", srv.server_address[1])
        conn.request("POST", "/charge?order=7", body=b"{}")
        conn.getresponse().read()
        conn.close()
    srv.shutdown()
    assert seen[0] is not None and seen[1:] == [None, None], seen
    print("ok")
""",
    )
    a = analyze_paths([out])
    (f,) = _kinds(a.findings, "dropped-context")
    assert f.severity == "warning"
    assert f.summary == (
        "dropped-context: shop → shop POST /charge: "
        "2 requests sent with trace context arrived without it"
    )
    extra = dict(f.extra)
    assert extra["count"] == 2 and extra["received"] == 2
    assert extra["hop"]["method"] == "POST" and extra["hop"]["target"] == "/charge"
    assert extra["hop"]["from"]["libraries"] == ["http.client"]
    assert extra["hop"]["to"]["libraries"] == ["http.server"]
    assert f.explanation[0].startswith("shop (python, http.client) sent 2 POST /charge requests")
    assert "with no traceparent" in f.explanation[1]
    assert "linked requests from shop to 127.0.0.1:" in f.explanation[3]
    assert f.events == () and f.units == ()  # about the hop, not a request
    assert len(f.explanation) == 4 and all("\n" not in s for s in f.explanation)
    assert not _kinds(a.findings, "broken-link") and not _kinds(a.findings, "orphan-unit")


def test_recorded_traced_calls_are_not_dropped_context(tmp_path: Path) -> None:
    """The same program with normal traced POSTs reports no completeness finding."""
    out = _record(
        tmp_path,
        SERVER
        + """
    for _ in range(2):
        urllib.request.urlopen(base + "/charge?order=7", data=b"{}").read()
    srv.shutdown()
    assert all(seen), seen
    print("ok")
""",
    )
    kinds = {f.kind for f in analyze_paths([out]).findings}
    assert not kinds & {"dropped-context", "broken-link", "orphan-unit"}, kinds


def _client(pid_hex: str, pid: int, service: str, port: int, *, context: bool = True) -> str:
    ctx = 'trace_id="11111111111111111111111111111111" span_id="1111111111111101" '
    return chunk(
        process(pid_hex, pid, service, run_root=1),
        ANCHOR,
        'rec location 1 file="/app/client.py" line=9',
        'rec unit 1 kind="thread" name="MainThread" parent=0',
        f'rec resource 1 kind="rpc" {ctx if context else ""}protocol="http" library="requests" '
        f'method="PUT" target="/cart/42?x=1" peer="10.0.0.3:{port}"',
        "ev 10 unit.start u=1",
        "ev 20 msg.send u=1 r=1 l=1",
        "ev 21 unit.block u=1 r=1 a=7 l=1",
        "ev 90 rpc.response u=1 r=1 a=200 l=1",
    )


def _server(pid_hex: str, pid: int, service: str, *, parent: str = "") -> str:
    ctx = f'trace_id="2222222222222222222222222222222{pid % 10}" span_id="2222222222222201" '
    if parent:
        ctx += f'parent_span_id="{parent}" '
    return chunk(
        process(pid_hex, pid, service),
        ANCHOR,
        'rec location 1 file="/srv/cart.py" line=30',
        'rec unit 1 kind="thread" name="MainThread" parent=0',
        f'rec resource 1 kind="rpc" {ctx}protocol="http" library="aiohttp" '
        'method="PUT" target="/cart/42" peer="10.0.0.1:5555"',
        "ev 10 unit.start u=1",
        "ev 40 msg.recv u=1 r=1 l=1",
        "ev 50 rpc.reply u=1 r=1 a=200 l=1",
    )


def test_unique_listener_identifies_the_hop_and_the_id_is_stable(tmp_path: Path) -> None:
    """Without a linked request, the only server of that method and path is the hop; pids,
    ports and process ids do not change the finding's id."""
    one = analyze_run(tmp_path / "a", c=_client("c1", 10, "web", 8000), s=_server("51", 20, "cart"))
    two = analyze_run(tmp_path / "b", c=_client("c2", 11, "web", 9000), s=_server("52", 21, "cart"))
    (f1,), (f2,) = _kinds(one.findings, "dropped-context"), _kinds(two.findings, "dropped-context")
    assert f1.id == f2.id
    assert "web → cart PUT /cart/42" in f1.summary
    assert "cart is the only traced process" in f1.explanation[-1]
    assert "(python, requests)" in f1.explanation[0] and "(python, aiohttp)" in f1.explanation[1]


def test_ambiguous_listeners_are_not_guessed(tmp_path: Path) -> None:
    """Two processes received the same request without context: no finding, no guess."""
    a = analyze_run(
        tmp_path,
        c=_client("c1", 10, "web", 8000),
        s1=_server("51", 20, "cart"),
        s2=_server("53", 23, "cart-canary"),
    )
    assert not _kinds(a.findings, "dropped-context")


def test_context_received_that_the_caller_did_not_send(tmp_path: Path) -> None:
    """The reverse: the caller recorded no context, the callee got some (a sidecar's)."""
    a = analyze_run(
        tmp_path,
        c=_client("c1", 10, "web", 8000, context=False),
        s=_server("51", 20, "cart", parent="9999999999999999"),
    )
    (f,) = _kinds(a.findings, "dropped-context")
    assert "arrived with trace context the caller did not send" in f.summary
    assert "recorded no trace context" in f.explanation[0]
    assert not _kinds(a.findings, "broken-link")


def test_unit_create_naming_no_record_is_a_broken_link(tmp_path: Path) -> None:
    """unit.create of a unit number with no record: a broken link at that place."""
    a = analyze_run(
        tmp_path,
        p=chunk(
            process("aa", 1, "svc", run_root=1),
            ANCHOR,
            'rec location 1 file="/x/pool.py" line=7',
            'rec unit 1 kind="thread" name="MainThread" parent=0',
            "ev 10 unit.start u=1",
            "ev 20 unit.create u=1 a=5 l=1",
        ),
    )
    (f,) = a.findings
    assert f.kind == "broken-link" and "unit.create event" in f.summary
    assert f.explanation[0] == "MainThread (pid 1, svc, python) created unit 5 (pool.py:7)"


def test_parentless_unit_sharing_a_lock_is_not_orphaned(tmp_path: Path) -> None:
    """A thread with no parent that takes a lock others take is ordered: not an orphan;
    one that only sleeps by itself is."""
    head = [
        process("aa", 1, "svc", run_root=1),
        ANCHOR,
        'rec unit 1 kind="thread" name="MainThread" parent=0',
        'rec unit 2 kind="thread" name="worker" parent=1',
        'rec unit 3 kind="thread" name="poller" parent=0',
        'rec resource 1 kind="lock" name="mu"',
        'rec resource 2 kind="sleep" name="time.sleep"',
        "ev 10 unit.start u=1",
        "ev 11 unit.create u=1 a=2",
        "ev 12 unit.start u=2 a=1",
        "ev 13 unit.start u=3",
        "ev 20 lock.acquired u=2 r=1",
        "ev 21 lock.release u=2 r=1",
    ]
    shared = analyze_run(
        tmp_path / "a", p=chunk(*head, "ev 30 lock.acquired u=3 r=1", "ev 31 lock.release u=3 r=1")
    )
    assert not _kinds(shared.findings, "orphan-unit")
    alone = analyze_run(
        tmp_path / "b", p=chunk(*head, "ev 30 unit.block u=3 r=2 a=9", "ev 40 unit.wake u=3 r=2")
    )
    (f,) = _kinds(alone.findings, "orphan-unit")
    assert f.severity == "info" and [u.name for u in f.units] == ["poller"]


def test_main_and_runtime_threads_are_not_orphans(tmp_path: Path) -> None:
    """The shapes of a real Java run (main starts and joins two threads, but the JVM's
    Signal Dispatcher is the only unit that records creating any) and a tokio run (two
    tokio-rt-worker threads with only a unit.start): no orphan-unit, although none of them
    has a parent; a parentless thread that does work by itself still is one."""
    java = analyze_run(
        tmp_path / "java",
        p=chunk(
            process("aa", 1, "Dead", run_root=1).replace('"python"', '"java"'),
            ANCHOR,
            'rec unit 1 kind="thread" name="main" parent=0',
            'rec unit 2 kind="thread" name="Signal Dispatcher" parent=0',
            'rec unit 3 kind="thread" name="SIGINT handler" parent=2',
            'rec unit 4 kind="thread" name="Reference Handler" parent=0',
            'rec unit 5 kind="thread" name="helper" parent=0',
            'rec resource 1 kind="lock" name="java.lang.Object@0x1"',
            'rec resource 2 kind="lock" name="java.lang.Object@0x2"',
            'rec resource 3 kind="lock" name="java.lang.Object@0x3"',
            'rec resource 4 kind="sleep" name="Thread.sleep"',
            "ev 10 unit.start u=1",
            "ev 11 lock.acquired u=1 r=1",
            "ev 12 lock.release u=1 r=1",
            "ev 13 unit.create u=2 a=3",
            "ev 14 unit.start u=3 a=2",
            "ev 15 lock.acquired u=4 r=2",
            "ev 16 lock.release u=4 r=2",
            "ev 20 unit.block u=5 r=4 a=9",
            "ev 30 unit.wake u=5 r=4",
        ),
    )
    (f,) = _kinds(java.findings, "orphan-unit")
    assert [u.name for u in f.units] == ["helper"]
    assert "the process has a root, main (pid 1, Dead, java)" in f.explanation[1]
    rust = analyze_run(
        tmp_path / "rust",
        p=chunk(
            process("bb", 2, "rustapp", run_root=1).replace('"python"', '"rust"'),
            ANCHOR,
            'rec unit 1 kind="thread" name="main" parent=0',
            'rec unit 2 kind="task" name="block_on" parent=1',
            'rec unit 3 kind="thread" name="tokio-rt-worker" parent=0',
            'rec unit 4 kind="thread" name="tokio-rt-worker" parent=0',
            "ev 10 unit.start u=1",
            "ev 11 unit.create u=1 a=2",
            "ev 12 unit.start u=2 a=1",
            "ev 13 unit.start u=3",
            "ev 14 unit.start u=4",
            "ev 15 unit.run u=2",
        ),
    )
    assert not _kinds(rust.findings, "orphan-unit")
