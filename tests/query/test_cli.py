"""``willowisp query``: output formats, errors, exit statuses and the read-only sandbox."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from willowisp.cli.main import main
from willowisp.query.render import escape
from willowisp.wtrace.text import from_text
from willowisp.wtrace.writer import write_file

UNITS = "SELECT number, name, kind, parent IS NULL AS root, events FROM units ORDER BY number"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["query", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_format(bank_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """table: header, rule, aligned rows (numbers to the right), row count."""
    code, out, err = run(capsys, str(bank_run), UNITS)
    assert (code, err) == (0, "")
    assert out == (
        "number  name                 kind    root   events\n"
        "------  -------------------  ------  -----  ------\n"
        "     1  MainThread           thread  true        4\n"
        "     2  Thread-1 (transfer)  thread  false       3\n"
        "     3  Thread-2 (transfer)  thread  false       3\n"
        "(3 rows)\n"
    )


def test_json_format(bank_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """json: one object, schema first, typed columns, rows as arrays; JSON cells embedded."""
    code, out, _ = run(capsys, str(bank_run), UNITS, "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "schema": "willowisp.query/1",
        "columns": [
            {"name": "number", "type": "BIGINT"},
            {"name": "name", "type": "VARCHAR"},
            {"name": "kind", "type": "VARCHAR"},
            {"name": "root", "type": "BOOLEAN"},
            {"name": "events", "type": "BIGINT"},
        ],
        "rows": [
            [1, "MainThread", "thread", True, 4],
            [2, "Thread-1 (transfer)", "thread", False, 3],
            [3, "Thread-2 (transfer)", "thread", False, 3],
        ],
    }
    assert out.startswith('{"schema": "willowisp.query/1"')
    code, out, _ = run(
        capsys,
        str(bank_run),
        "SELECT attrs, [1, 2] AS l, 1.5 AS d, NULL AS n FROM processes",
        "--format",
        "json",
    )
    (row,) = json.loads(out)["rows"]
    assert row[0]["service"] == "bank" and row[1:] == [[1, 2], 1.5, None]


def test_csv_format(bank_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """csv: header row, RFC 4180 quoting, NULL empty, lists as JSON text."""
    code, out, _ = run(capsys, str(bank_run), UNITS, "--format", "csv")
    assert code == 0
    assert out == (
        "number,name,kind,root,events\n"
        "1,MainThread,thread,true,4\n"
        "2,Thread-1 (transfer),thread,false,3\n"
        "3,Thread-2 (transfer),thread,false,3\n"
    )
    _, out, _ = run(
        capsys, str(bank_run), "SELECT 'a,\"b' AS t, NULL AS n, ['x'] AS l", "--format", "csv"
    )
    assert out == 't,n,l\n"a,""b",,"[""x""]"\n'


def test_bad_sql_is_one_line_and_exit_two(
    bank_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A syntax error or an unknown column: DuckDB's message on one line, exit 2, no output."""
    code, out, err = run(capsys, str(bank_run), "SELEC kind FROM events")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert err.startswith('willowisp query: SQL: Parser Error: syntax error at or near "SELEC"')
    code, out, err = run(capsys, str(bank_run), "SELECT nope FROM events")
    assert (code, out) == (2, "")
    assert err.startswith("willowisp query: SQL: Binder Error:") and "nope" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("sql", ["", "   ", "\n\t", " ; "])
