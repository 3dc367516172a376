"""The DuckDB side of ``willowisp query``: a locked-down in-memory database over a trace.

**Lazy tables.** Before anything is built, the SQL's table names are read with DuckDB's
own parser (``duckdb.get_table_names``: common table expressions are not counted); only
the tables it names are made, with the base tables (``_ev``, ``_units``, ...) they are
views over. ``findings`` needs the whole analysis, which is what makes it expensive, so
it is computed only for a query that names it (and comes from the results cache when the
run was analyzed before). A statement naming none of the tables (``SHOW TABLES``, the
catalog functions) gets every table but ``findings``; one the parser resolves against
the catalog (``SHOW events``, ``PRAGMA table_info(...)``) every table its text names.

**Zero copy.** Base tables are dicts of numpy arrays that DuckDB scans in place; the
views add names by joining with small tables (see :mod:`willowisp.query.columns`).

**Read-only, no file system.** The database is in memory and holds only the trace's
tables. It is opened with ``enable_external_access = false`` (no file or network access:
``COPY ... TO``, ``ATTACH``, ``EXPORT``, ``INSTALL``/``LOAD``, ``read_csv``, ``glob``, ... all
fail with a permission error), extension auto-loading off, Python replacement scans off (a
query cannot reach this process's variables), no spill directory, and then
``lock_configuration = true``, so the query itself cannot turn any of that back on.
Statements may still create tables or views in the in-memory database; nothing outlives
the command.
"""

# ruff: noqa: S608 - every SQL string here is built from this module's own constants and
# the schema's column names; the user's SQL is only ever passed whole to DuckDB.
from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from willowisp.causality.link import Causality
from willowisp.errors import UsageError
from willowisp.query import columns
from willowisp.query.order import Order, order_for
from willowisp.query.schema import TABLE_BY_NAME, TABLES

SAFE_CONFIG: dict[str, str | bool] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_unsigned_extensions": False,
    "python_enable_replacements": False,
    "temp_directory": "",  # never spill into the working directory
}
# Session settings (not allowed in the connect config); then the configuration is locked.
SESSION = (
    "SET enable_progress_bar = false",  # stdout is the answer: nothing else on the terminal
    "SET lock_configuration = true",
)


def _eid(alias: str, idx: str) -> tuple[str, str]:
    """(join clause, id expression) for the event whose index is the column ``idx``."""
    join = (
        f"LEFT JOIN _ev {alias} ON {alias}.idx = {idx} "
        f"LEFT JOIN _processes {alias}p ON {alias}p.idx = {alias}.proc"
    )
    return join, f"{alias}p.id || ':' || {alias}.seq"


def _with_events(body: str, events: dict[str, str]) -> str:
    """``body`` with ``{joins}`` and ``{<alias>_id}`` filled: one event join per alias."""
    joins, ids = [], {}
    for alias, idx in events.items():
        join, expr = _eid(alias, idx)
        joins.append(join)
        ids[f"{alias}_id"] = expr
    return body.format(joins=" ".join(joins), **ids)


_LOC = "l.file, l.line, l.func"

