"""The text report cuts trace-supplied names as the HTML report does: a megabyte service or
span name imported from OTLP is its head, "(N characters left out)" and its tail, not
megabyte lines."""

from __future__ import annotations

import json
from pathlib import Path

from wispkit import wisp

NAME = 1_000_000


def _otlp(service: str, span: str) -> dict[str, object]:
    """A client span calling a server span of another service, both named ``span``."""
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"

    def one(sid: str, parent: str, kind: int, start: int) -> dict[str, object]:
        return {
            "traceId": trace,
            "spanId": sid,
            "parentSpanId": parent,
            "name": span,
            "kind": kind,
            "startTimeUnixNano": str(1_700_000_000_000_000_000 + start),
            "endTimeUnixNano": str(1_700_000_000_000_000_000 + start + 1_000_000),
            "attributes": [{"key": "http.method", "value": {"stringValue": "GET"}}],
        }

    def resource(name: str, spans: list[dict[str, object]]) -> dict[str, object]:
        attrs = [{"key": "service.name", "value": {"stringValue": name}}]
        return {"resource": {"attributes": attrs}, "scopeSpans": [{"spans": spans}]}

    return {
        "resourceSpans": [
            resource(service, [one("00f067aa0ba902b7", "", 3, 0)]),
            resource("short", [one("00f067aa0ba902b8", "00f067aa0ba902b7", 2, 100)]),
        ]
    }


def test_megabyte_names_are_cut_in_the_text_report(tmp_path: Path) -> None:
    """Every line stays short, the cut says how much it left out, and head and tail show."""
    service = "S" + "s" * (NAME - 2) + "Z"
    span = "P" + "p" * (NAME - 2) + "Q"
    path = tmp_path / "long.json"
    path.write_text(json.dumps(_otlp(service, span)))
    done = wisp("analyze", str(path))
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert len(out) < 100_000, f"{len(out):,} characters of output"
    assert max(map(len, out.splitlines())) < 1_500
    assert "characters left out" in out
    assert "Sssss" in out and "sssZ" in out
    assert "short" in out


def test_json_keeps_the_whole_name(tmp_path: Path) -> None:
    """Only the text for a person is cut: the JSON document carries the name as it came."""
    service = "s" * NAME
    path = tmp_path / "long.json"
    path.write_text(json.dumps(_otlp(service, "GET /")))
    done = wisp("analyze", "--format", "json", str(path))
    assert done.returncode in (0, 1), done.stderr
    services = {p["service"] for p in json.loads(done.stdout)["processes"]}
    assert service in services
