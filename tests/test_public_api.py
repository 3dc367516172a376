"""The public face of the package stays small and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import willowisp


def test_exported_members():
    """willowisp exports exactly start, stop, access and __version__."""
    assert set(willowisp.__all__) == {"__version__", "access", "start", "stop"}
    for name in willowisp.__all__:
        assert hasattr(willowisp, name)


def test_import_is_cheap():
    """Importing willowisp (as every recorded process does) pulls in no numpy, rich or agent."""
    heavy = "('numpy', 'rich', 'willowisp.agent.recorder')"
    code = f"import sys, willowisp; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_and_console_scripts():
    """`python -m willowisp`, `willowisp` and `wisp` are the same command."""
    bindir = Path(sys.executable).parent  # the console scripts sit beside the interpreter
    for argv in (
        [sys.executable, "-m", "willowisp", "--version"],
        [str(bindir / "willowisp"), "--version"],
        [str(bindir / "wisp"), "--version"],
    ):
        r = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert r.returncode == 0, (argv, r.stderr)
        assert r.stdout.strip() == f"willowisp {willowisp.__version__}"
