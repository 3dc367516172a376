"""Checking propagation contracts (declared in ``willowisp.toml``, see ``contract_spec``).

For each contract, every recorded receive that matches its entry is an **instance**, in the
trace its resource carries. The instance is followed hop by hop through that one trace: the
first element of the path must be a hop sent from the entry's process, each later one a hop
sent from a process the previous step reached, and each must be *linked* (both sides in the
trace, joined by the context that crossed the wire). Following the trace id is the point:
a hop whose header was dropped leaves the trace, so what comes after it is not in this
trace at all.

An instance fails at its first step that is not met, in one of two ways, each a ``contract``
problem whose identity is the contract, the step and who failed it (so one broken hop is
one problem however many instances hit it):

- **lost**: hops of the step's kind left the process, none of them linked; the problem
  names the hop (both ends as far as recorded) and why it is unlinked;
- **absent**: no hop of the step's kind left the process in this trace.

A contract with no instance at all in the checked traces is a problem too (``unused``): its
entry never happened, so nothing was checked, and a typo in the entry must not pass as a
contract that holds.

Only the processes reached so far are searched, never "somewhere later in time": timestamps
are not evidence. A hop of the right kind from a process the trace reached is enough: the
contract says the trace stays whole across those hops, not which exact call makes them.
"""

from __future__ import annotations

from willowisp.analysis.finding import finding_id
from willowisp.causality.hops import HopKind, Hops
from willowisp.causality.provenance import Unlinked, attr_str
from willowisp.ingest.trace import Trace
from willowisp.validate.checks import hop_of
from willowisp.validate.contract_spec import Contract
from willowisp.validate.problems import Hop, Problem
from willowisp.validate.trace_index import TraceIndex

_CLASS = {"queue": HopKind.MESSAGE, "rpc": HopKind.RPC, "process": HopKind.SPAWN}


def check_contracts(
    trace: Trace,
    hops: Hops,
    index: TraceIndex,
    contracts: tuple[Contract, ...],
    named: dict[int, Hop] | None = None,
    within: set[str] | None = None,
) -> list[Problem]:
    """``contract`` problems, one per (contract, step, failing hop), and one per contract
    with no instance. ``named``: hops whose receiver the hop checks paired although the
    context was lost (``check_hops``). ``within``: the trace ids being checked (None: all);
    instances in other traces are not walked and do not count as instances."""
    if not contracts:
        return []
    res = trace.resources
    kinds, reasons = hops.kind.tolist(), hops.reason.tolist()
    clients, servers = hops.client.tolist(), hops.server.tolist()
    recv = hops.recv.tolist()
    # Rows by (trace number, sending process).
    sent: dict[tuple[int, int], list[int]] = {}
    for row, c in enumerate(clients):
        if c >= 0 and index.of_resource[c] >= 0:
            sent.setdefault((int(index.of_resource[c]), res[c].proc), []).append(row)
    found: dict[str, tuple[str, Hop | None, set[str], tuple[str, ...]]] = {}
    unused: list[Problem] = []
    for contract in contracts:
        instances = 0
        for row, s in enumerate(servers):
            if s < 0 or recv[row] < 0 or index.of_resource[s] < 0:
                continue
            r = res[s]
            what = r.target if r.protocol in ("http", "grpc") else attr_str(r, "destination")
            if not contract.entry.matches(r.protocol, r.method, what):
                continue
            t = int(index.of_resource[s])
            if within is not None and index.ids[t] not in within:
                continue
            instances += 1
            failure = _walk(
                trace, contract, t, r.proc, sent, (kinds, reasons, clients, servers), named or {}
            )
            if failure is None:
                continue
            pid, summary, hop, detail = failure
            entry = found.setdefault(pid, (summary, hop, set(), detail))
            entry[2].add(index.ids[t])
        if not instances:
            unused.append(_unused(contract))
    return unused + [
        Problem(pid, "contract", summary, tuple(sorted(traces)), hop, detail)
        for pid, (summary, hop, traces, detail) in sorted(found.items())
    ]


def _unused(contract: Contract) -> Problem:
    """The problem of a contract whose entry no checked trace has: it names no trace (there
    is none) and its id is the contract's, so a baseline can accept it."""
    pid = finding_id("contract", (f"contract|{contract.name}", "unused"))
    summary = (
        f"contract {contract.name!r} ({contract.describe()}): its entry "
        f"{contract.entry.entry} never happened in these traces, so nothing was checked"
    )
    detail = (
        f"no recorded receive matches {contract.entry.entry} in the checked traces",
        "check the entry for a typo, or record a run that exercises it",
    )
    return Problem(pid, "contract", summary, (), None, detail)


def _matches(step: str, kind: int, protocol: str) -> bool:
    if step == "any":
        return True
    if step in _CLASS:
        return kind == _CLASS[step]
    return protocol.lower() == step


def _walk(
    trace: Trace,
    contract: Contract,
    t: int,
    entry_proc: int,
    sent: dict[tuple[int, int], list[int]],
    columns: tuple[list[int], list[int], list[int], list[int]],
    named: dict[int, Hop],
) -> tuple[str, str, Hop | None, tuple[str, ...]] | None:
    """None if the instance keeps the contract, else (id, summary, hop, detail) of the
    first step it fails. ``columns``: the hop table's kind, reason, client, server."""
    res, procs = trace.resources, trace.processes
    kinds, reasons, clients, servers = columns
    frontier = {entry_proc}
    ident: tuple[str, ...]
    for k, step in enumerate(contract.path, 1):
        rows = [
            row
            for p in sorted(frontier)
            for row in sent.get((t, p), [])
            if _matches(step, kinds[row], res[clients[row]].protocol)
        ]
        linked = [row for row in rows if reasons[row] == Unlinked.LINKED and servers[row] >= 0]
        if linked:
            frontier = {res[servers[row]].proc for row in linked}
            continue
        at = " → ".join(["entry", *contract.path[: k - 1]])
        services = sorted({procs[p].service or "?" for p in frontier})
        if rows:
            row = rows[0]
            hop = named.get(clients[row]) or hop_of(trace, clients[row], servers[row])
            why = (
                "context dropped on the way"
                if clients[row] in named
                else Unlinked(reasons[row]).label
            )
            ident = (
                f"contract|{contract.name}",
                f"step|{k}",
                "lost",
                f"client|{hop.from_service}",
                f"hop|{hop.protocol} {hop.what}",
            )
            summary = (
                f"contract {contract.name!r} ({contract.describe()}): step {k} ({step}) "
                f"lost the trace at {hop.label()} ({why})"
            )
            detail = (
                f"the instance entered at {contract.entry.entry} and reached {at}",
                f"{hop.from_service} sent {hop.what} over {hop.protocol}; its other side is "
                f"not in this trace ({why})",
            )
            return finding_id("contract", ident), summary, hop, detail
        ident = (
            f"contract|{contract.name}",
            f"step|{k}",
            "absent",
            *(f"from|{s}" for s in services),
        )
        summary = (
            f"contract {contract.name!r} ({contract.describe()}): step {k} ({step}) never "
            f"happened in the trace after {', '.join(services)}"
        )
        detail = (
            f"the instance entered at {contract.entry.entry} and reached {at}",
            f"no {step} hop left {', '.join(services)} in this trace",
        )
        return finding_id("contract", ident), summary, None, detail
    return None
