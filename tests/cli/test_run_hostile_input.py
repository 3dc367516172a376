"""`willowisp run` with input meant to confuse it: a boundary SPEC holding WILLOWISP_BOUNDARIES'
separator, and a run folder name holding shell syntax in the hint it prints."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

BIN = os.path.dirname(sys.executable)  # where the `willowisp` console script is installed


def run(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "willowisp", "run", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def test_a_boundary_with_the_separator_is_refused(tmp_path: Path) -> None:
    """`|` in a --boundary SPEC: exit 2, one line naming it, the command never runs."""
    ran = tmp_path / "ran"
    r = run(
        tmp_path, "--out", str(tmp_path / "out"),
        "--boundary", "entry=http:GET /a|b;runtimes=python",
        "--", sys.executable, "-c", f"open({str(ran)!r}, 'w')",
    )  # fmt: skip
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "--boundary 'entry=http:GET /a|b;runtimes=python'" in lines[0]
    assert "'|' separates boundaries" in lines[0]
    assert not ran.exists() and not (tmp_path / "out").exists()


def test_a_project_boundary_with_the_separator_is_refused(tmp_path: Path) -> None:
    """The same SPEC in willowisp.toml: exit 2, one line naming the file."""
    (tmp_path / "willowisp.toml").write_text('boundaries = ["entry=http:GET /a|b"]\n')
    r = run(tmp_path, "--", sys.executable, "-c", "pass")
    assert r.returncode == 2, r
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "willowisp.toml: boundary 'entry=http:GET /a|b'" in lines[0], lines


def test_the_python_agent_splits_boundaries_on_the_separator(tmp_path: Path) -> None:
    """WILLOWISP_BOUNDARIES holding two SPECs and blanks declares exactly those two, as the
    other agents read it."""
    program = (
        "import json\nfrom willowisp.agent import boundaries\n"
        "print(json.dumps([b['spec'] for b in boundaries.status()['boundaries']]))\n"
    )
    specs = "entry=http:GET /a| |entry=http:POST /b;runtimes=python|"
    r = run(
        tmp_path, "--out", str(tmp_path / "out"), "--", sys.executable, "-c", program,
        env={"WILLOWISP_BOUNDARIES": specs, "WILLOWISP_CONTROL": "off"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    declared = json.loads(r.stdout.strip().splitlines()[-1])
    assert [s.strip() for s in declared] == [
        "entry=http:GET /a",
        "entry=http:POST /b;runtimes=python",
    ]


def test_the_next_command_is_shell_quoted(tmp_path: Path) -> None:
    """A run folder named with a newline, `;` and `$(...)`: the printed `next:` command,
    pasted into a shell, analyzes that folder and runs nothing else."""
    hostile = "x\nout;$(touch y)"
    r = run(tmp_path, "--out", hostile, "--", sys.executable, "-c", "pass")
    assert r.returncode == 0, r.stderr
    m = re.search(r"\(next: (willowisp analyze .*)\)\s*\Z", r.stderr, re.S)
    assert m, r.stderr
    command = m.group(1)
    assert shlex.split(command) == ["willowisp", "analyze", str(tmp_path / hostile)]
    pasted = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", "")}, check=False,
    )  # fmt: skip
    assert pasted.returncode == 0, pasted.stderr
    assert not (tmp_path / "y").exists(), "the pasted command ran the folder name's $(...)"
    assert not (tmp_path / "x").exists()
