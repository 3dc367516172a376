"""``--junit FILE``: the gate as JUnit XML, which every CI system renders.

One ``<testsuite name="willowisp validate">`` holding one ``<testcase>`` per problem, named
by what is stable across builds: the problem's id and kind (``F-5d5fbe dropped-context``),
so a CI system tracks the same broken hop as the same test from build to build (trace ids
are random per run and go in the text). Each fails with exactly one ``<failure>``: Jenkins
and GitLab read only the first of several. ``type`` is the kind, ``message`` the problem's
line, the text its id, the hop, the story and every trace it was seen in. A problem a
baseline accepted is a ``<skipped>`` testcase of the same name, so accepting one does not
make its test vanish. One passing testcase, ``checked traces``, is always there, listing
each checked trace and its entry in ``<system-out>``: a clean gate is one passing test,
not an empty report that CI systems take for a missing one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from willowisp.display import clip
from willowisp.validate.gate import Report
from willowisp.validate.problems import Problem

CLASSNAME = "willowisp.validate"
CHECKED = "checked traces"  # the name of the testcase that is always there
MAX_TRACES = 50  # trace ids listed in a failure's text; the rest are counted


def render_junit(report: Report, seconds: float) -> bytes:
    problems, accepted = report.problems, report.accepted
    suite = ET.Element(
        "testsuite",
        name="willowisp validate",
        tests=str(1 + len(problems) + len(accepted)),
        failures=str(len(problems)),
        errors="0",
        skipped=str(len(accepted)),
        time=f"{seconds:.3f}",
    )
    checked = _case(suite, CHECKED)
    ET.SubElement(checked, "system-out").text = f"{report.summary()}\n" + "".join(
        f"{case.id} {case.entry}\n" for case in report.traces
    )
    for p in problems:
        _failure(_case(suite, _name(p)), p, len(report.traces))
    for p in accepted:
        ET.SubElement(
            _case(suite, _name(p)),
            "skipped",
            message=f"accepted by the baseline: {p.line(len(report.traces))}",
        )
    root = ET.Element(
        "testsuites",
        name="willowisp",
        tests=suite.get("tests", "0"),
        failures=suite.get("failures", "0"),
        skipped=suite.get("skipped", "0"),
    )
    root.append(suite)
    ET.indent(root)
    data: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return data


def _name(p: Problem) -> str:
    """A testcase's name: only what is the same in every build that has the problem."""
    return f"{p.id} {p.kind}"


def _case(suite: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=CLASSNAME, name=name, time="0")


def _failure(case: ET.Element, p: Problem, total_traces: int) -> None:
    f = ET.SubElement(case, "failure", type=p.kind, message=p.line(total_traces))
    lines = [f"{p.id} {p.kind}"]
    if p.hop is not None:
        lines.append(
            f"hop: {clip(p.hop.label())}" + (f" (sent at {p.hop.where})" if p.hop.where else "")
        )
    lines += p.shown_detail()
    if p.traces:
        more = len(p.traces) - MAX_TRACES
        lines.append(
            f"traces ({len(p.traces)}): {' '.join(p.traces[:MAX_TRACES])}"
            + (f" (+{more} more)" if more > 0 else "")
        )
    f.text = "\n".join(lines)
