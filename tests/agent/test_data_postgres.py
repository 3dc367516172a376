"""DB-API data accesses against a real PostgreSQL server (Debian's package, started by the
test) through psycopg2: statements as shapes, rows by primary key in pyformat, writes
outside a transaction as a hold of the database's lock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import brokers
import pytest
from test_data_hooks import story
from tracekit import read_run, run_program

pytest.importorskip("psycopg2")


@pytest.fixture(scope="module")
def pg_port() -> Iterator[int]:
    assert brokers.postgres_bin(), "PostgreSQL's server is needed (scripts/test installs it)"
    broker = brokers.start_postgres()
    try:
        yield broker.port
    finally:
        brokers.stop_postgres(broker)


PROGRAM = """
    import sys, psycopg2
    conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), dbname="shop", user="postgres")
    cur = conn.cursor()
    cur.execute("CREATE TABLE stock (id int PRIMARY KEY, qty int)")
    cur.execute("INSERT INTO stock VALUES (%s, %s)", (42, 10))  # @insert
    conn.commit()
    cur.execute("SELECT qty FROM stock WHERE id = %s", (42,))  # @select
    qty = cur.fetchone()[0]
    cur.execute("UPDATE stock SET qty = %s WHERE id = %s", (qty - 1, 42))  # @update
    conn.commit()
    with conn:
        with conn.cursor() as c2:
            c2.execute("SELECT qty FROM stock WHERE id = %(id)s", {"id": 42})  # @named
            print(c2.fetchone()[0])
    conn.close()
"""


def test_psycopg2_statements_rows_and_the_database_lock(
    tmp_path: Path, pg_port: int, marks_of: Callable[[str], dict[str, int]]
) -> None:
    out = str(tmp_path / "run")
    r = run_program(PROGRAM, out, args=[str(pg_port)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "9"  # the program's own results are untouched
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    m = {k: f"prog.py:{v}" for k, v in marks_of(PROGRAM).items()}
    db = f"psycopg2:127.0.0.1:{pg_port}/shop"
    rows = {str(x.get("row")) for x in p.resources.values() if x.get("row")}
    assert len(rows) == 1
    (row,) = rows
    assert row.startswith("id=k")  # a keyed hash, not the value 42
    one = f"{db}#stock[{row}]"
    assert story(p) == [
        ("lock.acquired", m["insert"], db, ""),
        ("data.access", m["insert"], f"{db}#stock", "write INSERT INTO stock VALUES (%s, %s)"),
        ("lock.release", m["insert"], db, ""),
        ("data.access", m["select"], one, "read SELECT qty FROM stock WHERE id = %s"),
        ("lock.acquired", m["update"], db, ""),
        ("data.access", m["update"], one, "write UPDATE stock SET qty = %s WHERE id = %s"),
        ("lock.release", m["update"], db, ""),
        ("data.access", m["named"], one, "read SELECT qty FROM stock WHERE id = %(id)s"),
    ]