def test_empty_sql_is_a_usage_error(
    bank_run: Path, capsys: pytest.CaptureFixture[str], sql: str
) -> None:
    """An empty or blank statement: one line, exit 2, no output (not a silent success)."""
    code, out, err = run(capsys, str(bank_run), sql)
    assert (code, out) == (2, "")
    assert err == "willowisp query: SQL: the statement is empty " + (
        "(e.g. 'SELECT kind, count(*) FROM events GROUP BY kind')\n"
    )


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('{secret}')",
        "SELECT * FROM read_text('{secret}')",
        "SELECT * FROM '{secret}'",
        "SELECT * FROM glob('{dir}/*')",
        "COPY (SELECT 1) TO '{dir}/written.csv'",
        "COPY events TO '{dir}/written.csv'",
        "ATTACH '{dir}/written.db' AS w",
        "EXPORT DATABASE '{dir}/exported'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "SELECT * FROM read_parquet('{secret}')",
    ],
)
def test_sql_cannot_touch_the_file_system(
    sql: str, bank_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reading, writing, attaching, extensions and re-enabling access are all refused."""
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    before = sorted(os.listdir(tmp_path))
    code, out, err = run(capsys, str(bank_run), sql.format(secret=secret, dir=tmp_path))
    assert code == 2
    assert "hunter2" not in out and "hunter2" not in err
    assert err.startswith("willowisp query: SQL: ") and err.count("\n") == 1
    assert "Permission Error" in err or "configuration has been locked" in err
    assert sorted(os.listdir(tmp_path)) == before


def test_python_variables_are_out_of_reach(
    bank_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A query cannot scan this process's Python objects by name."""
    code, _, err = run(capsys, str(bank_run), "SELECT * FROM sys")
    assert code == 2 and "sys" in err


WEIRD = """\
wtrace 1.0
chunk
rec process 0 process_id="0000000000000000000000000000beef" pid=7 service="svc" segment=1
rec unit 1 kind="thread" name="evil\\u001b[2J\\u001b]0;pwned\\u0007\\nline 2\\u202etxt.exe\\tend"
rec unit 2 kind="thread" name="%s"
seq 1
ev 1000 clock.anchor a=1700000000000000000
ev 2000 unit.start u=1
ev 3000 unit.start u=2
end
""" % ("x" * 100)


def test_table_escapes_control_characters_and_cuts_wide_cells(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trace strings cannot drive the terminal: escapes are shown, long cells are cut."""
    run_dir = tmp_path / "weird"
    run_dir.mkdir()
    write_file(run_dir / "w.wtrace", from_text(WEIRD, "weird"))
    code, out, _ = run(capsys, str(run_dir), "SELECT name FROM units ORDER BY number")
    assert code == 0
    lines = out.splitlines()
    assert lines[2] == "evil\\x1b[2J\\x1b]0;pwned\\x07\\nline 2\\u202etxt.exe\\tend"
    assert lines[3] == "x" * 59 + "…"
    assert all(ch == "\n" or ch.isprintable() for ch in out)
    # json keeps the exact string (its own escaping makes it safe)
    _, out, _ = run(
        capsys, str(run_dir), "SELECT name FROM units WHERE number = 1", "--format", "json"
    )
    assert json.loads(out)["rows"] == [["evil\x1b[2J\x1b]0;pwned\x07\nline 2\u202etxt.exe\tend"]]


def test_escape_is_unambiguous() -> None:
    """A literal backslash is doubled, so an escape in the output always means a character."""
    assert escape("a\\nb") == "a\\\\nb"
    assert escape("a\nb") == "a\\nb"
    assert escape("plain ünïcode") == "plain ünïcode"


def test_unreadable_input_is_named_and_the_rest_answered(
    bank_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad file: one stderr line naming it, exit 2, the answer over the good run."""
    bad = tmp_path / "broken.wtrace"
    bad.write_bytes(b"PK\x03\x04 not a trace at all")
    missing = tmp_path / "missing"
    code, out, err = run(
        capsys,
        str(bank_run),
        str(bad),
        str(missing),
        "SELECT count(*) AS n FROM units",
        "--format",
        "csv",
    )
    assert code == 2
    assert out == "n\n3\n"
    lines = sorted(err.splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"willowisp query: {bad}: not a .wtrace file")
    assert lines[1] == f"willowisp query: {missing}: no such file or directory"


def test_statement_without_rows(bank_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Several statements: the last one's result is printed; tables made in memory only."""
    code, out, _ = run(
        capsys,
        str(bank_run),
        "CREATE TABLE t AS SELECT kind FROM events; SELECT count(*) AS n FROM t",
        "--format",
        "csv",
    )
    assert (code, out) == (0, "n\n14\n")
    assert sorted(p.name for p in bank_run.iterdir()) == ["bank.wtrace"]