# Public table -> (base tables it needs, the SELECT behind it). The view made of it casts
# every column to its documented type, in the documented order (schema.TABLES).
VIEWS: dict[str, tuple[tuple[str, ...], str]] = {
    "events": (
        ("_ev", "_processes", "_kinds", "_units", "_ops", "_resources", "_locations"),
        "SELECT p.id || ':' || e.seq AS id, e.idx, p.id AS process, "
        "p.service, u.id AS unit, k.name AS kind, e.seq, e.time_ns, e.raw_ns, "
        "e.adjusted_ns, e.root_rel_ns, o.trace_id AS operation, r.id AS resource, "
        f"r.kind AS resource_kind, r.name AS resource_name, e.arg, {_LOC} "
        "FROM _ev e JOIN _processes p ON p.idx = e.proc "
        "LEFT JOIN _kinds k ON k.code = e.kind LEFT JOIN _units u ON u.idx = e.unit "
        "LEFT JOIN _ops o ON o.idx = e.op LEFT JOIN _resources r ON r.idx = e.res "
        "LEFT JOIN _locations l ON l.idx = e.loc",
    ),
    "units": (
        ("_units", "_processes", "_locations"),
        "SELECT u.id, p.id AS process, p.service, u.number, u.kind, "
        f"u.name, pu.id AS parent, u.coro, u.events, {_LOC} "
        "FROM _units u JOIN _processes p ON p.idx = u.proc "
        "LEFT JOIN _units pu ON pu.idx = u.parent LEFT JOIN _locations l ON l.idx = u.loc",
    ),
    "resources": (
        ("_resources", "_resource_attrs", "_processes", "_units", "_locations"),
        "SELECT r.id, p.id AS process, p.service, r.number, r.kind, "
        "r.name, ju.id AS unit, r.trace_id, r.span_id, r.parent_span_id, r.protocol, "
        f"r.library, r.method, r.target, r.peer, a.attrs::JSON AS attrs, {_LOC} "
        "FROM _resources r JOIN _processes p ON p.idx = r.proc "
        "JOIN _resource_attrs a ON a.idx = r.idx "
        "LEFT JOIN _units ju ON ju.idx = r.unit LEFT JOIN _locations l ON l.idx = r.loc",
    ),
    "processes": (
        ("_processes",),
        "SELECT id, pid, host, service, runtime, boot_id, run_root, "
        "parent_process_id, clock_domain, events, dropped, files, attrs::JSON AS attrs, "
        "agent::JSON AS agent "
        "FROM _processes",
    ),
    "edges": (
        ("_edges", "_ev", "_processes", "_edge_kinds", "_provenances"),
        _with_events(
            "SELECT {s_id} AS src, {d_id} AS dst, g.src_idx, g.dst_idx, k.name AS kind, "
            "v.name AS provenance, g.confidence FROM _edges g {joins} "
            "JOIN _edge_kinds k ON k.code = g.kind JOIN _provenances v ON v.code = g.provenance",
            {"s": "g.src_idx", "d": "g.dst_idx"},
        ),
    ),
    "clocks": (("_clocks",), "SELECT * FROM _clocks"),
    "hops": (
        ("_hops", "_ev", "_processes", "_resources", "_hop_kinds", "_unlinked", "_provenances"),
        _with_events(
            "SELECT k.name AS kind, h.reason = 0 AS linked, u.name AS reason, "
            "v.name AS provenance, h.confidence, "
            "CASE WHEN k.name = 'spawn' THEN 'process' "
            "ELSE coalesce(nullif(rc.protocol, ''), rs.protocol) END AS protocol, "
            "coalesce(rc.name, rs.name) AS name, "
            "coalesce(nullif(rc.trace_id, ''), rs.trace_id) AS trace_id, "
            "rc.id AS client_resource, rs.id AS server_resource, "
            "pc.service AS client_service, ps.service AS server_service, "
            "{s_id} AS send, {r_id} AS recv, {y_id} AS reply, {a_id} AS response, "
            "CASE WHEN a.idx IS NOT NULL AND s.idx IS NOT NULL "
            "THEN a.time_ns - s.time_ns END AS latency_ns "
            "FROM _hops h {joins} "
            "JOIN _hop_kinds k ON k.code = h.kind JOIN _unlinked u ON u.code = h.reason "
            "JOIN _provenances v ON v.code = h.provenance "
            "LEFT JOIN _resources rc ON rc.idx = h.client "
            "LEFT JOIN _resources rs ON rs.idx = h.server "
            "LEFT JOIN _processes pc ON pc.idx = rc.proc "
            "LEFT JOIN _processes ps ON ps.idx = rs.proc",
            {"s": "h.send", "r": "h.recv", "y": "h.reply", "a": "h.response"},
        ),
    ),
    "findings": (
        ("_findings",),
        "SELECT id, kind, severity, summary, units, "
        "resources::JSON AS resources, events, explanation, occurrences, detail::JSON AS detail "
        "FROM _findings",
    ),
    "waits": (
        ("_waits", "_ev", "_processes", "_units", "_resources", "_reasons", "_locations"),
        _with_events(
            "SELECT {b_id} AS block_event, {e_id} AS end_event, w.block_idx, e.idx AS end_idx, "
            "u.id AS unit, r.id AS resource, r.kind AS resource_kind, "
            "r.name AS resource_name, coalesce(k.name, w.reason::VARCHAR) AS reason, "
            "w.outcome, b.adjusted_ns AS start_ns, e.adjusted_ns AS end_ns, "
            f"e.time_ns - b.time_ns AS duration_ns, {_LOC} "
            "FROM _waits w {joins} "
            "LEFT JOIN _units u ON u.idx = w.unit LEFT JOIN _resources r ON r.idx = w.res "
            "LEFT JOIN _reasons k ON k.code = w.reason LEFT JOIN _locations l ON l.idx = b.loc",
            {"b": "w.block_idx", "e": "w.end_idx"},
        ),
    ),
    "lock_holds": (
        ("_holds", "_ev", "_processes", "_units", "_resources", "_locations"),
        _with_events(
            "SELECT r.id AS lock, r.kind AS lock_kind, r.name AS lock_name, u.id AS unit, "
            "{a_id} AS acquire, {rel_id} AS release, h.acquire_idx, "
            "rel.idx AS release_idx, h.shared, a.adjusted_ns AS start_ns, "
            "rel.adjusted_ns AS end_ns, rel.time_ns - a.time_ns AS duration_ns, "
            f"{_LOC} FROM _holds h {{joins}} "
            "LEFT JOIN _units u ON u.idx = h.unit LEFT JOIN _resources r ON r.idx = h.res "
            "LEFT JOIN _locations l ON l.idx = a.loc",
            {"a": "h.acquire_idx", "rel": "h.release_idx"},
        ),
    ),
}
assert set(VIEWS) == {t.name for t in TABLES}

