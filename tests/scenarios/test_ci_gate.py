"""The CI gate on real recordings: a shop (gateway -> orders -> stock, real HTTP between
processes on 127.0.0.1) answers 200 checkouts; in two of them a client strips the
traceparent it was given, once on each hop. ``validate --ci-mode`` must name exactly those
two hops, write JUnit and SARIF that say the same, accept them through a baseline, check a
declared contract, report a corrupt file, and gate a staging system through
``--replay-against``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

PROGRAM = Path(__file__).parent / "programs" / "ci_shop.py"
GATEWAY_HOP = "gateway (python, http.client) → orders (python, http.server) http POST /orders"
ORDERS_HOP = "orders (python, http.client) → stock (python, http.server) http GET /reserve"
pytestmark = pytest.mark.slow


def wisp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 checkouts; request 57 loses its header gateway -> orders, 143 orders -> stock."""
    out = tmp_path_factory.mktemp("ci") / "run"
    r = wisp(
        "run", "--out", str(out), "--redact", "bodies", "--",
        sys.executable, str(PROGRAM), "drive", "200", "--break-gateway", "57",
        "--break-orders", "143",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "drive done" in r.stdout
    return out


def problem_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.strip()]


def test_two_broken_hops_among_200_traces_are_named(recorded: Path) -> None:
    """Exit 1 and exactly two problem lines, one per hop that dropped its header, with the
    same stable ids that analyze gives the same hops."""
    r = wisp("validate", "--ci-mode", str(recorded))
    assert r.returncode == 1, r.stderr
    lines = problem_lines(r.stdout)
    assert len(lines) == 2, lines
    assert sum(GATEWAY_HOP in line for line in lines) == 1, lines
    assert sum(ORDERS_HOP in line for line in lines) == 1, lines
    assert all(" dropped-context: " in line for line in lines)
    a = wisp("analyze", str(recorded), "--format", "json", "--no-cache")
    found = {f["id"] for f in json.loads(a.stdout)["findings"] if f["kind"] == "dropped-context"}
    assert {line.split()[0] for line in lines} == found
    assert "0 problem" not in r.stderr and "2 problem(s)" in r.stderr


def test_junit_and_sarif_name_the_hops(recorded: Path, tmp_path: Path) -> None:
    """JUnit: one testcase per problem, named by its id and kind, the hop in its one failure
    (and one "checked traces" listing every trace); SARIF 2.1.0: one
    result per problem, fingerprinted by its id, located at the line that sent it."""
    junit, sarif = tmp_path / "v.xml", tmp_path / "v.sarif"
    r = wisp("validate", "--ci-mode", str(recorded), "--junit", str(junit), "--sarif", str(sarif))
    assert r.returncode == 1
    ids = {line.split()[0] for line in problem_lines(r.stdout)}

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    failed = {c.get("name"): c.findall("failure") for c in cases if c.findall("failure")}
    # one testcase per problem, named by its stable id and kind, with its one failure
    assert set(failed) == {f"{i} dropped-context" for i in ids}
    assert all(len(fs) == 1 for fs in failed.values())
    assert int(suite.get("failures", "0")) == 2
    assert int(suite.get("tests", "0")) == len(cases) == 3
    [checked] = [c for c in cases if c.get("name") == "checked traces"]
    assert (checked.findtext("system-out") or "").count("POST /checkout at gateway") == 200
    texts = [fs[0].text or "" for fs in failed.values()]
    assert sum(GATEWAY_HOP in t for t in texts) == 1
    assert sum(ORDERS_HOP in t for t in texts) == 1
    assert all("traces (2): " in t for t in texts)
    assert all(fs[0].get("type") == "dropped-context" for fs in failed.values())

    doc = json.loads(sarif.read_text())
    assert doc["version"] == "2.1.0"
    run = doc["runs"][0]
    rules = [rule["id"] for rule in run["tool"]["driver"]["rules"]]
    assert "dropped-context" in rules and "unreadable-file" in rules
    results = run["results"]
    assert {res["partialFingerprints"]["willowispProblemId/v1"] for res in results} == ids
    send_line = next(
        i for i, line in enumerate(PROGRAM.read_text().splitlines(), 1) if "conn.request(" in line
    )
    for res in results:
        assert rules[res["ruleIndex"]] == res["ruleId"] == "dropped-context"
        loc = res["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"].endswith("ci_shop.py")
        assert loc["region"]["startLine"] == send_line
        assert len(res["properties"]["traces"]) == 2


