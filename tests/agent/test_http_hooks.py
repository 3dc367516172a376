"""stdlib HTTP: the client injects traceparent and records send/wait/response; the server
extracts it and records receive/reply; the two sides share the span id that crossed."""

from __future__ import annotations

import pytest
from tracekit import read_run, run_program


def test_client_and_server_link_through_traceparent(tmp_path):
    """One process serving and calling itself over loopback: both rpc resources pair up."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, urllib.request
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        seen = []
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.headers.get("traceparent"))
                self.send_response(204)
                self.end_headers()
            def log_message(self, *a):
                pass
        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True, name="server").start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/items/42?secret=hunter2&x=1"
        with urllib.request.urlopen(url) as resp:
            print(resp.status, seen[0])
        srv.shutdown()
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    status, header = r.stdout.split()
    assert status == "204"
    p = read_run(out)["prog"]
    rpcs = {rid: res for rid, res in p.resources.items() if res["kind"] == "rpc"}
    client = next(rid for rid, res in rpcs.items() if res["library"] == "urllib")
    server = next(rid for rid, res in rpcs.items() if res["library"] == "http.server")
    c, s = rpcs[client], rpcs[server]
    assert header == f"00-{c['trace_id']}-{c['span_id']}-01"
    assert s["trace_id"] == c["trace_id"] and s["parent_span_id"] == c["span_id"]
    assert s["span_id"] != c["span_id"]
    assert c["target"] == "/items/42?secret=&x=" and "hunter2" not in str(p.resources)
    assert c["method"] == "GET" and s["method"] == "GET"
    ck = [e.kind for e in p.events if e.res == client]
    assert ck == ["msg.send", "unit.block", "rpc.response"]
    assert [e.arg for e in p.events if e.res == client][-1] == 204
    sk = [e.kind for e in p.events if e.res == server]
    assert sk == ["msg.recv", "rpc.reply"]
    send = next(e for e in p.events if e.res == client and e.kind == "msg.send")
    assert p.where(send) == "prog.py:15"


def test_existing_traceparent_is_kept(tmp_path):
    """A request that already carries traceparent (another tracer) is recorded, not re-injected."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        seen = []
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append(self.headers.get_all("traceparent"))
                self.send_response(200); self.end_headers()
            def log_message(self, *a): pass
        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1])
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        conn.request("GET", "/", headers={"traceparent": tp})
        conn.getresponse().read()
        print(seen[0])
        srv.shutdown()
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01']"
    p = read_run(out)["prog"]
    client = next(res for res in p.resources.values() if res.get("library") == "http.client")
    assert client["span_id"] == "00f067aa0ba902b7"


SAMPLING_PROGRAM = """
import threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
seen = []
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        seen.append(self.headers.get("traceparent"))
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
for _ in range(5):
    urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/").read()
print(" ".join(tp[-2:] for tp in seen))
srv.shutdown()
"""


@pytest.mark.parametrize(
    ("mode", "ratio", "flags", "recorded"),
    [("hops", "0", "00", 0), ("hops", "1", "01", 10), ("full", "0", "00", 10)],
)
def test_trace_ratio_decided_at_the_root_and_carried(tmp_path, mode, ratio, flags, recorded):
    """--trace-ratio decides sampling once at the root and carries it in traceparent's flag;
    --mode hops records only sampled hops, full mode records every hop."""
    out = str(tmp_path / "run")
    r = run_program(
        SAMPLING_PROGRAM, out, env_extra={"WILLOWISP_MODE": mode, "WILLOWISP_TRACE_RATIO": ratio}
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [flags] * 5
    p = read_run(out)["prog"]
    rpcs = [res for res in p.resources.values() if res["kind"] == "rpc"]
    assert len(rpcs) == recorded
    if mode == "hops":
        assert not [res for res in p.resources.values() if res["kind"] == "lock"]


def test_a_program_that_never_imports_http_server_does_not_get_it(tmp_path):
    """The agent imports neither http module; the client hooks go in at the program's import."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import socket, sys, threading
        print("http.server" in sys.modules, "http.client" in sys.modules)
        srv = socket.create_server(("127.0.0.1", 0))
        got = []

        def serve():  # a bare socket server: no http.server
            conn, _ = srv.accept()
            with conn:
                data = b""
                while b"\\r\\n\\r\\n" not in data:
                    data += conn.recv(4096)
                got.append(data)
                conn.sendall(b"HTTP/1.0 204 No Content\\r\\nContent-Length: 0\\r\\n\\r\\n")

        threading.Thread(target=serve, daemon=True).start()
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.getsockname()[1]}/ping") as resp:
            print(resp.status, b"traceparent: 00-" in got[0])
        print("http.server" in sys.modules)
    """,
        out,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["False False", "204 True", "False"]
    p = read_run(out)["prog"]
    assert not p.faults
    client = p.resource("GET /ping")
    assert p.resources[client]["library"] == "urllib"
    assert [e.kind for e in p.events if e.res == client] == [
        "msg.send",
        "unit.block",
        "rpc.response",
    ]


def test_server_extracts_b3_and_xray(tmp_path):
    """http.server continues a caller's B3 or X-Ray context when there is no traceparent."""
    out = str(tmp_path / "run")
    r = run_program(
        """
        import threading, http.client
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(204); self.end_headers()
            def log_message(self, *a): pass
        srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        import socket
        for header in ("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
                       "X-Amzn-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;"
                       "Parent=53995c3f42cd8ad8;Sampled=1"):
            s = socket.create_connection(srv.server_address)
            s.sendall(f"GET / HTTP/1.0\\r\\n{header}\\r\\n\\r\\n".encode())
            s.recv(1024)
            s.close()
        srv.shutdown()
        """,
        out,
    )
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    servers = [res for res in p.resources.values() if res.get("library") == "http.server"]
    got = {(res["propagation"], res["trace_id"], res["parent_span_id"]) for res in servers}
    assert got == {
        ("b3", "80f198ee56343ba864fe8b2a57d3eff7", "e457b5a2e4d86bd1"),
        ("xray", "5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"),
    }
