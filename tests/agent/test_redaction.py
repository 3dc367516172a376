"""--redact: what a trace keeps of request headers, query values and entry bodies."""

from __future__ import annotations

import json

import pytest
from tests.agent.tracekit import read_run, run_program

from willowisp.errors import UsageError
from willowisp.model.redaction import DEFAULT_HEADERS, parse_redaction

PROGRAM = """
import http.server, threading, urllib.request

class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
req = urllib.request.Request(
    f"http://127.0.0.1:{srv.server_address[1]}/orders?user=alice&card=4111",
    data=b'{"item": 42}',
    headers={"X-Request-Id": "r-1", "Authorization": "Bearer secret", "User-Agent": "ua/1"},
)
urllib.request.urlopen(req).read()
srv.shutdown()
"""


def _server_resource(out: str) -> dict[str, object]:
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    (res,) = [r for r in p.resources.values() if r.get("library") == "http.server"]
    return res


def test_defaults_keep_shapes_not_values(tmp_path):
    out = str(tmp_path / "run")
    r = run_program(PROGRAM, out)
    assert r.returncode == 0, r.stderr
    res = _server_resource(out)
    assert res["target"] == "/orders?user=&card="
    headers = json.loads(str(res["headers"]))
    assert "authorization" not in headers and "x-request-id" not in headers
    assert headers["user-agent"] == "ua/1"
    assert "body" not in res


def test_redact_items_keep_more(tmp_path):
    out = str(tmp_path / "run")
    items = parse_redaction(["header:X-Request-Id", "-header:user-agent", "bodies", "query-values"])
    r = run_program(PROGRAM, out, env_extra={"WILLOWISP_REDACT": ",".join(items.items())})
    assert r.returncode == 0, r.stderr
    res = _server_resource(out)
    assert res["target"] == "/orders?user=alice&card=4111"
    headers = json.loads(str(res["headers"]))
    assert headers["x-request-id"] == "r-1"
    assert "user-agent" not in headers and "authorization" not in headers
    assert res["body"] == '{"item": 42}'
    assert (res["body_bytes"], res["body_cut"]) == (12, 0)


def test_a_bad_redact_value_is_a_fault_and_the_defaults_hold(tmp_path):
    out = str(tmp_path / "run")
    r = run_program(PROGRAM, out, env_extra={"WILLOWISP_REDACT": "everything"})
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert any("everything" in f["message"] for f in p.faults.values())
    (res,) = [x for x in p.resources.values() if x.get("library") == "http.server"]
    assert res["target"] == "/orders?user=&card="


@pytest.mark.parametrize("item", ["header:", "header:bad name", "all", "bodies=yes"])
def test_bad_items_are_refused(item):
    with pytest.raises(UsageError, match="--redact"):
        parse_redaction([item])


def test_items_round_trip():
    r = parse_redaction(["header:x-a", "-header:accept", "bodies"])
    assert parse_redaction(r.items()) == r
    assert parse_redaction([]).headers == DEFAULT_HEADERS