def test_baseline_accepts_known_problems(recorded: Path, tmp_path: Path) -> None:
    """A baseline written from today's problems makes the gate pass; one that accepts only
    one hop still fails on the other."""
    base = tmp_path / "baseline.json"
    w = wisp("validate", "--ci-mode", str(recorded), "--write-baseline", str(base))
    assert w.returncode == 0, w.stderr
    doc = json.loads(base.read_text())
    assert doc["schema"] == "willowisp.validate-baseline/1" and len(doc["accepted"]) == 2
    ok = wisp("validate", "--ci-mode", str(recorded), "--baseline", str(base))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.strip() == ""
    assert "2 accepted by the baseline" in ok.stderr

    doc["accepted"] = [a for a in doc["accepted"] if a["summary"].startswith("gateway ")]
    base.write_text(json.dumps(doc))
    one = wisp("validate", "--ci-mode", str(recorded), "--baseline", str(base))
    assert one.returncode == 1
    lines = problem_lines(one.stdout)
    assert len(lines) == 1 and ORDERS_HOP in lines[0]


def test_last_n_checks_only_the_latest_traces(recorded: Path) -> None:
    """--last 30 sees neither broken request (57, 143 of 200); --last 100 sees only 143's."""
    clean = wisp("validate", "--ci-mode", str(recorded), "--last", "30")
    assert clean.returncode == 0, clean.stdout
    assert "30 trace(s)" in clean.stderr
    late = wisp("validate", "--ci-mode", str(recorded), "--last", "100")
    assert late.returncode == 1
    lines = problem_lines(late.stdout)
    assert len(lines) == 1 and ORDERS_HOP in lines[0], lines


def test_corrupt_trace_file_is_a_problem(recorded: Path, tmp_path: Path) -> None:
    """A file that is not a trace is one problem line naming it; the rest is still checked."""
    run = tmp_path / "run"
    shutil.copytree(recorded, run)
    bad = run / "broken-1-00000000-1.wtrace"
    bad.write_bytes(b"WTRC this is not a trace at all" * 10)
    r = wisp("validate", "--ci-mode", str(run))
    assert r.returncode == 1
    lines = problem_lines(r.stdout)
    assert len(lines) == 3, lines
    corrupt = [line for line in lines if "unreadable-file" in line]
    assert len(corrupt) == 1 and str(bad) in corrupt[0]


def test_contract_names_the_step_that_lost_the_trace(recorded: Path, tmp_path: Path) -> None:
    """[[contract]] POST /checkout -> http -> http: request 57 fails step 1 at the gateway's
    call, 143 step 2 at orders' call; the 198 others keep it."""
    (tmp_path / "willowisp.toml").write_text(
        '[[contract]]\nname = "checkout"\nentry = "http:POST /checkout"\npath = ["http", "http"]\n'
    )
    r = wisp("validate", "--ci-mode", str(recorded.resolve()), cwd=tmp_path)
    assert r.returncode == 1
    contract = [line for line in problem_lines(r.stdout) if " contract: " in line]
    assert len(contract) == 2, r.stdout
    step1 = next(line for line in contract if "step 1" in line)
    step2 = next(line for line in contract if "step 2" in line)
    assert GATEWAY_HOP in step1 and "in 1 of" in step1
    assert ORDERS_HOP in step2 and "in 1 of" in step2


def test_replay_against_a_staging_server(recorded: Path, tmp_path: Path) -> None:
    """The last 10 recorded checkouts are re-issued (with their recorded bodies) against a
    staging shop recorded by its own 'willowisp run'; staging drops orders' header for
    request 195, and the gate names that hop and nothing else."""
    staging = tmp_path / "staging"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "staging.log"
    with log.open("w") as err, subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(staging), "--",
         sys.executable, str(PROGRAM), "serve", "--break-orders", "195"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True, env=env,
    ) as server:  # fmt: skip
        r = _replay_into(server, staging, recorded, tmp_path, log)
    assert server.returncode == 0, log.read_text()
    assert r.returncode == 1, r.stdout + r.stderr
    lines = problem_lines(r.stdout)
    assert len(lines) == 1 and ORDERS_HOP in lines[0], lines
    assert "10 trace(s)" in r.stderr
    suite = ET.parse(tmp_path / "replay.xml").getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    [checked] = [c for c in cases if c.get("name") == "checked traces"]
    assert len((checked.findtext("system-out") or "").splitlines()) == 1 + 10
    failing = [c.get("name") for c in cases if c.findall("failure")]
    assert failing == [f"{lines[0].split()[0]} dropped-context"]


def _replay_into(
    server: subprocess.Popen[str], staging: Path, recorded: Path, tmp_path: Path, log: Path
) -> subprocess.CompletedProcess[str]:
    """Wait for the staging shop's ready line, run the gate against it, then stop it."""
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        match = re.match(r"ready (\d+)", line)
        assert match, line + log.read_text()
        url = f"http://127.0.0.1:{match.group(1)}"
        return wisp(
            "validate", "--replay-against", url, "--rate", "4x", "--last", "10",
            "--staging-run", str(staging), "--junit", str(tmp_path / "replay.xml"), str(recorded),
        )  # fmt: skip
    finally:
        server.stdin.close()  # the shop stops its services and exits
        server.wait(timeout=60)
