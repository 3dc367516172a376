"""An imported trace and a recorded trace of the same system link through the trace ids
that crossed the wire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from willowisp.analysis.engine import analyze
from willowisp.cli.main import main
from willowisp.ingest.load import load

SERVER = Path(__file__).parent / "programs" / "otel_server.py"
CLIENT = """
import sys, urllib.request
for item in ("apple", "pear"):
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/stock/{item}").read()
"""


def test_recorded_client_links_to_an_otel_sdk_server(tmp_path: Path) -> None:
    """A client recorded by Willowisp calls a service that only the OpenTelemetry SDK
    instruments; its OTLP JSON, analyzed with the run (directly, or imported into a
    .wtrace), links both requests to their server spans by the propagated context."""
    spans = tmp_path / "inventory.json"
    server = subprocess.Popen(
        [sys.executable, str(SERVER), str(spans)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = server.stdout.readline().strip()
        assert port.isdigit()
        client = tmp_path / "client.py"
        client.write_text(CLIENT)
        run = tmp_path / "run"
        r = subprocess.run(
            [sys.executable, "-m", "willowisp", "run", "--out", str(run), "--"]
            + [sys.executable, str(client), port],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert r.returncode == 0, r.stderr
        server.stdin.write("stop\n")
        server.stdin.close()
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        for pipe in (server.stdin, server.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
    imported = tmp_path / "inventory.wtrace"
    assert main(["import", str(spans), "-o", str(imported)]) == 0
    for inputs in ([run, spans], [run, imported]):
        doc = analyze(load(inputs)).document()
        assert {p["runtime"] for p in doc["processes"]} == {"python"}
        assert {p["service"] for p in doc["processes"]} >= {"inventory"}
        (hop,) = [h for h in doc["hops"] if h["to"]["service"] == "inventory"]
        assert (hop["count"], hop["linked"]) == (2, 2)
        assert hop["provenance"] == {"traceparent": 2}
