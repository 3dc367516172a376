"""``export --to otlp-json``: imported OTLP spans come back whole; recorded units and hops
become spans an OTLP backend joins across services."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from willowisp.cli.main import main
from willowisp.export.otlp_json import proto_to_json

APP = Path(__file__).parents[1] / "ingest" / "programs" / "otel_sdk_app.py"


def spans_by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        s["spanId"]: s
        for rs in doc["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    }


def resources_by_service(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for rs in doc["resourceSpans"]:
        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
        out.setdefault(attrs["service.name"]["stringValue"], []).append(rs)
    return out


@pytest.fixture(scope="module")
def sdk_outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("otel")
    for name in ("spans.json", "spans.pb"):
        r = subprocess.run(
            [sys.executable, str(APP), str(d / name)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
    return d / "spans.json", d / "spans.pb"


def test_round_trip_keeps_every_span_field(
    sdk_outputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTLP JSON and OTLP protobuf from the real SDK → import → .wtrace → export: every
    span comes back with every field (events, links, status message, array attributes,
    flags), the resources and scopes too; protobuf comes back in OTLP/JSON's form."""
    js, pb = sdk_outputs
    wt = tmp_path / "both.wtrace"
    assert main(["import", str(js), str(pb), "-o", str(wt)]) == 0
    out = tmp_path / "back.json"
    assert main(["export", str(wt), "--to", "otlp-json", "-o", str(out)]) == 0
    back = json.loads(out.read_text())
    original = json.loads(js.read_text())
    from_proto = proto_to_json(pb.read_bytes())
    want = spans_by_id(original) | spans_by_id(from_proto)
    got = spans_by_id(back)
    assert len(want) == 16 and got == want
    charged = [s for s in want.values() if s.get("events")]
    assert charged and all(len(s["traceId"]) == 32 for s in want.values())
    assert any(s.get("links") for s in spans_by_id(from_proto).values())
    assert any(s.get("status", {}).get("message") == "declined" for s in want.values())
    # resources and scopes as they came, nothing synthesized for imported processes
    assert resources_by_service(back).keys() == {"shop", "pay"}
    for rs in original["resourceSpans"]:
        assert rs in back["resourceSpans"]
    assert all(
        ss["scope"].get("name") != "willowisp"
        for rs in back["resourceSpans"]
        for ss in rs["scopeSpans"]
    )


def test_export_of_the_foreign_file_itself(sdk_outputs: tuple[Path, Path], tmp_path: Path) -> None:
    js, _ = sdk_outputs
    out = tmp_path / "back.json"
    assert main(["export", str(js), "--to", "otlp-json", "-o", str(out)]) == 0
    assert spans_by_id(json.loads(out.read_text())) == spans_by_id(json.loads(js.read_text()))


PROGRAM = """
import threading, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
t = threading.Thread(target=srv.serve_forever, name="server")
t.start()
for _ in range(2):
    with lock:
        pass
    urllib.request.urlopen(f"http://127.0.0.1:{srv.server_address[1]}/price?id=7").read()
srv.shutdown()
t.join()
"""


def test_recorded_units_and_hops_become_spans(tmp_path: Path) -> None:
    """A recorded run: one span per unit (child of its creator), waits as span events, each
    hop side a CLIENT/SERVER span with the ids that crossed the wire — so importing the
    export links the same hops again."""
    prog = tmp_path / "prog.py"
    prog.write_text(PROGRAM)
    run = tmp_path / "run"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "willowisp",
            "run",
            "--out",
            str(run),
            "--",
            sys.executable,
            str(prog),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = tmp_path / "spans.json"
    assert main(["export", str(run), "--to", "otlp-json", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    from willowisp.analysis.engine import analyze
    from willowisp.ingest.load import load

    a = analyze(load([run]))
    spans = list(spans_by_id(doc).values())
    unit_spans = [s for s in spans if s["kind"] == 1]
    assert len(unit_spans) == sum(1 for _ in a.trace.units)
    names = {s["name"] for s in unit_spans}
    assert any(n.startswith("thread server") for n in names)
    by_id = {s["spanId"]: s for s in spans}
    children = [s for s in unit_spans if s.get("parentSpanId")]
    assert children and all(by_id[s["parentSpanId"]]["kind"] == 1 for s in children)
    clients = [s for s in spans if s["kind"] == 3]
    servers = [s for s in spans if s["kind"] == 2]
    assert len(clients) == 2 and len(servers) == 2
    for c in clients:
        (srv,) = [s for s in servers if s.get("parentSpanId") == c["spanId"]]
        assert srv["traceId"] == c["traceId"]
        assert int(c["startTimeUnixNano"]) <= int(srv["startTimeUnixNano"])
        attrs = {x["key"]: x["value"]["stringValue"] for x in c["attributes"]}
        assert attrs["http.request.method"] == "GET" and attrs["url.path"] == "/price"
    assert all(s["links"][0]["spanId"] in by_id for s in clients + servers)
    # re-imported, the export's spans link client to server again
    back = analyze(load([out])).document()
    (hop,) = [h for h in back["hops"] if h["protocol"] == "http" and h["count"] == 2]
    assert hop["linked"] == 2
