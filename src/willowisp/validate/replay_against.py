"""``validate --replay-against URL``: re-issue recorded entry requests against staging.

Three steps, each its own function so a pipeline (or a test) can drive them separately:

1. :func:`recorded_entries` — from a recorded run, the entry request of each of the last N
   traces: the earliest server-side receive of the trace (the request the system got), as
   the agent recorded it under the contract's privacy rules: method, path (query values
   elided unless ``--redact query-values``), the allowlisted headers, and the body only
   when ``--redact bodies`` recorded it. Trace-context headers are not replayed (the replay
   sends its own). Only HTTP entries can be re-issued; others are counted and skipped.
2. :func:`replay` — send them to the staging base URL, keeping their recorded spacing
   divided by ``rate`` (``--rate 2`` = twice as fast), each with a fresh ``traceparent``
   (sampled) whose trace id the replay chose: that is how the traces the staging side
   produces for these requests are found again, with no reliance on timestamps.
3. :func:`wait_for_traces` — the staging side records into a run folder (its processes
   run under ``willowisp run --out DIR``, or stream to ``willowisp collect --out DIR``);
   poll that folder until every replayed request's receive *and* reply are there, then
   wait the settle time (default 0.3 s: three times the agents' 100 ms durability bound,
   for the work the entry's handler caused in other processes) and load it.

The gate then checks exactly those traces, with the replay's own span ids known as
expected callers (the staging entry is not a broken link).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from willowisp.causality.hops import match
from willowisp.causality.provenance import attr_str
from willowisp.errors import UsageError
from willowisp.ingest.load import load
from willowisp.ingest.trace import Trace
from willowisp.model.spec import K
from willowisp.validate.trace_index import index_traces

# Headers the replay never copies: it sends its own context; hop-by-hop and length are
# the HTTP client's business.
_NOT_REPLAYED = frozenset(
    {
        "traceparent",
        "tracestate",
        "b3",
        "uber-trace-id",
        "x-amzn-trace-id",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
    }
)
POLL_S = 0.1  # how often the staging folder is re-read while waiting (the flush period)


@dataclass(frozen=True, slots=True)
class EntryRequest:
    trace_id: str  # the recorded trace it entered
    at_ns: int  # when it was received, relative to the first replayed entry (raw ns)
    method: str
    target: str  # path and query as recorded
    headers: tuple[tuple[str, str], ...]
    body: bytes | None  # None: not recorded (the default); b"" for a recorded empty body
    body_cut: bool = False  # the recorded body is the first 64 KiB only


@dataclass(frozen=True, slots=True)
class Entries:
    requests: tuple[EntryRequest, ...]
    skipped: dict[str, int] = field(default_factory=dict)  # why -> traces not replayable


@dataclass(frozen=True, slots=True)
class Sent:
    """One replayed request: the context it carried and what staging answered."""

    entry: EntryRequest
    trace_id: str
    span_id: str
    status: int  # HTTP status, 0 if no answer
    error: str = ""


def recorded_entries(trace: Trace, last: int | None) -> Entries:
    hops = match(trace)
    index = index_traces(trace, hops)
    chosen = index.last(last) if last is not None else set(index.ids)
    skipped: dict[str, int] = {}
    server_side = set(hops.server.tolist())
    ev = trace.events
    recv_at = dict(zip(hops.server.tolist(), hops.recv.tolist(), strict=True))
    found: list[tuple[int, EntryRequest]] = []
    for t, r in enumerate(index.entry):
        tid = index.ids[t]
        if tid not in chosen:
            continue
        if r < 0 or r not in server_side:
            skipped["no entry request recorded"] = skipped.get("no entry request recorded", 0) + 1
            continue
        res = trace.resources[r]
        if res.protocol != "http":
            why = f"{res.protocol or 'unknown'} entry (only HTTP is re-issued)"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        headers = _headers(attr_str(res, "headers"))
        body = _body(res.attrs)
        cut = any(k == "body_cut" and v == 1 for k, v in res.attrs)
        e = recv_at.get(r, -1)
        at = int(ev.raw[e]) if e >= 0 else int(index.start_ns[t])
        found.append(
            (at, EntryRequest(tid, at, res.method or "GET", res.target or "/", headers, body, cut))
        )
    found.sort(key=lambda x: (x[0], x[1].trace_id))
    first = found[0][0] if found else 0
    reqs = tuple(
        EntryRequest(e.trace_id, at - first, e.method, e.target, e.headers, e.body, e.body_cut)
        for at, e in found
    )
    return Entries(reqs, skipped)


def _headers(text: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested too deep for the parser is bad too
        return ()
    if not isinstance(value, dict):
        return ()
    return tuple(
        (str(k).lower(), str(v))
        for k, v in sorted(value.items())
        if str(k).lower() not in _NOT_REPLAYED and isinstance(v, str)
    )


def _body(attrs: tuple[tuple[str, object], ...]) -> bytes | None:
    for k, v in attrs:
        if k == "body" and isinstance(v, str):
            if v.startswith("base64:"):
                try:
                    return base64.b64decode(v[len("base64:") :], validate=True)
                except ValueError:
                    return None
            return v.encode("utf-8")
    return None


def replay(
    entries: tuple[EntryRequest, ...],
    base_url: str,
    rate: float,
    *,
    timeout_s: float = 30.0,
    workers: int = 16,
    clock: Callable[[], float] = time.monotonic,
) -> list[Sent]:
    """Send every entry to ``base_url`` at ``rate`` times its recorded pace; returns what was
    sent, in entry order. Never raises for a request that failed: it is in ``error``."""
    if rate <= 0:
        raise UsageError(f"--rate {rate}: must be above 0")
    base = base_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"--replay-against {base_url}: not an http:// or https:// URL")
    results: list[Sent | None] = [None] * len(entries)
    paced = threading.Event()  # never set: its wait() is an interruptible pause until due
    start = clock()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, e in enumerate(entries):
            due = start + e.at_ns / 1e9 / rate
            delay = due - clock()
            if delay > 0:
                paced.wait(delay)
            pool.submit(_send, results, i, e, base, timeout_s)
    return [r for r in results if r is not None]


def _send(out: list[Sent | None], i: int, e: EntryRequest, base: str, timeout_s: float) -> None:
    tid, sid = secrets.token_hex(16), secrets.token_hex(8)
    headers = dict(e.headers)
    headers["traceparent"] = f"00-{tid}-{sid}-01"
    target = e.target if e.target.startswith("/") else "/" + e.target
    # The scheme was checked in replay(): only http:// and https:// reach here.
    url = base + target
    req = urllib.request.Request(url, data=e.body, headers=headers, method=e.method)  # noqa: S310
    status, error = 0, ""
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code  # an answer: the trace was still produced
        exc.close()
    except (OSError, ValueError) as exc:
        error = str(getattr(exc, "reason", exc))
    out[i] = Sent(e, tid, sid, status, error)


def wait_for_traces(
    folder: str, sent: list[Sent], *, timeout_s: float, settle_s: float
) -> tuple[Trace, set[str]]:
    """Load ``folder`` once every answered request's receive and reply are in it (or the
    timeout passed); returns the trace and the trace ids still missing then."""
    want = {(s.trace_id, s.span_id) for s in sent if s.status}
    deadline = time.monotonic() + timeout_s
    pause = threading.Event()
    missing = {t for t, _ in want}
    while True:
        if os.path.isdir(folder):
            trace = load([folder])
            missing = _unanswered(trace, want)
            if not missing:
                break
        if time.monotonic() >= deadline:
            break
        pause.wait(POLL_S)
    pause.wait(settle_s)
    return load([folder]), missing


def _unanswered(trace: Trace, want: set[tuple[str, str]]) -> set[str]:
    """Trace ids of ``want`` whose server side has not both received and replied yet."""
    ev = trace.events
    replied = set(ev.res[(ev.kind == K.RPC_REPLY) & (ev.res >= 0)].tolist())
    done = {
        (r.trace_id, r.parent_span_id)
        for r in trace.resources
        if r.index in replied and (r.trace_id, r.parent_span_id) in want
    }
    return {t for t, s in want - done}
