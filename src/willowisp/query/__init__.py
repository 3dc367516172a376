"""``willowisp query``: SQL (DuckDB) over a trace's events, units, resources, edges, ...

:mod:`schema` is the documented tables and helpers, :mod:`columns` takes their columns
from a linked trace, :mod:`database` is the locked-down DuckDB database over them,
:mod:`order` answers ``happens_before``, :mod:`render` prints a result and :mod:`session`
runs one query end to end. See docs/query.md.
"""

from typing import Any

__all__ = ["Answer", "query"]


def __getattr__(name: str) -> Any:
    # Lazy: DuckDB and numpy load only when a query runs.
    if name in ("Answer", "query"):
        from willowisp.query import session

        return getattr(session, name)
    raise AttributeError(name)
