"""``willowisp export``: exit statuses, and no output file when there is nothing to export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from willowisp.cli.main import main
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

CASE = Path(__file__).resolve().parents[1] / "golden" / "lock_order_killed" / "bank.wtxt"


@pytest.mark.parametrize("to", ["chrome", "perfetto", "otlp-json"])
def test_missing_input_writes_no_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], to: str
) -> None:
    """Every input unreadable: exit 2 naming it, and OUT is neither created nor touched."""
    out = tmp_path / "y.out"
    assert main(["export", str(tmp_path / "nosuch"), "--to", to, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'nosuch'}: no such file or directory" in err
    assert "nothing to export" in err
    assert not out.exists()
    out.write_text("an earlier export")
    assert main(["export", str(tmp_path / "nosuch"), "--to", to, "-o", str(out)]) == 2
    assert out.read_text() == "an earlier export"


def test_readable_inputs_are_exported_beside_a_missing_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One good run and one missing path: the good one is exported, exit 2."""
    run = tmp_path / "run"
    run.mkdir()
    write_file(run / "bank-4242-4b1d0c0f-1.wtrace", from_text(CASE.read_text(), str(CASE)))
    out = tmp_path / "y.json"
    assert (
        main(["export", str(run), str(tmp_path / "nosuch"), "--to", "chrome", "-o", str(out)]) == 2
    )
    assert json.loads(out.read_text())["traceEvents"]
    assert "nothing to export" not in capsys.readouterr().err


def test_the_command_line_names_the_formats_the_exporters_have() -> None:
    """cli/export.py names the formats itself (building the command line must not import
    the exporters, and numpy with them); they are the exporters' own."""
    from willowisp import export
    from willowisp.cli import export as cli_export

    assert cli_export.FORMATS == export.FORMATS


def test_building_the_command_line_starts_no_thread() -> None:
    """`willowisp run` takes its signals in one thread: nothing imported to build the
    command line (numpy's BLAS) may start threads of its own."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys; sys.argv = ['willowisp', 'run', '--help'];"
            "from willowisp.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('threads', len(os.listdir('/proc/self/task')), 'numpy' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.splitlines()[-1] == "threads 1 False"
