"""DB-API drivers other than sqlite3 (agent/data_dbapi.py), with a real duckdb: statements
as shapes on ``duckdb:<path>#<table>``, row keys, explicit transactions as the database's
lock, the program's view of its connections and cursors unchanged, and a race the analysis
finds between two threads (and does not when both use BEGIN/COMMIT)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from test_data_hooks import run, story
from tracekit import read_run, run_program

from willowisp.analysis import analyze_paths

pytest.importorskip("duckdb")

DUCK = """
    import os, sys, duckdb
    db = os.path.join(sys.argv[1], "shop.duckdb")
    c = duckdb.connect(db)
    c.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER, name TEXT)")
    c.execute("INSERT INTO stock VALUES (?, ?, 'tea')", [42, 10])  # @insert
    (qty,) = c.execute("SELECT qty FROM stock WHERE id = ?", [42]).fetchone()  # @select
    cur = c.cursor()
    cur.execute("UPDATE stock SET qty = $1 WHERE id = $2", [qty - 1, 42])  # @update
    cur.execute("BEGIN TRANSACTION")  # @begin
    cur.execute("SELECT qty FROM stock WHERE id = 42")  # @literal
    cur.executemany("UPDATE stock SET qty = ? WHERE id = ?", [[1, 42], [2, 43]])  # @many
    cur.execute("COMMIT")  # @end
    c.begin()  # @begin2
    c.execute("DELETE FROM stock WHERE name = $n", {"n": "coffee"})  # @delete
    c.rollback()  # @rollback
    rows = c.execute("SELECT id, qty FROM stock ORDER BY id").fetchall()  # @all
    it = c.cursor().execute("SELECT name FROM stock").fetchmany(5)  # @iter
    try:
        iter(c)
    except TypeError:  # not iterable, as without the agent
        print("not iterable")
    assert isinstance(c, duckdb.DuckDBPyConnection), type(c)
    assert c.execute("SELECT 1") is c and c.__wrapped__ is not c
    try:
        c.execute("SELECT nope FROM stock")
    except duckdb.BinderException:
        print("binder")
    with duckdb.connect(db) as w:
        w.execute("SELECT count(*) FROM stock").fetchall()
    m = duckdb.connect()
    m.execute("CREATE TABLE x (a INTEGER)")
    m.execute("INSERT INTO x VALUES (1)")
    print(rows, it, qty)
