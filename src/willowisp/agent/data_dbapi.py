"""Hooks for DB-API 2.0 drivers other than ``sqlite3``: statements as data accesses,
explicit transactions as holds of a per-database lock.

Drivers: ``duckdb`` (tested here), ``psycopg2``, ``psycopg``, ``pymysql``,
``mysql.connector`` and ``pg8000`` (wired by module name through the same code, not tested
against a server). Each is hooked when the program imports it (post_import); its module
level ``connect`` (and ``Connect`` where the driver has that alias) is replaced by a wrapper
that returns a thin proxy around the driver's connection.

**Why proxies.** Most of these connection classes are implemented in C (duckdb's
``DuckDBPyConnection``, psycopg2's ``connection``): their methods cannot be replaced in
place, and ``connect`` builds them itself (no factory to subclass, unlike sqlite3). The
proxy forwards every attribute it does not wrap to the real object, reports the real class
as its ``__class__`` (so ``isinstance(conn, duckdb.DuckDBPyConnection)`` stays true), and
keeps the real object as ``__wrapped__``. What it cannot hide: ``type(conn)`` is the
proxy's class, and C code that checks the exact type (duckdb's ``connection=`` arguments,
pandas' ``read_sql`` type dispatch) rejects or mis-detects it; pass ``conn.__wrapped__``
there, whose statements are then not recorded. A wrapped call that returns the real object
itself (duckdb's ``execute`` returns its connection) returns the proxy instead, so chained
calls stay recorded; every other return value and every exception is the driver's own.

**Accesses.** ``execute`` and ``executemany`` of connections (duckdb's, psycopg's) and of
cursors are shaped by data_sqlite's parser: a ``SELECT``/``VALUES``/read-only ``WITH`` is a
read, ``INSERT``/``UPDATE``/``DELETE``/``REPLACE`` a write, of
``<driver>:<database>#<table>``; ``WHERE id = <placeholder>`` (or ``<table>_id``, any
paramstyle: ``?``, ``%s``, ``%(name)s``, ``:name``, ``$1``, or a literal) and nothing else
is a row, keyed like sqlite3's (``data_access.row_key``). The key column is guessed by
name, not asked from the schema (a question to a server would be a statement in the
program's transaction). ``executemany`` is the whole table.

**The lock** (``lock`` resource ``<driver>:<database>``, ``shared=1``): an explicit
``BEGIN``/``START TRANSACTION`` statement (or duckdb's ``begin()``) acquires it when it
returns; ``COMMIT``/``END``/``ROLLBACK``/``ABORT``, ``commit()``, ``rollback()``,
``close()`` and leaving ``with conn:`` release it before they run. A write outside it is
atomic on its own (acquire, write, release). This models transactions as serializable: for
DuckDB (optimistic MVCC: of two conflicting transactions one fails) it is what the program
can rely on; for server databases it is an approximation (PostgreSQL's and MySQL's default
isolation lets a read in one transaction be followed by another's committed write, unless
the program locks rows with ``SELECT ... FOR UPDATE``), so a read-modify-write inside
``BEGIN``/``COMMIT`` is not reported there. The driver's implicit transactions (psycopg2's
and pymysql's ``autocommit=False`` default) are not holds: only explicit ones are.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from willowisp.agent import data_access as d
from willowisp.agent import data_sqlite as sq
from willowisp.agent import messaging as m
from willowisp.agent import recorder as _r

# driver module -> (the store name in resources, connect attributes to wrap,
# whether ``cursor()`` opens its own connection and transaction (duckdb))
DRIVERS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "duckdb": ("duckdb", ("connect",), True),
    "psycopg2": ("psycopg2", ("connect",), False),
    "psycopg": ("psycopg", ("connect",), False),
    "pymysql": ("pymysql", ("connect", "Connect"), False),
    "mysql.connector": ("mysql", ("connect", "Connect"), False),
    "pg8000": ("pg8000", ("connect",), False),
}
_hooks: list[m.DeferredHook] = []
_memory = itertools.count(1)
_START = re.compile(r"^\s*(?:START\s+TRANSACTION|BEGIN)\b", re.I)
_END = re.compile(r"^\s*(?:COMMIT|END|ABORT|ROLLBACK)\b(?!.*\bTO\b)", re.I | re.S)


class State:
    """One connection's (one transaction's) recording state, shared by its cursors."""

    __slots__ = ("db", "held", "own_cursors", "store")

    def __init__(self, store: str, db: str, own_cursors: bool) -> None:
        self.store = store
        self.db = db  # '<driver>:<database>': the lock's name and the data's prefix
        self.held = False
        self.own_cursors = own_cursors


def database_name(module: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """What a ``connect`` call names: a file's absolute path (duckdb), ``:memory:@pid.n``
    for a private in-memory database, ``host[:port]/database`` for a server."""
    if module == "duckdb":
        database = kwargs.get("database", args[0] if args else ":memory:")
        name = os.fsdecode(database) if isinstance(database, str | bytes | os.PathLike) else ""
        if name in ("", ":memory:") or not isinstance(database, str | bytes | os.PathLike):
            return f":memory:@{os.getpid()}.{next(_memory)}"
        if name.startswith(":memory:"):  # a named in-memory database: one per process
            return f"{name}@{os.getpid()}"
        if ":" in name.split("/", 1)[0] and not os.path.exists(name):  # md:, s3:, ...
            return d.cut(name)
        return os.path.abspath(name)
    fields = {k: v for k, v in kwargs.items() if v is not None}
    dsn = fields.pop("dsn", None) or fields.pop("conninfo", None)
    if dsn is None and args and isinstance(args[0], str):
        dsn = args[0]
    if isinstance(dsn, str) and "://" in dsn:
        url = urlsplit(dsn)
        fields.setdefault("host", url.hostname or "")
        fields.setdefault("port", url.port or "")
        fields.setdefault("dbname", url.path.lstrip("/"))
    elif isinstance(dsn, str):
        for part in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn):
            fields.setdefault(part.group(1), part.group(2).strip("'"))
    host = str(fields.get("host") or fields.get("unix_socket") or "localhost")
    port = fields.get("port")
    db = fields.get("dbname") or fields.get("database") or fields.get("db") or ""
    if isinstance(db, bytes):
        db = db.decode(errors="replace")
    return d.cut(f"{host}{f':{port}' if port else ''}/{db}")


def _row_param(sh: sq.Shape, params: Any) -> Any:
    """The bound value ``sh.param`` names, None if it is not there."""
    ref = sh.param
    if ref is None or params is None:
        return None
    if isinstance(ref, str) and ref.isdigit() and not isinstance(params, Mapping):
        ref = int(ref) - 1  # $1: PostgreSQL's and duckdb's positional style
    try:
        return params[ref]
    except (LookupError, TypeError):
        return None


def _data(rec: _r.Recorder, st: State, sh: sq.Shape, params: Any, key: int) -> int:
    row = ""
    if sh.row_column in ("id", "rowid", f"{sh.table}_id"):
        value = sh.value if sh.param is None else _row_param(sh, params)
        if value is not None:
            row = d.row_key(rec, sh.row_column, value)
    name = d.cut(f"{st.db}#{sh.table}") + (f"[{row}]" if row else "")
    return d.resource(
        rec, name, store=st.store, statement=sh.statement, key=key, table=sh.table, row=row
    )


def _kind(sql: str, sh: sq.Shape) -> int:
    if sh.kind in (sq.BEGIN, sq.BEGIN_LOCK) or (sh.kind == sq.OTHER and _START.match(sql)):
        return sq.BEGIN
    if sh.kind == sq.END or (sh.kind == sq.OTHER and _END.match(sql)):
        return sq.END
    return sh.kind


def _release(rec: _r.Recorder, st: State, key: int) -> None:
    st.held = False
    d.emit(rec, d.RELEASE, d.shared_lock(rec, st.db), 0, key)


def _run(st: State, call: Any, sql: Any, params: Any, many: bool, where: str) -> Any:
    """Run one statement through ``call`` with the recording around it."""
    rec = _r.RECORDER
    if rec is None or not isinstance(sql, str):
        return call()
    try:
        sh = sq.shape(sql)
        kind = _kind(sql, sh)
        if kind == sq.END and st.held:
            _release(rec, st, rec.program_location_key())
    except Exception as exc:
        rec.fault(where, exc)
        return call()
    result = call()  # an exception is the program's: nothing was accessed
    try:
        key = rec.program_location_key()
        if kind == sq.BEGIN and not st.held:
            d.emit(rec, d.ACQUIRED, d.shared_lock(rec, st.db, key), 0, key)
            st.held = True
        elif kind in (sq.READ, sq.WRITE):
            rid = _data(rec, st, sh, None if many else params, key)
            if kind == sq.READ or st.held:
                d.access(rec, rid, kind, key)
            else:
                d.atomic_write(rec, d.shared_lock(rec, st.db, key), rid, key)
    except Exception as exc:
        rec.fault(where, exc)
    return result


def _ending(st: State, call: Any, where: str) -> Any:
    """commit(), rollback(), close(), leaving ``with``: release first if held."""
    rec = _r.RECORDER
    if rec is not None and st.held:
        try:
            _release(rec, st, rec.program_location_key())
        except Exception as exc:
            rec.fault(where, exc)
    return call()


class _Proxy:
    """Forwards what it does not define to ``__wrapped__``."""

    __slots__ = ("__wrapped__", "_wisp_state")

    def __init__(self, target: Any, state: State) -> None:
        object.__setattr__(self, "__wrapped__", target)
        object.__setattr__(self, "_wisp_state", state)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() against the driver's class still holds
        return type(self.__wrapped__)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__wrapped__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__wrapped__, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__wrapped__, name)

    def __dir__(self) -> list[str]:
        return dir(self.__wrapped__)

    def __repr__(self) -> str:
        return repr(self.__wrapped__)

    def __iter__(self) -> Any:
        return iter(self.__wrapped__)

    def __next__(self) -> Any:
        return next(self.__wrapped__)

    def __enter__(self) -> Any:
        got = self.__wrapped__.__enter__()
        return self if got is self.__wrapped__ else got

    def __exit__(self, *exc: Any) -> Any:
        return self.__wrapped__.__exit__(*exc)

    def _same(self, result: Any) -> Any:
        return self if result is self.__wrapped__ else result

    def execute(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        params = args[0] if args else kwargs.get("parameters", kwargs.get("params"))
        target = self.__wrapped__
        result = _run(
            self._wisp_state,
            lambda: target.execute(sql, *args, **kwargs),
            sql,
            params,
            False,
            "dbapi.execute",
        )
        return self._same(result)

    def executemany(self, sql: Any, *args: Any, **kwargs: Any) -> Any:
        target = self.__wrapped__
        result = _run(
            self._wisp_state,
            lambda: target.executemany(sql, *args, **kwargs),
            sql,
            None,
            True,
            "dbapi.executemany",
        )
        return self._same(result)


class Cursor(_Proxy):
    """A cursor: its ``execute``/``executemany`` recorded; ``connection`` is the proxy."""

    __slots__ = ("_wisp_conn",)

    def __init__(self, target: Any, state: State, conn: Any) -> None:
        super().__init__(target, state)
        object.__setattr__(self, "_wisp_conn", conn)

    @property
    def connection(self) -> Any:
        return self._wisp_conn


class Connection(_Proxy):
    """A connection: statements, transactions, and cursors that are proxies too."""

    __slots__ = ()

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        cur = self.__wrapped__.cursor(*args, **kwargs)
        st = self._wisp_state
        if st.own_cursors:  # duckdb: a cursor is a connection of its own, with its own BEGIN
            return Connection(cur, State(st.store, st.db, True))
        return Cursor(cur, st, self)

    def begin(self, *args: Any, **kwargs: Any) -> Any:  # duckdb's begin()
        target = self.__wrapped__
        return self._same(
            _run(
                self._wisp_state,
                lambda: target.begin(*args, **kwargs),
                "BEGIN",
                None,
                False,
                "dbapi.begin",
            )
        )

    def commit(self, *args: Any, **kwargs: Any) -> Any:
        target = self.__wrapped__
        return self._same(
            _ending(self._wisp_state, lambda: target.commit(*args, **kwargs), "dbapi.commit")
        )

    def rollback(self, *args: Any, **kwargs: Any) -> Any:
        target = self.__wrapped__
        return self._same(
            _ending(self._wisp_state, lambda: target.rollback(*args, **kwargs), "dbapi.rollback")
        )

    def close(self, *args: Any, **kwargs: Any) -> Any:
        target = self.__wrapped__
        return _ending(self._wisp_state, lambda: target.close(*args, **kwargs), "dbapi.close")

    def __exit__(self, *exc: Any) -> Any:
        target = self.__wrapped__
        return _ending(self._wisp_state, lambda: target.__exit__(*exc), "dbapi.exit")


def _wrap_connect(module: str, store: str, own_cursors: bool, original: Any) -> Any:
    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = original(*args, **kwargs)  # the driver's exceptions are the program's
        rec = _r.RECORDER
        if rec is None or not d.enabled(rec):
            return conn
        try:
            db = f"{store}:{database_name(module, args, kwargs)}"
            return Connection(conn, State(store, db, own_cursors))
        except Exception as exc:  # unrecorded, but the program's connection all the same
            rec.fault(f"{module}.connect", exc)
            return conn

    connect.__wrapped__ = original  # type: ignore[attr-defined]
    connect.__name__ = getattr(original, "__name__", "connect")
    connect.__doc__ = getattr(original, "__doc__", None)
    return connect


def _patcher(module: str, patches: m.Patches) -> Any:
    store, attrs, own_cursors = DRIVERS[module]

    def patch() -> None:
        mod = importlib.import_module(module)
        for attr in attrs:
            original = getattr(mod, attr, None)
            if original is not None and not hasattr(original, "_wisp_connect"):
                wrapper = _wrap_connect(module, store, own_cursors, original)
                wrapper._wisp_connect = True
                patches.set(mod, attr, wrapper)

    return patch


def install() -> None:
    """Hook each driver now if imported, else when the program imports it."""
    if not _hooks:
        for module in DRIVERS:
            patches = m.Patches()
            _hooks.append(
                m.DeferredHook(module, _patcher(module, patches), patches, f"install {module}")
            )
    for hook in _hooks:
        try:
            hook.install()
        except Exception as exc:  # one driver that cannot be hooked leaves the others
            rec = _r.RECORDER
            if rec is not None:
                rec.fault(hook.where, exc)


def uninstall() -> None:
    for hook in _hooks:
        hook.uninstall()
