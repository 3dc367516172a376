"""``willowisp demo`` does not depend on the folder it is run from, and a service that fails
fails the demo, named with the tail of its stderr.

Both run the quickest real demo: no toolchain on PATH, so the shop (Python) runs alone.
Each demo runs in a session of its own, killed by its process group id if anything of it
is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

DEMO_TIMEOUT_S = 600
pytestmark = pytest.mark.slow


def run_demo(cwd: Path, out: Path, argv0: list[str]) -> subprocess.CompletedProcess[str]:
    """``argv0 demo --out OUT --format json`` in ``cwd`` with nothing but an empty folder
    on PATH (no go, node, JDK or cargo: the shop runs alone)."""
    empty = out.parent / "bin"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WILLOWISP_")}
    env.pop("JAVA_TOOL_OPTIONS", None)
    env.pop("NODE_OPTIONS", None)
    env["PATH"] = str(empty)
    proc = subprocess.Popen(
        [*argv0, "demo", "--out", str(out), "--format", "json"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=DEMO_TIMEOUT_S)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    assert "Traceback" not in stderr.split("FAILED", 1)[0], stderr
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_modules_in_the_working_directory_do_not_replace_the_shops(tmp_path: Path) -> None:
    """Run from a folder holding http.py, json.py, asyncio.py and a sitecustomize.py that
    all raise on import, the demo still runs the shop to its end and exits 0."""
    here = tmp_path / "project"
    here.mkdir()
    for name in ("http", "json", "asyncio", "queue", "sitecustomize", "willowisp"):
        (here / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py')\n")
    willowisp = Path(sys.executable).parent / "willowisp"  # the console script a user runs
    done = run_demo(here, tmp_path / "run", [str(willowisp)])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "python   5 orders placed" in lines, done.stderr
    assert any(line.startswith("python   ran: shop, ") for line in lines), done.stderr
    assert "FAILED" not in done.stderr and "the user's own" not in done.stderr


def test_a_service_that_fails_is_named_with_its_stderr(
    tmp_path: Path,
) -> None:
    """A service that was built but dies at start (here a stand-in for inventory that
    writes to stderr and exits 3) is named with its stderr's tail; the demo still exits 0,
    as the contract says, because the Python part ran."""
    broken = (
        "import sys\n"
        "from willowisp.demo import runner\n"
        "from willowisp.demo.build import Service\n"
        "die = 'import sys; sys.stderr.write(\"inventory: no stock.db\\\\n\"); sys.exit(3)'\n"
        "runner.build_all = lambda root, cache: iter([Service('go', 'inventory', "
        "(sys.executable, '-c', die), 'a stand-in that fails')])\n"
        "from willowisp.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = run_demo(tmp_path, tmp_path / "run", [sys.executable, "-c", broken])
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    [named] = [line for line in lines if "FAILED: inventory" in line]
    assert named.startswith("go       "), named
    tail = lines[lines.index(named) + 1 :]
    assert "    inventory: no stock.db" in tail, done.stderr
    assert lines[-1] == "willowisp demo: failed: inventory", done.stderr
