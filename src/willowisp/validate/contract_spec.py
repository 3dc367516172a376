"""Propagation contracts: "requests entering here stay one trace across these hops".

Declared in ``willowisp.toml`` and checked per trace by ``willowisp validate``::

    [[contract]]
    name = "checkout"                  # optional; defaults to the entry
    entry = "http:POST /checkout"      # as a boundary's entry (model/boundary.py)
    path = ["http", "queue", "grpc"]   # the hops after the entry, in order

``entry`` is matched like a boundary's (``PROTOCOL:WHAT``, globs allowed). Each element of
``path`` names the next hop leaving the service the previous hop reached (the first leaves
the entry's service): a protocol as the agents record it (``http``, ``grpc``, ``kafka``,
``amqp``, ``redis``, ``sqs``, ...) or a class of hop: ``queue`` (any message), ``rpc`` (any
request/reply), ``process`` (a child process started with the context), ``any``.

Standard library only: ``project_config`` parses contracts when it reads the file, and that
must not load the analysis stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from willowisp.errors import UsageError
from willowisp.model.boundary import Boundary, parse_boundary

HOP_CLASSES = ("queue", "rpc", "process", "any")
# The protocols an entry can name: what the agents record (http, grpc, the brokers they
# hook) and OpenTelemetry's ``messaging.system`` and ``rpc.system`` values, which the span
# importers take as the protocol. A closed list, so that a typo ("htp:POST /x") is refused
# when the file is read instead of making a contract that matches nothing.
ENTRY_PROTOCOLS = frozenset(
    {
        "http", "grpc", "amqp", "kafka", "redis", "sqs", "nats", "mqtt",
        "activemq", "aws_sqs", "eventgrid", "eventhubs", "gcp_pubsub", "jms",
        "pulsar", "rabbitmq", "rocketmq", "servicebus",
        "apache_dubbo", "connect_rpc", "dotnet_wcf", "java_rmi", "jsonrpc", "onc_rpc",
    }
)  # fmt: skip
KEYS = {"name": str, "entry": str, "path": list}


@dataclass(frozen=True, slots=True)
class Contract:
    name: str
    entry: Boundary  # only its entry is used: ``entry.matches(protocol, method, target)``
    path: tuple[str, ...]  # lowercase protocol names or HOP_CLASSES

    def describe(self) -> str:
        return f"{self.entry.entry} → " + " → ".join(self.path)


def parse_contract(where: str, table: Any) -> Contract:
    """One ``[[contract]]`` table; UsageError names ``where`` (file and table number) and
    what is wrong: a missing or unknown key, a wrong type, an empty or malformed path."""
    if not isinstance(table, dict):
        raise UsageError(f"{where}: not a table")
    for key, value in table.items():
        want = KEYS.get(key)
        if want is None:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(KEYS)})")
        if not isinstance(value, want):
            raise UsageError(f"{where}: {key} has the wrong type ({type(value).__name__})")
    for key in ("entry", "path"):
        if key not in table:
            raise UsageError(
                f'{where}: needs {key} (e.g. entry = "http:POST /checkout", '
                'path = ["http", "queue"])'
            )
    steps = table["path"]
    if not steps or not all(isinstance(s, str) and s.strip() for s in steps):
        raise UsageError(
            f"{where}: path must be a non-empty list of protocol names or {', '.join(HOP_CLASSES)}"
        )
    bad = [s for s in steps if not s.strip().replace("-", "").replace("_", "").isalnum()]
    if bad:
        raise UsageError(f"{where}: path element {bad[0]!r} is not a protocol name")
    entry = parse_boundary(f"entry={table['entry']}", source=f"{where}: entry")
    if entry.protocol not in ENTRY_PROTOCOLS:
        raise UsageError(
            f"{where}: entry {table['entry']!r}: unknown protocol {entry.protocol!r} "
            f"(known: {', '.join(sorted(ENTRY_PROTOCOLS))})"
        )
    name = table.get("name", "").strip() or entry.entry
    return Contract(name, entry, tuple(s.strip().lower() for s in steps))
