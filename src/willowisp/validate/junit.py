"""``--junit FILE``: the gate as JUnit XML, which every CI system renders.

One ``<testsuite name="willowisp validate">``; one ``<testcase>`` per checked trace, named
by its trace id and its entry (``4bf92f35… POST /checkout at gateway``), failing with one
``<failure>`` per problem seen in it (``type`` is the problem kind, ``message`` its line,
the text its detail, naming the hop); and one ``recording`` testcase for problems about the
recording as a whole (unreadable files, agent drops and faults). Problems a baseline
accepted are not failures; they are listed in ``<system-out>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from willowisp.display import clip
from willowisp.validate.gate import Report
from willowisp.validate.problems import Problem

CLASSNAME = "willowisp.validate"


def render_junit(report: Report, seconds: float) -> bytes:
    by_trace: dict[str, list[Problem]] = {}
    run_level: list[Problem] = []
    for p in report.problems:
        if not p.traces:
            run_level.append(p)
        for t in p.traces:
            by_trace.setdefault(t, []).append(p)
    suite = ET.Element(
        "testsuite",
        name="willowisp validate",
        tests=str(len(report.traces) + 1),
        failures=str(len(by_trace) + (1 if run_level else 0)),
        errors="0",
        skipped="0",
        time=f"{seconds:.3f}",
    )
    rec = ET.SubElement(suite, "testcase", classname=CLASSNAME, name="recording", time="0")
    for p in run_level:
        _failure(rec, p, report)
    for case in report.traces:
        tc = ET.SubElement(
            suite,
            "testcase",
            classname=CLASSNAME,
            name=f"{case.id} {case.entry}",
            time="0",
        )
        for p in by_trace.get(case.id, []):
            _failure(tc, p, report)
    if report.accepted:
        out = ET.SubElement(suite, "system-out")
        out.text = "accepted by the baseline:\n" + "\n".join(
            p.line(len(report.traces)) for p in report.accepted
        )
    root = ET.Element(
        "testsuites",
        name="willowisp",
        tests=suite.get("tests", "0"),
        failures=suite.get("failures", "0"),
    )
    root.append(suite)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _failure(parent: ET.Element, p: Problem, report: Report) -> None:
    f = ET.SubElement(parent, "failure", type=p.kind, message=p.line(len(report.traces)))
    lines = [f"{p.id} {p.kind}"]
    if p.hop is not None:
        lines.append(
            f"hop: {clip(p.hop.label())}" + (f" (sent at {p.hop.where})" if p.hop.where else "")
        )
    lines += p.shown_detail()
    f.text = "\n".join(lines)
