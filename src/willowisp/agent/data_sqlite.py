"""Hooks for the standard library's ``sqlite3``: statements as data accesses, transactions
as holds of the database's write lock.

``sqlite3.connect`` is replaced by a wrapper that passes a subclass of the program's
connection factory (``sqlite3.Connection`` unless it gave its own), whose cursors are a
subclass of theirs; the program still gets a ``sqlite3.Connection``. The subclass wraps
``execute``, ``executemany``, ``executescript`` (of connections and cursors), ``commit``,
``rollback``, ``close`` and ``__exit__``: in CPython the connection's own ``execute`` and
``with conn:`` do not go through the Python-level cursor or commit methods, so each is
wrapped where the program calls it.

**Accesses.** A ``SELECT`` (or ``VALUES``, or a ``WITH`` that writes nothing) is a read, an
``INSERT``/``UPDATE``/``DELETE``/``REPLACE`` a write, recorded after the statement ran, at
the program's line. The data is the table named after ``FROM``/``INTO``/``UPDATE``
(the first one: a join is recorded as a read of its first table), and the row when the
statement selects one row by equality on the primary key, ``WHERE pk = ?`` (or ``:name``,
or a literal) and nothing else: the row key is ``column=`` the bound value, hashed
(agent/data_access.py). Which column is the key is asked once per table (``PRAGMA
table_info``; a single-column key, or ``rowid``); any other ``WHERE`` is the whole table.
``executemany`` is an access to the whole table. Statements are kept as shapes: string and
number literals become ``?``, whitespace is collapsed, 300 characters at most.
In-memory and temporary databases (``:memory:``, ``''``, ``mode=memory``) are private to
their connection and not recorded; a file database is named by its absolute path.

**The database lock** (``lock`` resource ``sqlite:<path>``, ``shared=1``). SQLite lets one
connection write at a time; what it serializes is what the lock models:

- ``BEGIN IMMEDIATE`` / ``BEGIN EXCLUSIVE`` take it at once: ``lock.acquired`` after the
  statement returns, so every read and write of the transaction is inside;
- a write outside such a transaction takes it for the rest of its transaction: in an open
  transaction (sqlite3's implicit ``BEGIN`` before DML, or an explicit deferred ``BEGIN``)
  ``lock.acquired`` is written with the first write and held to the end; in autocommit the
  write is its own transaction, written as acquire, access, release;
- ``COMMIT`` / ``END`` / ``ROLLBACK`` (statements, ``commit()``, ``rollback()``,
  ``close()``, leaving ``with conn:``) write ``lock.release`` before they run; a
  transaction that ended any other way (an error that rolled it back) is released when the
  hook next sees ``in_transaction`` false.

Reads in a deferred transaction are not inside the lock: SQLite lets another connection
write between them and the first write of the transaction (and then fails one of the two
with "database is locked"), which is the read-modify-write race the analysis reports.
Not modelled: ``SAVEPOINT`` nesting, ``ATTACH``ed databases (their statements count as
the main file's), statements inside ``executescript`` (only the transaction it ends).
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from typing import Any

from willowisp.agent import data_access as d
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r

READ, WRITE = d.READ, d.WRITE
BEGIN_LOCK, BEGIN, END, OTHER = 2, 3, 4, 5  # statement kinds besides READ and WRITE
MAX_STATEMENT = 300
MAX_SHAPES = 4096  # distinct SQL texts remembered; past that the cache starts over

_patches = m.Patches()
_orig_connect: Any = None
_classes: dict[type, type] = {}  # the program's factory (connection or cursor) -> ours
_shapes: dict[str, Shape] = {}
_keys: dict[tuple[str, str], frozenset[str]] = {}  # (database, table) -> row key columns

_LITERAL = re.compile(r"'(?:[^']|'')*'|\b(?:0x[0-9a-f]+|\d+(?:\.\d+)?(?:e[+-]?\d+)?)\b", re.I)
_SPACE = re.compile(r"\s+")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
_IDENT = r"(?:\"[^\"]+\"|\[[^\]]+\]|`[^`]+`|[A-Za-z_][\w$]*)"
_QUALIFIED = rf"({_IDENT}(?:\s*\.\s*{_IDENT})?)"
_TABLE = {
    READ: re.compile(rf"\bFROM\s+{_QUALIFIED}", re.I),
    WRITE: re.compile(
        rf"^(?:WITH\b.*?\b)?(?:INSERT|REPLACE)\s+(?:OR\s+\w+\s+)?INTO\s+{_QUALIFIED}"
        rf"|^(?:WITH\b.*?\b)?UPDATE\s+(?:OR\s+\w+\s+)?{_QUALIFIED}"
        rf"|^(?:WITH\b.*?\b)?DELETE\s+FROM\s+{_QUALIFIED}",
        re.I | re.S,
    ),
}
_WHERE_ONE = re.compile(
    rf"\bWHERE\s+(?:{_IDENT}\s*\.\s*)?({_IDENT})\s*=\s*"
    r"(\?\d*|[:@$]\w+|%s|%\(\w+\)s|'(?:[^']|'')*'|-?\d+)"
    r"\s*(?:;\s*)?(?:\b(?:LIMIT|ORDER|RETURNING)\b.*)?$",
    re.I | re.S,
)


class Shape:
    """What one SQL text is, parsed once."""

    __slots__ = ("kind", "param", "row_column", "statement", "table", "value")

    def __init__(self, sql: str) -> None:
        text = _SPACE.sub(" ", _COMMENT.sub(" ", sql)).strip()
        head = text.split(" ", 2)
        word = head[0].upper() if head else ""
        self.kind = _kind(word, text)
        self.statement = _LITERAL.sub("?", text).rstrip("; ")[:MAX_STATEMENT]
        self.table = ""
        self.row_column = ""
        self.param: int | str | None = None  # which bound parameter is the row key
        self.value: str | None = None  # or the literal that is
        if self.kind not in (READ, WRITE):
            return
        found = _TABLE[self.kind].search(text)
        if found is None:
            self.kind = OTHER  # SELECT 1, a pragma function: no table, no data
            return
        self.table = _unquote(next(g for g in found.groups() if g).split(".")[-1])
        where = _WHERE_ONE.search(text)
        if where is None or re.search(r"\b(?:AND|OR|IN|JOIN|UNION)\b", text[where.start() :], re.I):
            return
        self.row_column = _unquote(where.group(1))
        ref = where.group(2)
        if ref.startswith("?") and len(ref) > 1:
            self.param = int(ref[1:]) - 1
        elif ref == "?":
            self.param = _LITERAL.sub("", text[: where.start(2)]).count("?")
        elif ref[0] in ":@$":
            self.param = ref[1:]
        elif ref == "%s":  # the DB-API's format and pyformat styles (not sqlite3's)
            self.param = _LITERAL.sub("", text[: where.start(2)]).count("%s")
        elif ref.startswith("%("):
            self.param = ref[2:-2]
        else:
            self.value = ref.strip("'").replace("''", "'")


def _kind(word: str, text: str) -> int:
    if word in ("SELECT", "VALUES"):
        return READ
    if word in ("INSERT", "UPDATE", "DELETE", "REPLACE"):
        return WRITE
    if word == "WITH":
        writes = re.search(r"\)\s*(INSERT|UPDATE|DELETE|REPLACE)\b", text, re.I)
        return WRITE if writes else READ
    if word == "BEGIN":
        return BEGIN_LOCK if re.match(r"BEGIN\s+(IMMEDIATE|EXCLUSIVE)", text, re.I) else BEGIN
    if word in ("COMMIT", "END") or (word == "ROLLBACK" and " TO " not in f" {text.upper()} "):
        return END
    return OTHER


def _unquote(name: str) -> str:
    name = name.strip()
    if name[:1] in '"[`' and len(name) > 1:
        name = name[1:-1]
    return name.lower()


def shape(sql: str) -> Shape:
    found = _shapes.get(sql)
    if found is None:
        if len(_shapes) >= MAX_SHAPES:
            _shapes.clear()
        found = _shapes[sql] = Shape(sql)
    return found


def database_path(database: Any, uri: bool) -> str:
    """The absolute path of a file database, '' for a private (in-memory, temporary) one."""
    try:
        name = os.fsdecode(database)
    except TypeError:
        return ""
    if uri and name.startswith("file:"):
        path, _, query = name[5:].partition("?")
        if "mode=memory" in query or path in ("", ":memory:"):
            return ""
        name = path[2:] if path.startswith("//") else path
    if name in ("", ":memory:"):
        return ""
    return os.path.abspath(name)


# --- the connection's state ---------------------------------------------------------------
# On the connection object (our subclass has a __dict__): ``_wisp_db`` the database path
# ('' when not recorded), ``_wisp_held`` whether this connection holds the database lock
# in the trace (written acquired and not yet released).


def _before(rec: _r.Recorder, conn: Any, kind: int) -> None:
    """What must be written before a statement runs: the release of an ending transaction."""
    if kind == END and conn.__dict__.get("_wisp_held"):
        _release(rec, conn, rec.program_location_key())


def _release(rec: _r.Recorder, conn: Any, key: int) -> None:
    conn._wisp_held = False
    d.emit(rec, d.RELEASE, d.shared_lock(rec, f"sqlite:{conn._wisp_db}"), 0, key)


def _after(rec: _r.Recorder, conn: Any, sh: Shape, params: Any, many: bool) -> None:
    """Record a statement that ran: its access, and the lock it took or gave up."""
    db = conn.__dict__.get("_wisp_db")
    if not db:
        return
    key = rec.program_location_key()
    held = conn.__dict__.get("_wisp_held", False)
    lock_name = f"sqlite:{db}"
    if sh.kind == BEGIN_LOCK and not held:
        d.emit(rec, d.ACQUIRED, d.shared_lock(rec, lock_name, key), 0, key)
        conn._wisp_held = held = True
    elif sh.kind in (READ, WRITE):
        rid = _data(rec, conn, sh, None if many else params, key)
        if sh.kind == READ or held:
            d.access(rec, rid, sh.kind, key)
        elif conn.in_transaction:  # the write took the lock for the rest of the transaction
            d.emit(rec, d.ACQUIRED, d.shared_lock(rec, lock_name, key), 0, key)
            d.access(rec, rid, WRITE, key)
            conn._wisp_held = held = True
        else:  # autocommit: the statement was its own transaction
            d.atomic_write(rec, d.shared_lock(rec, lock_name, key), rid, key)
    if held and not conn.in_transaction:  # ended by COMMIT inside a script, an error, ...
        _release(rec, conn, key)


def _primary_key(conn: Any, db: str, table: str) -> frozenset[str]:
    """The names that select one row of ``table`` by equality: its single-column primary
    key and the rowid aliases. Asked once per (database, table), with the connection's own
    ``execute`` (not ours: the question is not the program's access)."""
    found = _keys.get((db, table))
    if found is None:
        names = {"rowid", "oid", "_rowid_"}
        try:
            info = _sqlite3().Connection.execute(conn, f'PRAGMA table_info("{table}")')
            pk = [str(col[1]).lower() for col in info.fetchall() if col[5]]
            if len(pk) == 1:
                names.add(pk[0])
        except Exception:  # a view, a virtual table, a closed connection: rowid only
            pass
        if len(_keys) >= MAX_SHAPES:
            _keys.clear()
        found = _keys[(db, table)] = frozenset(names)
    return found


def _data(rec: _r.Recorder, conn: Any, sh: Shape, params: Any, key: int) -> int:
    """The data resource of one statement: its table, or its row when it names one."""
    row = ""
    db = conn._wisp_db
    if sh.row_column and sh.row_column in _primary_key(conn, db, sh.table):
        value: Any = sh.value
        if sh.param is not None and params is not None:
            try:
                value = params[sh.param]
            except (LookupError, TypeError):
                value = None
        if value is not None:
            row = d.row_key(rec, sh.row_column, value)
    name = f"sqlite:{db}#{sh.table}" + (f"[{row}]" if row else "")
    return d.resource(
        rec, name, store="sqlite", statement=sh.statement, key=key, table=sh.table, row=row
    )


def _run(conn: Any, call: Any, sql: Any, params: Any, many: bool) -> Any:
    """Run one statement through ``call`` with the recording around it."""
    rec = _r.RECORDER
    if rec is None or not isinstance(sql, str) or not conn.__dict__.get("_wisp_db"):
        return call()
    try:
        sh = shape(sql)
        _before(rec, conn, sh.kind)
    except Exception as exc:
        rec.fault("sqlite3.execute", exc)
        return call()
    try:
        result = call()
    except BaseException:
        _settle(rec, conn)
        raise
    try:
        _after(rec, conn, sh, params, many)
    except Exception as exc:
        rec.fault("sqlite3.execute", exc)
    return result


def _settle(rec: _r.Recorder, conn: Any) -> None:
    """After a failed statement or call: release if its transaction is gone."""
    try:
        if conn.__dict__.get("_wisp_held") and not conn.in_transaction:
            _release(rec, conn, rec.program_location_key())
    except Exception as exc:
        rec.fault("sqlite3", exc)


def _ending(conn: Any, call: Any, where: str) -> Any:
    """commit(), rollback(), close(), leaving ``with``: release first if held."""
    rec = _r.RECORDER
    if rec is not None and conn.__dict__.get("_wisp_held"):
        try:
            _release(rec, conn, rec.program_location_key())
        except Exception as exc:
            rec.fault(where, exc)
    return call()


def _cursor_class(base: type) -> type:
    ours = _classes.get(base)
    if ours is not None:
        return ours
    if base in _classes.values():
        return base

    class Cursor(base):  # type: ignore[misc]
        __module__ = base.__module__

        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            return _run(
                self.connection,
                lambda: super(Cursor, self).execute(sql, parameters),
                sql,
                parameters,
                False,
            )

        def executemany(self, sql: Any, seq: Any, /) -> Any:
            return _run(
                self.connection,
                lambda: super(Cursor, self).executemany(sql, seq),
                sql,
                None,
                True,
            )

        def executescript(self, script: Any, /) -> Any:
            conn = self.connection
            return _ending(conn, lambda: super(Cursor, self).executescript(script), "sqlite3")

    Cursor.__qualname__ = base.__qualname__
    _classes[base] = Cursor
    return Cursor


def _connection_class(base: type) -> type:
    ours = _classes.get(base)
    if ours is not None:
        return ours
    if base in _classes.values():
        return base

    class Connection(base):  # type: ignore[misc]
        __module__ = base.__module__

        def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(database, *args, **kwargs)
            self._wisp_held = False
            uri = kwargs.get("uri", args[6] if len(args) > 6 else False)
            try:
                self._wisp_db = database_path(database, bool(uri))
            except Exception as exc:
                self._wisp_db = ""
                rec = _r.RECORDER
                if rec is not None:
                    rec.fault("sqlite3.connect", exc)

        def cursor(self, factory: Any = None) -> Any:
            base_cursor = factory if factory is not None else _sqlite3().Cursor
            try:
                factory = _cursor_class(base_cursor)
            except Exception:  # a factory we cannot subclass (a function): not recorded
                factory = base_cursor
            return super().cursor(factory)

        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            return self.cursor().execute(sql, parameters)

        def executemany(self, sql: Any, seq: Any, /) -> Any:
            return self.cursor().executemany(sql, seq)

        def executescript(self, script: Any, /) -> Any:
            return self.cursor().executescript(script)

        def commit(self) -> Any:
            return _ending(self, super().commit, "sqlite3.commit")

        def rollback(self) -> Any:
            return _ending(self, super().rollback, "sqlite3.rollback")

        def close(self) -> Any:
            return _ending(self, super().close, "sqlite3.close")

        def __exit__(self, *exc: Any) -> Any:
            return _ending(self, lambda: super(Connection, self).__exit__(*exc), "sqlite3")

    Connection.__qualname__ = base.__qualname__
    _classes[base] = Connection
    return Connection


def _sqlite3() -> Any:
    return sys.modules["sqlite3"]


def _connect(database: Any, *args: Any, **kwargs: Any) -> Any:
    rec = _r.RECORDER
    if rec is not None and d.enabled(rec):
        try:
            if len(args) > 4:  # factory is connect's sixth parameter (after database)
                args = (*args[:4], _connection_class(args[4]), *args[5:])
            else:
                kwargs["factory"] = _connection_class(
                    kwargs.get("factory") or _sqlite3().Connection
                )
        except Exception as exc:  # an unusual factory: connect plainly
            rec.fault("sqlite3.connect", exc)
    return _orig_connect(database, *args, **kwargs)


def _patch() -> None:
    global _orig_connect
    sqlite3 = importlib.import_module("sqlite3")
    dbapi2 = importlib.import_module("sqlite3.dbapi2")
    _orig_connect = sqlite3.connect
    _patches.set(sqlite3, "connect", _connect)
    _patches.set(dbapi2, "connect", _connect)


_hook = m.DeferredHook("sqlite3", _patch, _patches, "install sqlite3")
install = _hook.install  # hooks sqlite3 now if imported, else when the program imports it
uninstall = _hook.uninstall