_LABELS = ("_edge_kinds", "_provenances", "_unlinked", "_hop_kinds", "_reasons")

MACROS = (
    "CREATE MACRO concurrent(a, b) AS "
    "a <> b AND NOT happens_before(a, b) AND NOT happens_before(b, a)",
    "CREATE MACRO fmt_ns(ns) AS CASE "
    "WHEN ns IS NULL THEN NULL "
    "WHEN abs(ns) < 1000 THEN ns::BIGINT::VARCHAR || ' ns' "
    "WHEN abs(ns) < 1000000 THEN printf('%.1f µs', ns / 1e3) "
    "WHEN abs(ns) < 1000000000 THEN printf('%.2f ms', ns / 1e6) "
    "ELSE printf('%.3f s', ns / 1e9) END",
)


def view_sql(name: str, select: str) -> str:
    """The public view: ``select``'s columns cast to their documented types, in order.
    Empty object columns (no findings, no clocks bounded) would otherwise get whatever
    type DuckDB guesses."""
    cols = ", ".join(f'q."{c.name}"::{c.type} AS "{c.name}"' for c in TABLE_BY_NAME[name].columns)
    return f"CREATE VIEW {name} AS SELECT {cols} FROM ({select}) AS q"


# How DuckDB wraps an exception raised by one of our functions (happens_before, ...)
_UDF_ERROR = re.compile(r"Python exception occurred while executing the UDF: \w+: (.*)$")


def first_line(exc: BaseException) -> str:
    """DuckDB's message without its multi-line context (the caret drawing); for an error
    raised by one of the trace functions, only what that function said."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    m = _UDF_ERROR.search(line)
    return m.group(1) if m else line


@dataclass
class Result:
    """What a statement returned: column names, DuckDB type names and rows (Python values)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


