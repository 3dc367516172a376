"""``willowisp.toml``: a project's defaults for ``run`` and ``analyze``.

Read from the working directory, or from ``--config FILE``. Options on the command line win
over the file; boundaries from both apply (the command line's first). Every key is
checked: an unknown key or a wrong type is one clear error naming the file, never ignored,
because a misspelt ``boundries`` silently doing nothing is worse than a refusal.

::

    boundaries = ["entry=http:POST /checkout;runtimes=python,go"]

    [[boundary]]                  # the same, as a table
    entry = "grpc:/shop.Stock/Reserve"
    exit = "grpc:reply"
    runtimes = ["python", "go"]

    [run]
    mode = "hops"                 # full | hops
    trace_ratio = 0.1
    out = "traces"                # run folders go under it
    service = "orders"

    [analyze]
    suppress = true               # false: like --no-suppress
    reference = "orders"
    fail_on = ["deadlock", "race"]

    [redact]                      # like run --redact (see model/redaction.py)
    headers = ["x-request-id"]    # added to the request-header allowlist
    drop_headers = ["user-agent"]
    bodies = false                # entry request bodies, first 64 KiB
    query_values = false
    sql_values = false            # database row keys as values, not hashes

    [[contract]]                  # for validate: see validate/contract_spec.py
    name = "checkout"
    entry = "http:POST /checkout"
    path = ["http", "queue", "grpc"]
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

from willowisp.errors import UsageError
from willowisp.model.boundary import Boundary, parse_boundary
from willowisp.model.redaction import parse_redaction
from willowisp.validate.contract_spec import Contract, parse_contract

FILE_NAME = "willowisp.toml"
MAX_BYTES = 1024 * 1024

_TOP = {"boundaries", "boundary", "run", "analyze", "redact", "contract"}
_RUN = {"mode": str, "trace_ratio": (int, float), "out": str, "service": str}
_ANALYZE = {"suppress": bool, "reference": str, "fail_on": list}
_BOUNDARY = {"entry": str, "exit": str, "runtimes": list}
_REDACT = {
    "headers": list,
    "drop_headers": list,
    "bodies": bool,
    "query_values": bool,
    "sql_values": bool,
}


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    path: str = ""  # "" when there is no file
    boundaries: tuple[Boundary, ...] = ()
    run: tuple[tuple[str, Any], ...] = ()
    analyze: tuple[tuple[str, Any], ...] = ()
    redact: tuple[str, ...] = ()  # items for model.redaction.parse_redaction
    contracts: tuple[Contract, ...] = ()  # [[contract]] tables, checked by validate

    def run_option(self, key: str, default: Any = None) -> Any:
        return dict(self.run).get(key, default)

    def analyze_option(self, key: str, default: Any = None) -> Any:
        return dict(self.analyze).get(key, default)


def load_project_config(explicit: str | None = None, cwd: str | None = None) -> ProjectConfig:
    """The file given with ``--config`` (it must exist), else ``./willowisp.toml`` if there is
    one, else an empty configuration. UsageError names the file and what is wrong."""
    if explicit:
        path = explicit
        if not os.path.isfile(path):
            raise UsageError(f"{path}: no such configuration file")
    else:
        path = os.path.join(cwd or os.getcwd(), FILE_NAME)
        if not os.path.isfile(path):
            return ProjectConfig()
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_BYTES:
        raise UsageError(f"{path}: larger than {MAX_BYTES // 1024} KiB, not a configuration file")
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    return _parse(path, doc)


def _parse(path: str, doc: dict[str, Any]) -> ProjectConfig:
    unknown = sorted(set(doc) - _TOP)
    if unknown:
        raise UsageError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(_TOP))})")
    bounds: list[Boundary] = []
    specs = doc.get("boundaries", [])
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise UsageError(f"{path}: boundaries must be a list of SPEC strings")
    for spec in specs:
        bounds.append(parse_boundary(spec, source=f"{path}: boundary"))
    tables = doc.get("boundary", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: [[boundary]] must be an array of tables")
    for i, t in enumerate(tables, 1):
        where = f"{path}: [[boundary]] #{i}"
        if not isinstance(t, dict):
            raise UsageError(f"{where}: not a table")
        _check(where, t, _BOUNDARY)
        runtimes = t.get("runtimes", [])
        if not all(isinstance(r, str) for r in runtimes):
            raise UsageError(f"{where}: runtimes must be a list of strings")
        parts = [f"entry={t.get('entry', '')}"]
        if t.get("exit"):
            parts.append(f"exit={t['exit']}")
        if runtimes:
            parts.append("runtimes=" + ",".join(runtimes))
        bounds.append(parse_boundary(";".join(parts), source=where))
    run = _section(path, doc, "run", _RUN)
    analyze = _section(path, doc, "analyze", _ANALYZE)
    if "mode" in run and run["mode"] not in ("full", "hops"):
        raise UsageError(f'{path}: [run] mode must be "full" or "hops", not {run["mode"]!r}')
    if "trace_ratio" in run and not 0.0 <= float(run["trace_ratio"]) <= 1.0:
        raise UsageError(f"{path}: [run] trace_ratio {run['trace_ratio']} is not between 0 and 1")
    red = _section(path, doc, "redact", _REDACT)
    items: list[str] = []
    for key, prefix in (("headers", "header:"), ("drop_headers", "-header:")):
        names = red.get(key, [])
        if not all(isinstance(n, str) for n in names):
            raise UsageError(f"{path}: [redact] {key} must be a list of header names")
        items += [prefix + n for n in names]
    if red.get("bodies"):
        items.append("bodies")
    if red.get("query_values"):
        items.append("query-values")
    if red.get("sql_values"):
        items.append("sql-values")
    parse_redaction(items, source=f"{path}: [redact]")  # validated here, applied by run
    fail_on = analyze.get("fail_on", [])
    if not all(isinstance(k, str) for k in fail_on):
        raise UsageError(f"{path}: [analyze] fail_on must be a list of finding kinds")
    return ProjectConfig(
        path,
        tuple(bounds),
        tuple(run.items()),
        tuple(analyze.items()),
        tuple(items),
        _contracts(path, doc),
    )


def _contracts(path: str, doc: dict[str, Any]) -> tuple[Contract, ...]:
    tables = doc.get("contract", [])
    if not isinstance(tables, list):
        raise UsageError(f"{path}: [[contract]] must be an array of tables")
    out = [parse_contract(f"{path}: [[contract]] #{i}", t) for i, t in enumerate(tables, 1)]
    names = [c.name for c in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise UsageError(f"{path}: two [[contract]] tables are named {dup!r}")
    return tuple(out)


def _section(path: str, doc: dict[str, Any], name: str, schema: dict[str, Any]) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise UsageError(f"{path}: [{name}] must be a table")
    _check(f"{path}: [{name}]", table, schema)
    return table


def _check(where: str, table: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, value in table.items():
        want = schema.get(key)
        if want is None:
            raise UsageError(f"{where}: unknown key {key!r} (known: {', '.join(schema)})")
        if not isinstance(value, want) or (want is not bool and isinstance(value, bool)):
            raise UsageError(f"{where}: {key} has the wrong type ({type(value).__name__})")
