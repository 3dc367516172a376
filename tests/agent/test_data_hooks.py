"""Data accesses: sqlite3 statements (and transactions as the database's lock), files the
program opens, HTTP requests a server receives, and ``willowisp.access``; each test runs a
real program under the agent and reads back what it wrote."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tracekit import ProcessTrace, read_run, run_program

import willowisp


def run(tmp_path: Path, code: str, *args: str, env: dict[str, str] | None = None) -> ProcessTrace:
    out = str(tmp_path / "run")
    r = run_program(code, out, args=[str(tmp_path), *args], env_extra=env)
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    assert not p.faults, p.faults
    return p


def story(p: ProcessTrace, unit: int | None = None) -> list[tuple[str, str, str, str]]:
    """(kind, where, resource name, statement or mode) of the data accesses and the shared
    locks, in order: what a test compares."""
    out = []
    for e in p.events:
        r = p.resources.get(e.res, {})
        if e.kind == "data.access" or r.get("shared") == 1:
            if unit is not None and e.unit != unit:
                continue
            what = str(r.get("statement", "")) if e.kind == "data.access" else ""
            if e.kind == "data.access":
                what = ("write " if e.arg else "read ") + what
            out.append((e.kind, p.where(e), str(r.get("name")), what.strip()))
    return out


SQLITE = """
    import os, sqlite3, sys
    db = os.path.join(sys.argv[1], "shop.db")
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER, name TEXT)")
    c.commit()
    c.execute("INSERT INTO stock VALUES (?, ?, 'tea')", (42, 10))  # @insert
    c.commit()  # @commit
    (qty,) = c.execute("SELECT qty FROM stock WHERE id = ?", (42,)).fetchone()  # @select
    cur = c.cursor()
    cur.execute("UPDATE stock SET qty = :q WHERE id = :id", {"q": qty - 1, "id": 42})  # @update
    c.rollback()  # @rollback
    with c:  # @with
        c.execute("DELETE FROM stock WHERE name = 'coffee'")  # @delete
    t = sqlite3.connect(db, isolation_level=None)
    t.execute("BEGIN IMMEDIATE")  # @begin
    t.execute("SELECT qty FROM stock WHERE id = 42")  # @literal
    t.executemany("UPDATE stock SET qty = ? WHERE id = ?", [(1, 42), (2, 43)])  # @many
    t.execute("COMMIT")  # @end
    t.execute("UPDATE stock SET qty = 5 WHERE id = ?", (42,))  # @auto
    m = sqlite3.connect(":memory:")
    m.execute("CREATE TABLE x (a)")
    m.execute("INSERT INTO x VALUES (1)")
    print(isinstance(c, sqlite3.Connection), qty)