class QueryDatabase:
    """An in-memory DuckDB database with the helpers, then the trace's tables a query needs.

    Two steps, so that a query's syntax is checked before any trace is read: construct
    (helpers only), ``tables_named(sql)``, then ``attach`` the linked trace with those
    tables (after which the configuration is locked) and ``run``. ``findings`` gives the
    analysis document's findings (called only if the SQL names that table). Use as a
    context manager, or call ``close``.
    """

    def __init__(self, findings: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self._c: Causality | None = None
        self._findings = findings
        self._order: Order | None = None
        self._index: _EventIndex | None = None
        self._made: set[str] = set()
        self.con = duckdb.connect(":memory:", config=dict(SAFE_CONFIG))
        self.con.create_function(
            "happens_before",
            self._happens_before,
            ["VARCHAR", "VARCHAR"],
            "BOOLEAN",
            side_effects=False,
        )
        for macro in MACROS:
            self.con.execute(macro)

    def tables_named(self, sql: str) -> set[str]:
        """The query tables ``sql`` names, lower case (read by DuckDB's parser, which also
        resolves the helpers). Raises UsageError for a syntax error."""
        try:
            names = self.con.get_table_names(sql)
        except duckdb.ParserException as exc:
            raise UsageError(f"SQL: {first_line(exc)}") from exc
        except duckdb.Error:
            # Statements the parser resolves against the catalog (``SHOW events``,
            # ``PRAGMA table_info('events')``) fail here, before the tables exist: take
            # every table whose name the text contains (too many is only slower).
            names = set(re.findall(r"[A-Za-z_]+", sql))
        return {n.lower() for n in names} & set(VIEWS)

    def attach(self, causality: Causality | None, tables: Iterable[str]) -> None:
        """Make ``tables`` (none: every table but findings) over ``causality``, then lock
        the configuration. Without a causality only ``findings`` can be made."""
        self._c = causality
        wanted = set(tables) or {t.name for t in TABLES if t.name != "findings"}
        for name in sorted(wanted):
            self._view(name)
        for statement in SESSION:
            self.con.execute(statement)

    def __enter__(self) -> QueryDatabase:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def run(self, sql: str) -> Result | None:
        """Run ``sql`` (the last statement's result; None if it returned nothing).

        Raises UsageError with DuckDB's message (first line) for any SQL error, including
        a refused file-system access.
        """
        try:
            rel = self.con.sql(sql)
            if rel is None:
                return None
            names = list(rel.columns)
            types = [str(t) for t in rel.types]
            rows = rel.fetchall()
        except duckdb.Error as exc:
            raise UsageError(f"SQL: {first_line(exc)}") from exc
        return Result(names, types, rows)

    # -- building ---------------------------------------------------------------------

    def _view(self, name: str) -> None:
        needs, select = VIEWS[name]
        for base in needs:
            self._base(base)
        self.con.execute(view_sql(name, select))

    def _base(self, name: str) -> None:
        if name in self._made:
            return
        self._made.add(name)
        if name == "_findings":
            found = self._findings() if self._findings is not None else []
            self.con.register(name, columns.findings(found))
            return
        c = self._c
        if c is None:
            raise UsageError(f"table {name} needs the trace, which was not loaded")
        builders: dict[str, Callable[[], columns.Columns]] = {
            "_ev": lambda: columns.events(c),
            "_processes": lambda: columns.processes(c),
            "_units": lambda: columns.units(c),
            "_resources": lambda: columns.resources(c),
            "_resource_attrs": lambda: columns.resource_attrs(c),
            "_locations": lambda: columns.locations(c),
            "_kinds": columns.kinds,
            "_ops": lambda: columns.operations(c),
            "_edges": lambda: columns.edges(c),
            "_hops": lambda: columns.hops(c),
            "_clocks": lambda: columns.clocks(c),
            "_waits": lambda: columns.wait_rows(c),
            "_holds": lambda: columns.hold_rows(c),
            **{label: functools.partial(columns.labels, label) for label in _LABELS},
        }
        self.con.register(name, builders[name]())

    # -- helpers ------------------------------------------------------------------------

    def _happens_before(self, a: str, b: str) -> bool:
        if self._c is None:
            raise ValueError("happens_before needs a trace")
        if self._index is None:
            self._index = _EventIndex(self._c)
        if self._order is None:
            self._order = order_for(self._c)
        return self._order.happens_before(self._index.row(a), self._index.row(b))


class _EventIndex:
    """Event id -> row, without a dictionary of every id: per process, its sequence
    numbers sorted once (on first use), then a binary search per id."""

    def __init__(self, c: Causality) -> None:
        self._trace = c.trace
        self._sorted: dict[int, tuple[Any, Any]] = {}

    def row(self, event_id: str) -> int:
        trace = self._trace
        pid, _, seq_text = event_id.rpartition(":")
        p = trace.process_index.get(pid)
        if p is None or not seq_text.isdigit():
            raise ValueError(f"no event {event_id!r} in this trace")
        if p not in self._sorted:
            lo, hi = int(trace.proc_bounds[p]), int(trace.proc_bounds[p + 1])
            seqs = trace.events.seq[lo:hi]
            order = np.argsort(seqs, kind="stable")
            self._sorted[p] = (seqs[order], order + lo)
        seqs, rows = self._sorted[p]
        seq = int(seq_text)
        i = int(np.searchsorted(seqs, seq))
        if i >= len(seqs) or int(seqs[i]) != seq:
            raise ValueError(f"no event {event_id!r} in this trace")
        return int(rows[i])
