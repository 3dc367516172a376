"""One ``willowisp query``: parse, load and link, build the tables the SQL names, run it.

The order keeps the first answer fast: the SQL's syntax is checked before the trace is
read (a typo costs nothing), tables are built only when named, and the analysis — the
one slow part — runs only for ``findings`` and only when the results cache
(:mod:`willowisp.analysis.cache`) has no document for these inputs and options. A
computed analysis is stored there for the next ``query`` or ``analyze``; a query over
``findings`` alone that the cache can answer does not even load the trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from willowisp.analysis import cache
from willowisp.analysis.engine import Options, analyze
from willowisp.causality.link import Causality, link
from willowisp.ingest.load import load
from willowisp.ingest.tables import Unreadable
from willowisp.query.database import QueryDatabase, Result


@dataclass
class Answer:
    """A query's result, and the inputs that could not be (fully) read."""

    result: Result | None
    unreadable: list[Unreadable] = field(default_factory=list)
    analyzed: bool = False  # the analysis was computed (not read from the cache)


def query(
    paths: Iterable[str | os.PathLike[str]],
    sql: str,
    options: Options | None = None,
    *,
    use_cache: bool = True,
) -> Answer:
    """Run ``sql`` over the trace in ``paths``.

    Raises UsageError for a syntax or other SQL error (DuckDB's message) and for a bad
    ``options.reference``; unreadable inputs are reported in the answer, never raised.
    """
    paths = list(paths)
    options = options or Options()
    doc: dict[str, Any] | None = None

    def findings() -> list[dict[str, Any]]:
        return list(doc["findings"]) if doc is not None else []

    with QueryDatabase(findings) as db:
        named = db.tables_named(sql)  # a syntax error stops here, before any loading
        wanted = "findings" in named
        # Only findings, and no helper that walks the trace: a cached document is all
        # the answer needs, without even loading the trace.
        findings_only = named == {"findings"} and not _TRACE_HELPERS.search(sql)
        where = cache.slot(paths, options, "analysis") if use_cache and wanted else None
        if findings_only and where is not None:
            doc = cache.load(where)
            if doc is not None:
                db.attach(None, named)
                return Answer(db.run(sql), _unreadable(doc), analyzed=False)
        trace = load(paths)
        # The entry must describe what was loaded: the inputs must not have changed since.
        if where is not None and cache.slot(paths, options, "analysis").key == where.key:
            doc = cache.load(where)
        analyzed = False
        causality: Causality
        if wanted and doc is None:
            result = analyze(trace, options)
            causality = result.causality
            doc = result.document()
            analyzed = True
            if where is not None:
                cache.store(where, doc)
        else:
            causality = link(trace, options.reference)
        db.attach(causality, named)
        answer = db.run(sql)
    return Answer(answer, list(trace.unreadable), analyzed)


_TRACE_HELPERS = re.compile(r"happens_before|concurrent", re.IGNORECASE)


def _unreadable(doc: dict[str, Any]) -> list[Unreadable]:
    """The document's unreadable files, as loading reported them."""
    return [
        Unreadable(u["path"], u["error"], bool(u.get("partial", False)))
        for u in doc["trace"]["unreadable_files"]
    ]
