"""The tables ``willowisp query`` exposes: names, columns, types and meanings, as data.

This is the documented surface (docs/query.md renders the same list, and a test checks
that every table has exactly these columns, in this order). Ids are the contract's:
events ``<process id>:<seq>``, units ``<process id>:<n>``; resources, which the contract
names only by kind and name, get ``<process id>:<n>`` the same way. Times are integer
nanoseconds: ``raw_ns`` on each process's wall clock, ``adjusted_ns`` on the reference
clock domain's line (docs/analysis.md), ``time_ns`` the process's own monotonic clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # DuckDB type as DESCRIBE prints it
    doc: str


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _t(name: str, doc: str, *cols: tuple[str, str, str]) -> Table:
    return Table(name, doc, tuple(Column(*c) for c in cols))


_LOCATION = (
    ("file", "VARCHAR", "source file of the place (as the agent recorded it)"),
    ("line", "INTEGER", "line number"),
    ("func", "VARCHAR", "function name"),
)

TABLES: tuple[Table, ...] = (
    _t(
        "events",
        "One row per event of every process.",
        ("id", "VARCHAR", "event id, `<process id>:<seq>` (as in findings)"),
        (
            "idx",
            "BIGINT",
            "row number in this trace (process, time, seq order); what the "
            "`*_idx` columns of other tables refer to; not stable across runs",
        ),
        ("process", "VARCHAR", "process id"),
        ("service", "VARCHAR", "the process's service name"),
        ("unit", "VARCHAR", "unit id, NULL for agent metadata done by no unit"),
        ("kind", "VARCHAR", "event kind, e.g. `lock.acquired` (docs/format.md)"),
        ("seq", "BIGINT", "sequence number within the process"),
        ("time_ns", "BIGINT", "the process's monotonic clock"),
        ("raw_ns", "BIGINT", "wall-clock time through the process's clock anchors"),
        ("adjusted_ns", "BIGINT", "raw time placed on the reference clock's line"),
        ("root_rel_ns", "BIGINT", "adjusted time since the root of the event's operation"),
        ("operation", "VARCHAR", "W3C trace id of its logical operation, NULL if none"),
        ("resource", "VARCHAR", "resource id, NULL if none"),
        ("resource_kind", "VARCHAR", "the resource's kind (`lock`, `queue`, `rpc`, ...)"),
        ("resource_name", "VARCHAR", "the resource's name"),
        ("arg", "BIGINT", "the kind's argument (docs/format.md: a reason, an outcome, ...)"),
        *_LOCATION,
    ),
    _t(
        "units",
        "One row per execution unit (thread, task, goroutine, ...).",
        ("id", "VARCHAR", "unit id, `<process id>:<n>`"),
        ("process", "VARCHAR", "process id"),
        ("service", "VARCHAR", "the process's service name"),
        ("number", "BIGINT", "the agent's unit number"),
        ("kind", "VARCHAR", "`thread`, `task`, `goroutine`, ... (`unknown` if never defined)"),
        ("name", "VARCHAR", "thread or task name"),
        ("parent", "VARCHAR", "id of the unit that created it, NULL if unknown"),
        ("coro", "VARCHAR", "coroutine name (asyncio tasks)"),
        ("events", "BIGINT", "how many events it did"),
        *_LOCATION,
    ),
    _t(
        "resources",
        "One row per resource: locks, queues, conditions, requests, messages, ...",
        ("id", "VARCHAR", "resource id, `<process id>:<n>`"),
        ("process", "VARCHAR", "process id"),
        ("service", "VARCHAR", "the process's service name"),
        ("number", "BIGINT", "the agent's resource number"),
        ("kind", "VARCHAR", "`lock`, `rlock`, `queue`, `condition`, `rpc`, `message`, ..."),
        ("name", "VARCHAR", "its name (a lock: the variable; a request: `METHOD /path`)"),
        ("unit", "VARCHAR", "join resources: the unit whose end is awaited"),
        ("trace_id", "VARCHAR", "hops: W3C trace id ('' if none)"),
        ("span_id", "VARCHAR", "hops: span id this side injected or received"),
        ("parent_span_id", "VARCHAR", "hops: the span id received from the other side"),
        ("protocol", "VARCHAR", "hops: `http`, `grpc`, `amqp`, `kafka`, ..."),
        ("library", "VARCHAR", "hops: the library hooked (`urllib`, `http.server`, ...)"),
        ("method", "VARCHAR", "hops: request method"),
        ("target", "VARCHAR", "hops: request path or destination"),
        ("peer", "VARCHAR", "hops: the other side's address"),
        ("attrs", "JSON", "the whole definition record (bytes values as hex)"),
        *_LOCATION,
    ),
    _t(
        "processes",
        "One row per process (a running program).",
        ("id", "VARCHAR", "process id (128-bit, hex)"),
        ("pid", "BIGINT", "operating-system pid"),
        ("host", "VARCHAR", "host name (a label)"),
        ("service", "VARCHAR", "service name"),
        ("runtime", "VARCHAR", "`python`, `go`, `java`, `nodejs`, `rust`, ..."),
        ("boot_id", "VARCHAR", "the machine's boot id (clock-domain key)"),
        ("run_root", "BOOLEAN", "the process `willowisp run` started"),
        ("parent_process_id", "VARCHAR", "process id of its parent, NULL if none"),
        ("clock_domain", "VARCHAR", "`D1`, `D2`, ... (see `clocks`)"),
        ("events", "BIGINT", "events loaded"),
        ("dropped", "BIGINT", "events its agent dropped (last stats record)"),
        ("files", "VARCHAR[]", "its segment files, in order"),
        ("attrs", "JSON", "the whole process record"),
        (
            "agent",
            "JSON",
            "its agent's last stats: events, dropped, faults, cost_ns_per_event, by_boundary, "
            "extra (the agent's own counters, e.g. Java's jfr_pinned)",
        ),
    ),
    _t(
        "edges",
        "Cross-unit happens-before edges (program order within a unit is implicit).",
        ("src", "VARCHAR", "the earlier event's id"),
        ("dst", "VARCHAR", "the later event's id"),
        ("src_idx", "BIGINT", "`events.idx` of src"),
        ("dst_idx", "BIGINT", "`events.idx` of dst"),
        (
            "kind",
            "VARCHAR",
            "`spawn`, `join`, `lock`, `queue`, `notify`, `request`, `reply`, `process`, `message`",
        ),
        ("provenance", "VARCHAR", "`runtime`, `wire-header`, `message-id`, ..."),
        ("confidence", "DOUBLE", "1.0 for a fact, below for an id reused in the trace"),
    ),
    _t(
        "clocks",
        "One row per clock domain, as in `analyze --format json`.",
        ("id", "VARCHAR", "`D1`, `D2`, ..."),
        ("processes", "VARCHAR[]", "process ids in the domain"),
        ("reference", "BOOLEAN", "the domain every other is aligned to"),
        ("simulated", "BOOLEAN", "a process in it had a simulated clock offset"),
        ("offset_ns", "BIGINT", "added to raw time to reach the reference line"),
        ("offset_min_ns", "BIGINT", "lowest offset the causal constraints allow (NULL: none)"),
        ("offset_max_ns", "BIGINT", "highest offset allowed (NULL: unbounded)"),
        ("uncertainty_ns", "BIGINT", "half-width of the interval (NULL: unbounded)"),
        ("drift_ns_per_s", "BIGINT", "drift rate"),
        ("drift_method", "VARCHAR", "how the rate was measured"),
        ("drift_applied", "BOOLEAN", "adjusted time follows a line, not a constant"),
        ("constraints", "BIGINT", "cross-domain causal edges touching it"),
        ("inconsistency_ns", "BIGINT", "slack the contradictory constraints needed"),
    ),
    _t(
        "hops",
        "One row per request, message delivery or child-process spawn (linked or not).",
        ("kind", "VARCHAR", "`rpc`, `message` or `spawn`"),
        ("linked", "BOOLEAN", "both sides are in the trace and matched"),
        (
            "reason",
            "VARCHAR",
            "`linked`, or why not: `no-server-side`, `failed-to-connect`, `no-consumer`, ...",
        ),
        ("provenance", "VARCHAR", "how the sides were matched (`wire-header`, ...)"),
        ("confidence", "DOUBLE", "1.0, or 1/n for a message id n producers used"),
        ("protocol", "VARCHAR", "`http`, `grpc`, `process`, ..."),
        ("name", "VARCHAR", "the request's name (client side's, else the server's)"),
        ("trace_id", "VARCHAR", "W3C trace id"),
        ("client_resource", "VARCHAR", "client (producer, parent) side's resource id"),
        ("server_resource", "VARCHAR", "server (consumer, child) side's resource id"),
        ("client_service", "VARCHAR", "service of the client side"),
        ("server_service", "VARCHAR", "service of the server side"),
        ("send", "VARCHAR", "client `msg.send` (spawn: `proc.spawn`) event id"),
        ("recv", "VARCHAR", "server `msg.recv` (spawn: the child's `proc.start`) event id"),
        ("reply", "VARCHAR", "server `rpc.reply` event id"),
        ("response", "VARCHAR", "client `rpc.response` event id"),
        ("latency_ns", "BIGINT", "response - send on the client's own clock"),
    ),
    _t(
        "findings",
        "The analysis' findings, as `analyze --format json` reports them (computed only "
        "when a query names this table; cached beside the run).",
        ("id", "VARCHAR", "stable finding id, `F-xxxxxx`"),
        ("kind", "VARCHAR", "`deadlock`, `race`, `clock-skew`, ..."),
        ("severity", "VARCHAR", "`error`, `warning` or `info`"),
        ("summary", "VARCHAR", "the one line a person reads first"),
        ("units", "VARCHAR[]", "unit ids involved"),
        ("resources", "JSON", "`[{kind, name, where}]`"),
        ("events", "VARCHAR[]", "event ids involved (join with `events.id`)"),
        ("explanation", "VARCHAR[]", "the story, one line per step"),
        ("occurrences", "BIGINT", "how many times the same problem was found"),
        ("detail", "JSON", "the whole finding object"),
    ),
    _t(
        "waits",
        "One row per wait: a `unit.block` and the event that ended it.",
        ("block_event", "VARCHAR", "the `unit.block` event id"),
        ("end_event", "VARCHAR", "the event that ended the wait, NULL if it never did"),
        ("block_idx", "BIGINT", "`events.idx` of block_event"),
        ("end_idx", "BIGINT", "`events.idx` of end_event, NULL if none"),
        ("unit", "VARCHAR", "the waiting unit's id"),
        ("resource", "VARCHAR", "what it waited on (resource id)"),
        ("resource_kind", "VARCHAR", "its kind"),
        ("resource_name", "VARCHAR", "its name"),
        ("reason", "VARCHAR", "`acquire`, `get`, `put`, `wait`, `join`, `rpc`, `sleep`, ..."),
        ("outcome", "VARCHAR", "`acquired`, `woken`, `timed out`, ..., `still waiting`"),
        ("start_ns", "BIGINT", "adjusted time of the block"),
        ("end_ns", "BIGINT", "adjusted time of the end, NULL if none"),
        ("duration_ns", "BIGINT", "end - block on the process's own clock, NULL if none"),
        *_LOCATION,
    ),
    _t(
        "lock_holds",
        "One row per hold of an owned lock (lock, rlock, rwlock, monitor): acquire to release.",
        ("lock", "VARCHAR", "the lock's resource id"),
        ("lock_kind", "VARCHAR", "its kind"),
        ("lock_name", "VARCHAR", "its name"),
        ("unit", "VARCHAR", "the holder's unit id"),
        ("acquire", "VARCHAR", "the `lock.acquired` event id"),
        ("release", "VARCHAR", "the releasing event id, NULL if still held at the end"),
        ("acquire_idx", "BIGINT", "`events.idx` of acquire"),
        ("release_idx", "BIGINT", "`events.idx` of release, NULL if none"),
        ("shared", "BOOLEAN", "the read side of an rwlock"),
        ("start_ns", "BIGINT", "adjusted time of the acquire"),
        ("end_ns", "BIGINT", "adjusted time of the release, NULL if none"),
        ("duration_ns", "BIGINT", "release - acquire on the process's own clock"),
        *_LOCATION,
    ),
)

TABLE_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


@dataclass(frozen=True, slots=True)
class Helper:
    signature: str
    doc: str


HELPERS: tuple[Helper, ...] = (
    Helper(
        "happens_before(a VARCHAR, b VARCHAR) -> BOOLEAN",
        "event `a` happens before event `b` (event ids): a path of program order and "
        "`edges` leads from a to b. False for a = b. An id that names no event is an error.",
    ),
    Helper(
        "concurrent(a VARCHAR, b VARCHAR) -> BOOLEAN",
        "neither happens before the other (and a <> b): the pair a race detector asks about",
    ),
    Helper(
        "fmt_ns(ns BIGINT) -> VARCHAR",
        "a duration for people: `812 ns`, `12.3 µs`, `4.56 ms`, `1.234 s`",
    ),
)
