"""What traces keep of the values programs handle (the contract's privacy defaults).

By default a trace keeps shapes, not values: URLs without query values, request headers
only from an allowlist, no bodies. ``willowisp run --redact ITEM`` (repeatable),
``WILLOWISP_REDACT`` (items separated by ``,``) and the ``[redact]`` table of
``willowisp.toml`` adjust that:

- ``header:NAME`` adds a request header to the allowlist; ``-header:NAME`` removes one
  (removing ``traceparent`` and the other context headers is allowed: replays then start
  new traces);
- ``bodies`` records entry request bodies (the first ``BODY_MAX`` bytes; the resource says
  when one was cut);
- ``query-values`` keeps the values in URL queries;
- ``sql-values`` keeps the values of database row keys (``WHERE id = ?``) instead of a
  keyed hash of them (agent/data_access.py); statements stay shapes either way.

Credentials never reach the allowlist by accident: ``authorization``, ``cookie``,
``proxy-authorization`` and ``set-cookie`` can only be added by naming them.
"""

from __future__ import annotations

from dataclasses import dataclass

from willowisp.errors import UsageError

BODY_MAX = 64 * 1024

# Request headers an entry request keeps by default: enough to re-issue it, never
# credentials or cookies. ``baggage`` is left out: it carries the program's own values.
DEFAULT_HEADERS = frozenset(
    (
        "content-type",
        "accept",
        "user-agent",
        "content-length",
        "traceparent",
        "tracestate",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "x-b3-sampled",
        "x-b3-flags",
        "x-amzn-trace-id",
        "uber-trace-id",
    )
)
_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True, slots=True)
class Redaction:
    headers: frozenset[str] = DEFAULT_HEADERS
    bodies: bool = False
    query_values: bool = False
    sql_values: bool = False

    def items(self) -> list[str]:
        """The items that rebuild this redaction from the defaults (for the environment)."""
        out = [f"header:{h}" for h in sorted(self.headers - DEFAULT_HEADERS)]
        out += [f"-header:{h}" for h in sorted(DEFAULT_HEADERS - self.headers)]
        if self.bodies:
            out.append("bodies")
        if self.query_values:
            out.append("query-values")
        if self.sql_values:
            out.append("sql-values")
        return out


DEFAULT = Redaction()


def parse_redaction(items: list[str], *, source: str = "--redact") -> Redaction:
    """Apply ``items`` to the defaults, in order. UsageError names the bad item."""
    headers = set(DEFAULT_HEADERS)
    bodies = query_values = sql_values = False
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        kind, _, name = item.partition(":")
        name = name.strip().lower()
        if kind in ("header", "-header"):
            if not name or not set(name) <= _TOKEN_CHARS:
                raise UsageError(f"{source} {item!r}: not a header name")
            (headers.add if kind == "header" else headers.discard)(name)
        elif item == "bodies":
            bodies = True
        elif item == "query-values":
            query_values = True
        elif item == "sql-values":
            sql_values = True
        else:
            raise UsageError(
                f"{source} {item!r}: expected header:NAME, -header:NAME, bodies, query-values "
                "or sql-values"
            )
    return Redaction(frozenset(headers), bodies, query_values, sql_values)


def from_env_value(value: str) -> Redaction:
    return parse_redaction(value.split(","), source="WILLOWISP_REDACT")