"""


def test_duckdb_statements_rows_and_transactions(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """Reads and writes are shapes on the table or, for ``WHERE id = <placeholder>`` in any
    style, a hashed row; an explicit BEGIN (statement or ``begin()``) holds the lock until
    COMMIT/rollback(); a write outside it is atomic; the program's results, exceptions,
    isinstance checks and iteration are its own."""
    p = run(tmp_path, DUCK)
    m = {k: f"prog.py:{v}" for k, v in marks_of(DUCK).items()}
    db = f"duckdb:{tmp_path / 'shop.duckdb'}"
    row = next(r["row"] for r in p.resources.values() if r.get("row"))
    assert re.fullmatch(r"id=k[0-9a-f]{10}", row), row
    table, one = f"{db}#stock", f"{db}#stock[{row}]"
    got = [s for s in story(p) if "#x" not in s[2] and ":memory:" not in s[2]]
    assert got == [
        ("lock.acquired", m["insert"], db, ""),
        ("data.access", m["insert"], table, "write INSERT INTO stock VALUES (?, ?, ?)"),
        ("lock.release", m["insert"], db, ""),
        ("data.access", m["select"], one, "read SELECT qty FROM stock WHERE id = ?"),
        ("lock.acquired", m["update"], db, ""),
        ("data.access", m["update"], one, "write UPDATE stock SET qty = $? WHERE id = $?"),
        ("lock.release", m["update"], db, ""),
        ("lock.acquired", m["begin"], db, ""),
        ("data.access", m["literal"], one, "read SELECT qty FROM stock WHERE id = ?"),
        ("data.access", m["many"], table, "write UPDATE stock SET qty = ? WHERE id = ?"),
        ("lock.release", m["end"], db, ""),
        ("lock.acquired", m["begin2"], db, ""),
        ("data.access", m["delete"], table, "write DELETE FROM stock WHERE name = $n"),
        ("lock.release", m["rollback"], db, ""),
        ("data.access", m["all"], table, "read SELECT id, qty FROM stock ORDER BY id"),
        ("data.access", m["iter"], table, "read SELECT name FROM stock"),
        ("data.access", "prog.py:30", table, "read SELECT count(*) FROM stock"),
    ], got
    data = [r for r in p.resources.values() if r.get("kind") == "data"]
    assert {r["store"] for r in data} == {"duckdb"}
    assert not any("tea" in str(r) or "coffee" in str(r) for r in data)  # shapes, no values
    memory = {r["name"] for r in data if ":memory:" in r["name"]}
    assert len(memory) == 1 and next(iter(memory)).endswith("#x")  # in-memory: its own name
    locks = [r for r in p.resources.values() if r.get("kind") == "lock" and r.get("shared")]
    assert db in {r["name"] for r in locks}


def test_sql_values_redaction_and_paramstyles(tmp_path: Path) -> None:
    """``--redact sql-values`` keeps the row value; ``$1``, ``?`` and a literal name the
    same row."""
    code = """
        import os, sys, duckdb
        c = duckdb.connect(os.path.join(sys.argv[1], "k.duckdb"))
        c.execute("CREATE TABLE t (id INTEGER, v INTEGER)")
        c.execute("SELECT v FROM t WHERE id = $1", [7])
        c.execute("SELECT v FROM t WHERE t.id = ?", [7])
        c.execute("SELECT v FROM t WHERE id = 7")
    """
    p = run(tmp_path, code, env={"WILLOWISP_REDACT": "sql-values"})
    assert {r.get("row") for r in p.resources.values() if r.get("row")} == {"id=7"}


def test_shapes_of_other_paramstyles() -> None:
    """psycopg2/pymysql's ``%s`` and ``%(name)s`` find the row's parameter too."""
    from willowisp.agent import data_dbapi as dd
    from willowisp.agent import data_sqlite as sq

    sh = sq.Shape("UPDATE t SET v = %s WHERE id = %s")
    assert (sh.row_column, dd._row_param(sh, (1, 9))) == ("id", 9)
    sh = sq.Shape("SELECT v FROM t WHERE id = %(key)s")
    assert dd._row_param(sh, {"key": 3}) == 3
    sh = sq.Shape("SELECT v FROM t WHERE id = $2")
    assert dd._row_param(sh, [0, 5]) == 5
    assert dd.database_name("psycopg2", ("dbname=shop host=db port=5432",), {}) == "db:5432/shop"
    assert dd.database_name("psycopg", ("postgresql://u@h:6/x",), {}) == "h:6/x"
    assert dd.database_name("pymysql", (), {"host": "m", "db": b"s"}) == "m/s"


RACE = """
    import os, sys, threading, time, duckdb
    db = os.path.join(sys.argv[1], "race.duckdb")
    tx = sys.argv[2] == "tx"
    setup = duckdb.connect(db)
    setup.execute("CREATE TABLE acct (id INTEGER PRIMARY KEY, bal INTEGER)")
    setup.execute("INSERT INTO acct VALUES (1, 100)")

    def spend(delay):
        time.sleep(delay)  # no order between the two, but no overlap either
        c = setup.cursor()
        if tx:
            c.execute("BEGIN")
        (bal,) = c.execute("SELECT bal FROM acct WHERE id = ?", [1]).fetchone()
        c.execute("UPDATE acct SET bal = ? WHERE id = ?", [bal - 10, 1])
        if tx:
            c.execute("COMMIT")
        c.close()

    ts = [threading.Thread(target=spend, args=(d,)) for d in (0.0, 0.3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(setup.execute("SELECT bal FROM acct").fetchall())
"""


@pytest.mark.parametrize("mode", ["plain", "tx"])
def test_race_on_a_duckdb_row(tmp_path: Path, mode: str) -> None:
    """Two threads read then write one row: a race without a transaction, none when both
    hold BEGIN/COMMIT (the database's lock orders them)."""
    out = str(tmp_path / "run")
    r = run_program(RACE, out, args=[str(tmp_path), mode])
    assert r.returncode == 0, r.stderr
    assert not read_run(out)["prog"].faults
    races = [f for f in analyze_paths([out]).findings if f.kind == "race"]
    if mode == "plain":
        assert races, "expected a race on acct[id=…]"
        assert any("acct" in str(f.resources) for f in races)
    else:
        assert not races, [f.summary for f in races]


FAKE_PYMYSQL = """
import sqlite3

class Cursor:
    def __init__(self, conn):
        self.connection = conn
        self._cur = conn._db.cursor()

    def execute(self, sql, args=None):
        sql = sql.replace("%s", "?").replace("START TRANSACTION", "BEGIN")
        self._cur.execute(sql, args or ())
        return self._cur.rowcount

    def __iter__(self):
        return iter(self._cur)

    def fetchall(self):
        return self._cur.fetchall()

class Connection:
    def __init__(self, **kw):
        self._db = sqlite3.connect(":memory:", isolation_level=None)

    def cursor(self):
        return Cursor(self)

    def commit(self):
        if self._db.in_transaction:
            self._db.execute("COMMIT")

def connect(**kw):
    return Connection(**kw)
"""


def test_a_driver_wired_by_module_name_keeps_iterable_cursors(tmp_path: Path) -> None:
    """A (stand-in) ``pymysql`` is hooked when imported: ``%s`` rows, the server's name from
    ``connect``'s arguments, a cursor that iterates, ``cursor.connection`` the proxy, and
    ``commit()`` releasing an explicit transaction."""
    (tmp_path / "pymysql.py").write_text(FAKE_PYMYSQL)
    code = """
        import pymysql
        c = pymysql.connect(host="db", port=3306, database="shop")
        cur = c.cursor()
        cur.execute("CREATE TABLE t (id INTEGER, v INTEGER)")
        n = cur.execute("INSERT INTO t VALUES (%s, %s)", (1, 2))
        cur.execute("START TRANSACTION")
        cur.execute("SELECT v FROM t WHERE id = %s", (1,))
        rows = [r for r in cur]
        cur.connection.commit()
        assert isinstance(c, pymysql.Connection) and cur.connection is c
        print(n, rows)
    """
    out = str(tmp_path / "run")
    r = run_program(code, out, args=[str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "[(2,)]"]
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    kinds = [(k, name.split("[")[0], what) for k, _, name, what in story(p)]
    db = "pymysql:db:3306/shop"
    assert kinds == [
        ("lock.acquired", db, ""),
        ("data.access", f"{db}#t", "write INSERT INTO t VALUES (%s, %s)"),
        ("lock.release", db, ""),
        ("lock.acquired", db, ""),
        ("data.access", f"{db}#t", "read SELECT v FROM t WHERE id = %s"),
        ("lock.release", db, ""),
    ]
    assert any(str(x.get("row", "")).startswith("id=k") for x in p.resources.values())