"""


def test_sqlite_statements_transactions_and_rows(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """Reads and writes name the table and, for ``WHERE pk = ?``, a hashed row key that is
    the same whatever the spelling of the value; writes hold the database's lock to the end
    of their transaction (commit, rollback, leaving ``with``), BEGIN IMMEDIATE from the
    start; an in-memory database is not recorded."""
    p = run(tmp_path, SQLITE)
    m = {k: f"prog.py:{v}" for k, v in marks_of(SQLITE).items()}
    db = f"sqlite:{tmp_path / 'shop.db'}"
    row = next(r["row"] for r in p.resources.values() if r.get("row"))
    assert re.fullmatch(r"id=k[0-9a-f]{10}", row), row
    table, one = f"{db}#stock", f"{db}#stock[{row}]"
    assert story(p) == [
        ("lock.acquired", m["insert"], db, ""),
        ("data.access", m["insert"], table, "write INSERT INTO stock VALUES (?, ?, ?)"),
        ("lock.release", m["commit"], db, ""),
        ("data.access", m["select"], one, "read SELECT qty FROM stock WHERE id = ?"),
        ("lock.acquired", m["update"], db, ""),
        ("data.access", m["update"], one, "write UPDATE stock SET qty = :q WHERE id = :id"),
        ("lock.release", m["rollback"], db, ""),
        ("lock.acquired", m["delete"], db, ""),
        ("data.access", m["delete"], table, "write DELETE FROM stock WHERE name = ?"),
        ("lock.release", m["with"], db, ""),
        ("lock.acquired", m["begin"], db, ""),
        ("data.access", m["literal"], one, "read SELECT qty FROM stock WHERE id = ?"),
        ("data.access", m["many"], table, "write UPDATE stock SET qty = ? WHERE id = ?"),
        ("lock.release", m["end"], db, ""),
        ("lock.acquired", m["auto"], db, ""),
        ("data.access", m["auto"], one, "write UPDATE stock SET qty = ? WHERE id = ?"),
        ("lock.release", m["auto"], db, ""),
    ]
    (lock,) = [r for r in p.resources.values() if r.get("kind") == "lock"]
    assert lock["shared"] == 1 and lock["name"] == db
    data = [r for r in p.resources.values() if r.get("kind") == "data"]
    assert {r["store"] for r in data} == {"sqlite"} and {r["table"] for r in data} == {"stock"}
    rows = {str(r.get("row")) for r in data if r.get("row")}
    assert rows and all(re.fullmatch(r"id=k[0-9a-f]{10}", x) for x in rows)  # no value kept


def test_sql_values_redaction_keeps_the_row_value(tmp_path: Path) -> None:
    """``--redact sql-values``: the row key is the value itself."""
    p = run(tmp_path, SQLITE, env={"WILLOWISP_REDACT": "sql-values"})
    assert {r.get("row") for r in p.resources.values() if r.get("row")} == {"id=42"}


def test_row_keys_agree_across_processes_of_a_run(tmp_path: Path) -> None:
    """Two processes of one run hash the same row to the same key (the key is the run's),
    so their accesses are to the same data."""
    code = """
        import os, sqlite3, sys
        c = sqlite3.connect(os.path.join(sys.argv[1], "shop.db"))
        c.execute("CREATE TABLE IF NOT EXISTS stock (id INTEGER PRIMARY KEY, qty INTEGER)")
        c.execute("SELECT qty FROM stock WHERE id = ?", (42,))
    """
    out = str(tmp_path / "run")
    for name in ("one", "two"):
        r = run_program(code, out, args=[str(tmp_path)], name=name)
        assert r.returncode == 0, r.stderr
    rows = {
        svc: {r.get("row") for r in p.resources.values() if r.get("row")}
        for svc, p in read_run(out).items()
    }
    assert len(rows) == 2 and rows["one"] == rows["two"] and len(rows["one"]) == 1


FILES = """
    import configparser, json, os, pathlib, sys
    base = sys.argv[1]
    with open(os.path.join(base, "out.txt"), "w") as f:  # @write
        f.write("[s]\\nk = 1\\n")
    with open(os.path.join(base, "out.txt")) as f:  # @read
        f.read()
    pathlib.Path(base, "notes.txt").write_text("hi")  # @path
    configparser.ConfigParser().read(os.path.join(base, "out.txt"))  # the stdlib opens it
    json.dumps({})

    class Keeper:
        opener = open  # stored as a class attribute, called through an instance

    with Keeper().opener(os.path.join(base, "out.txt"), "a") as f:  # @append
        f.write("j = 2\\n")
    print("ok")
"""


def test_files_the_program_opens(tmp_path: Path, marks_of: Callable[[str], dict[str, int]]) -> None:
    """open() for writing is a write of file:<path>, for reading a read, at the program's
    line (pathlib's too); the standard library's own opens are not recorded; ``open`` kept
    as a class attribute still behaves like the builtin (no ``self`` bound)."""
    p = run(tmp_path, FILES)
    m = {k: f"prog.py:{v}" for k, v in marks_of(FILES).items()}
    out, notes = f"file:{tmp_path / 'out.txt'}", f"file:{tmp_path / 'notes.txt'}"
    assert story(p) == [
        ("data.access", m["write"], out, "write open w"),
        ("data.access", m["read"], out, "read open r"),
        ("data.access", m["path"], notes, "write open w"),
        ("data.access", m["append"], out, "write open a"),
    ]


HTTP = """
    import http.server, sys, threading, urllib.request

    class Cart(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # @get
            self.reply()

        def do_PUT(self):  # @put
            self.rfile.read(int(self.headers["Content-Length"]))
            self.reply()

        def do_OPTIONS(self):
            self.reply()

        def reply(self):
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Cart)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    urllib.request.urlopen(urllib.request.Request(base + "/cart/42?x=1", data=b"1", method="PUT"))
    urllib.request.urlopen(base + "/cart/42")
    urllib.request.urlopen(urllib.request.Request(base + "/cart/42", method="OPTIONS"))
    srv.shutdown()
    print(srv.server_address[1])
"""


def test_http_requests_a_server_receives(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """PUT is a write and GET a read of http:<host><path> (no query), in the handler's
    thread after its receive; OPTIONS is no access."""
    out = str(tmp_path / "run")
    r = run_program(HTTP, out)
    assert r.returncode == 0, r.stderr
    p = read_run(out)["prog"]
    m = {k: f"prog.py:{v}" for k, v in marks_of(HTTP).items()}
    name = f"http:127.0.0.1:{r.stdout.strip()}/cart/42"
    assert story(p) == [
        ("data.access", m["put"], name, "write PUT /cart/42"),
        ("data.access", m["get"], name, "read GET /cart/42"),
    ]
    for e in p.events:
        if e.kind == "data.access":
            before = [x.kind for x in p.of_unit(e.unit) if x.seq < e.seq]
            assert before[-1] == "msg.recv"


API = """
    import asyncio, willowisp

    willowisp.access("cart:42", "write")  # @call
    with willowisp.access("cart:42", "read") as a:  # @with
        pass

    @willowisp.access("cart:42", "write")  # @def
    def add(n):
        return n + 1

    @willowisp.access("cart:43", "read")  # @adef
    async def peek():
        return 7

    print(add(1), add(2), asyncio.run(peek()), repr(a))
"""


def test_public_api_as_a_call_a_context_manager_and_a_decorator(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """willowisp.access records one access per call statement, per ``with`` and per call of
    a decorated function (sync or async), each where the program says (for a decorated
    function, where it is declared: the first line of its definition, the decorator's)."""
    out = str(tmp_path / "run")
    r = run_program(API, out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "3", "7", "willowisp.access('cart:42',", "'read')"]
    p = read_run(out)["prog"]
    m = {k: f"prog.py:{v}" for k, v in marks_of(API).items()}
    assert story(p) == [
        ("data.access", m["call"], "cart:42", "write"),
        ("data.access", m["with"], "cart:42", "read"),
        ("data.access", m["def"], "cart:42", "write"),
        ("data.access", m["def"], "cart:42", "write"),
        ("data.access", m["adef"], "cart:43", "read"),
    ]
    assert {r["store"] for r in p.resources.values() if r.get("kind") == "data"} == {"api"}


def test_public_api_without_an_agent_does_nothing_and_checks_the_mode() -> None:
    """Outside a recorded process every spelling runs the program's code unchanged; a mode
    other than read or write is the program's mistake and says so."""
    willowisp.access("x", "read")
    with willowisp.access("x", "write"):
        pass

    @willowisp.access("x")
    def f(v: Any) -> Any:
        return v

    assert f(3) == 3
    with pytest.raises(ValueError, match="expected 'read' or 'write'"):
        willowisp.access("x", "append")


FACTORIES = """
    import os, sqlite3, sys
    db = os.path.join(sys.argv[1], "f.db")

    class Mine(sqlite3.Connection):
        pass

    class MyCursor(sqlite3.Cursor):
        pass

    a = sqlite3.connect(db, 5.0, 0, "DEFERRED", True, Mine)  # factory passed by position
    b = sqlite3.connect(db, factory=Mine)
    a.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    a.execute("SELECT * FROM t")  # @a
    cur = b.cursor(MyCursor)
    cur.execute("SELECT * FROM t")  # @b
    print(type(a) is not Mine, isinstance(a, Mine), isinstance(b, Mine), isinstance(cur, MyCursor))
"""


def test_the_programs_own_factories_are_kept(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """A connection factory given by keyword or position, and a cursor factory, stay the
    program's classes (subclassed), and their statements are recorded."""
    out = str(tmp_path / "run")
    r = run_program(FACTORIES, out, args=[str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True"] * 4
    p = read_run(out)["prog"]
    m = {k: f"prog.py:{v}" for k, v in marks_of(FACTORIES).items()}
    table = f"sqlite:{tmp_path / 'f.db'}#t"
    assert story(p) == [
        ("data.access", m["a"], table, "read SELECT * FROM t"),
        ("data.access", m["b"], table, "read SELECT * FROM t"),
    ]


OPEN_FROM_C = """
    import atexit, os, sys
    path = os.path.join(sys.argv[1], "from-c.txt")
    open(path, "w").close()  # @mine
    atexit.register(open, path, "w")  # called at exit, from C: no Python frame at all
    raise KeyboardInterrupt  # CPython 3.11 prints its source line through io.open, from C
"""


def test_open_called_from_c_is_no_fault(
    tmp_path: Path, marks_of: Callable[[str], dict[str, int]]
) -> None:
    """open() called with no Python caller (the interpreter printing a traceback, as on
    Ctrl-C; an atexit callback) is not recorded and is no agent fault."""
    out = str(tmp_path / "run")
    r = run_program(OPEN_FROM_C, out, args=[str(tmp_path)])
    assert r.returncode != 0 and "KeyboardInterrupt" in r.stderr, r.stderr
    p = read_run(out)["prog"]
    assert p.faults == {}, p.faults
    path = f"file:{tmp_path / 'from-c.txt'}"
    assert ("data.access", f"prog.py:{marks_of(OPEN_FROM_C)['mine']}", path, "write open w") in (
        story(p)
    )
