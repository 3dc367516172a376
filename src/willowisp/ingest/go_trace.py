"""Importing Go execution traces (``runtime/trace`` output) through the ``wisp-goimport`` helper.

A Go execution trace is a binary format whose reader lives in Go (``golang.org/x/exp/trace``),
so the trace is read once by a small Go program, ``agents/go/cmd/wisp-goimport``
(:func:`prepare`), and the JSON Lines stream it writes (docs/import.md) is what a
``.wtrace`` stores: decoding later needs no Go toolchain. :func:`decode` maps the stream of
one trace to one process (runtime ``go``):

* each **goroutine** is a unit of kind ``goroutine`` named after the function it started in
  and its number (``main.worker #7``); a ``create`` line is the creator's ``unit.create`` at
  the ``go`` statement; ``unit.start`` comes with the goroutine's first run (for goroutines
  already there when tracing began, when they are first seen); ``end`` is ``unit.end``;
* a **block** is ``unit.block`` on a resource keyed by what is waited on and where: the kind
  comes from the runtime's reason (``chan send``/``chan receive`` → ``channel`` PUT/GET,
  ``select`` → ``select``, ``sync.(*Cond).Wait`` → ``condition``, ``sync`` → ``lock``,
  ``rwlock``, ``waitgroup`` or ``semaphore`` by the ``sync`` function on the stack, ``sleep``,
  ``network`` → IO, anything else → ``notify``), its place is the program's own line (the
  ``<-ch``, the ``mu.Lock()``). A Go trace does not say *which* channel or mutex, so two
  waits at one line share a resource; the trade-off is stable names and finding ids;
* an **unblock** (written on the goroutine that did it) becomes the waker's ``sync.notify``
  on the wakee's resource immediately followed by the wakee's ``unit.wake``: the NOTIFY
  happens-before edge waker → wakee. Wake-ups by the runtime (timers, the network poller, no
  goroutine) get a ``unit.wake`` with no notify, and on synchronising kinds no resource, so
  no earlier notify on that resource can be mistaken for their cause;
* ``run``/``stop`` lines are ``unit.run``/``unit.yield`` (scheduling, ending no wait), except
  for the runtime's own goroutines (``runtime_units`` below, not the one that stopped the
  trace): the sweeper alone can write tens of thousands, a number that swings tenfold
  between runs, so they are left out and counted (``go_runtime_sched_omitted``); the
  GC's mark phase is ``gc.begin``/``gc.end``; stop-the-world pauses are counted in the
  process record (``go_stw_pauses``, ``go_stw_ns``);
* user **tasks, regions and logs** are kept as JSON arrays in the process record
  (``go_tasks``, ``go_regions``, ``go_logs``, each bounded), since events carry no strings;
* the trace's clock snapshots (Go 1.25+) become ``clock.anchor`` events; older traces have
  none, and raw time is then the trace's own monotonic clock (a note says so).

The process record also says what the stuck analysis (:mod:`willowisp.analysis.stuck`)
needs to reason about the end of the trace: ``complete`` (1 when the helper read the trace
to its orderly end) and ``runtime_units`` (the runtime's and the tracer's own goroutines,
and the one that ran ``trace.Stop``), which cannot wake the program's goroutines.

**The Go agent's stream** (stored format ``go-exectrace``, docs/agent-go.md) is the raw
execution trace the agent (``agents/go/wisp``) stored as it arrived, after one JSON header
line naming the agent's process id. It is decoded here at read time: the helper runs on
the raw bytes and the stream above is decoded in *agent mode*, so its goroutines join the
agent's own process (same ``process_id``) rather than forming an imported one:

* the stream's process record carries the segment number of the file it came in (from the
  file's name), so the loader orders it after that segment's own records: where the agent
  also defined one of these goroutines (it does for a hop made while its tracer was off,
  stopping or rotating, knowing only the goroutine's number), the stream's definition,
  which names the start function and the creator, is the one kept, whatever the timing;
* numbers cannot collide with the agent's own: goroutine ``g`` is unit ``g + 1`` (goroutine
  ids are never reused, so several streams of one process agree), this decoder's resources
  and locations count from :data:`AGENT_RES_BASE` / :data:`AGENT_LOC_BASE` (the agent's
  count from 1) and its events' sequence numbers from :data:`AGENT_SEQ_BASE`;
* times are moved onto the agent's clock (``CLOCK_MONOTONIC``) through the trace's clock
  snapshot (mono - trace); the agent writes the clock anchors, so none are made here, and
  the process record carries only what the trace adds (no pid, host or service);
* user logs of category ``wisp`` are the agent's events on the goroutine that logged
  them: ``"<kind> <resource> <arg> [<location>]"`` in the agent's numbering (lock waits
  and holds, HTTP and gRPC hops; a ``msg.send`` with argument 7 is a client's send and its
  wait for the reply, ``unit.block`` with reason rpc, in one log: both events are written,
  at the log's time); while such a ``unit.block`` is open, the runtime's own
  block/unblock of the goroutine (the ``sync.Mutex`` inside ``wisp.Mutex``, the network
  read under an HTTP call) is the same wait and is not written again;
* the agent's goroutines (package ``wisp``, ``os/signal``) are runtime units, their waits
  and waits inside the agent's code are not written, and so are the goroutine that logged
  ``stop`` (it ran ``wisp.Stop``), the runtime's goroutines met running (a stack starting
  in ``runtime.``) and goroutines that predate the tracer without showing a function
  (the agent starts during init: the runtime's), until a wait names a program function;
  the runtime's own goroutines' waits are not written either (they are not the program's
  contention). Logs of category ``wisp-calibrate`` (the agent timing itself) are ignored.

The helper is ``WILLOWISP_GOIMPORT``, else ``wisp-goimport`` on ``PATH``, else built once
from this checkout's ``agents/go`` with the ``go`` toolchain into
``~/.cache/willowisp/bin/wisp-goimport-<hash of its sources>``. A stream line that breaks
the rules is skipped and counted in a note; input that is no Go trace is one
:class:`TraceFormatError`, the only error raised.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from willowisp.errors import TraceFormatError, TraceLimitError
from willowisp.ingest.files import parse_segment_name
from willowisp.ingest.go_decoder import (  # NAME and the numbering: the registry, tests
    AGENT_LOC_BASE,
    AGENT_RES_BASE,
    AGENT_SEQ_BASE,
    AGENT_STORED,
    AGENT_STREAM_SPAN,
    HANDLERS,
    MAX_AGENT_HEADER,
    MAX_ANNOTATIONS,
    MAX_LINES,
    R_PROCESS,
    STORED,
    BadLine,
    Decoder,
)
from willowisp.ingest.go_helper import (  # re-exported: doctor, scripts/test and tests use them
    MAX_STREAM_BYTES,
    find_helper,
)
from willowisp.ingest.go_helper import helper_message as _helper_message
from willowisp.ingest.go_helper import run_helper as _run
from willowisp.wtrace.payload import Record
from willowisp.wtrace.reader import TraceFile

# -- sniffing and the helper -----------------------------------------------------------------


def sniff(head: bytes) -> bool:
    """A Go execution trace starts with ``go 1.NN trace`` and NUL padding to 16 bytes."""
    return head.startswith(b"go 1.") and b" trace\x00" in head[:16]


def prepare(data: bytes, path: str) -> tuple[str, bytes]:
    """Run the helper over the trace: ``("go-events", its JSON Lines)``.

    Raises TraceFormatError when the helper cannot be found or built, or says the input is
    not a Go trace (its one line is the message); TraceLimitError when the output passes
    :data:`MAX_STREAM_BYTES`."""
    helper = find_helper()
    code, out, err = _run(helper, data)
    if code != 0:
        raise TraceFormatError(_helper_message(err, code))
    return STORED, out


def decode(stored_format: str, data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """The helper's stream (``go-events``), or the Go agent's raw execution trace
    (``go-exectrace``, decoded through the helper now), → one process and notes. Raises
    TraceFormatError when the bytes are not such a stream or hold no goroutine at all."""
    if stored_format == AGENT_STORED:
        return _decode_agent_stream(data, path)
    if stored_format != STORED:
        raise TraceFormatError(f"the Go importer reads {STORED!r}, not {stored_format!r}")
    return _decode_events(data, path, Decoder(path))


def _decode_agent_stream(data: bytes, path: str) -> tuple[list[TraceFile], list[str]]:
    """``go-exectrace``: a JSON header line, then the runtime tracer's bytes as written."""
    head, nl, _ = data[: MAX_AGENT_HEADER + 1].partition(b"\n")
    if not nl:
        raise TraceFormatError("a go-exectrace stream without its header line")
    pid, stream = _agent_header(head)
    raw = data[len(head) + 1 :]
    code, out, err = _run(find_helper(), raw)
    if code != 0:
        raise TraceFormatError(_helper_message(err, code))
    span = (stream - 1) * AGENT_STREAM_SPAN
    d = Decoder(
        path,
        agent_process=pid,
        unit_base=1,
        res_base=AGENT_RES_BASE + span,
        loc_base=AGENT_LOC_BASE + span,
        first_seq=AGENT_SEQ_BASE + (stream - 1) * (1 << 32),
    )
    files, notes = _decode_events(out, path, d)
    return [_in_segment(tf, path) for tf in files], notes


def _in_segment(tf: TraceFile, path: str) -> TraceFile:
    """The decoded stream with its process record saying which segment it came in.

    The loader merges a process's unit definitions in segment order, later ones winning.
    The agent's own records name a goroutine only by number (``goroutine #30``, no
    parent); without a segment this stream sorted first and lost to them, so one run
    named the demo's consumer ``main.consume #9`` and the next ``goroutine #30``. In its
    own segment the stream sorts after the agent's records (its sequence numbers start
    at AGENT_SEQ_BASE). The agent now marks such records provisional (docs/format.md), so
    the loader keeps the tracer's name in any order (a renamed file, an older agent's
    records still rely on this order)."""
    name = parse_segment_name(path)
    if name is None:
        return tf
    for chunk in tf.chunks:
        chunk.records = [
            Record(r.rtype, r.id, (*r.attrs, ("segment", name.n)))
            if r.rtype == R_PROCESS and r.get("segment") is None
            else r
            for r in chunk.records
        ]
    return tf


def _agent_header(head: bytes) -> tuple[str, int]:
    """The go-exectrace header's (process id, stream number). Raises TraceFormatError."""
    try:
        header = json.loads(head)
    except (ValueError, RecursionError) as exc:
        raise TraceFormatError(f"a go-exectrace stream whose header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != 1:
        raise TraceFormatError("a go-exectrace stream of an unknown format (a newer Go agent?)")
    pid, stream = header.get("process_id"), header.get("stream")
    if not (isinstance(pid, str) and len(pid) == 32 and all(c in "0123456789abcdef" for c in pid)):
        raise TraceFormatError("a go-exectrace header without a 32-hex-digit process_id")
    if type(stream) is not int or not 1 <= stream <= 127:
        raise TraceFormatError(f"a go-exectrace header with stream {stream!r} (expected 1..127)")
    return pid, stream


def _decode_events(data: bytes, path: str, d: Decoder) -> tuple[list[TraceFile], list[str]]:
    if len(data) > MAX_STREAM_BYTES:
        raise TraceLimitError(f"the Go event stream is over {MAX_STREAM_BYTES} bytes")
    lines = [raw for raw in data.split(b"\n") if raw.strip()]
    if len(lines) > MAX_LINES:
        raise TraceLimitError(f"the Go event stream has more than {MAX_LINES} lines")
    bad = 0
    first = ""
    for lineno, item in enumerate(_parsed(lines), 1):
        try:
            if isinstance(item, Exception):
                raise BadLine(str(item))
            if lineno == 1:
                _header(d, item)
                continue
            if not isinstance(item, dict):
                raise BadLine("not a JSON object")
            handler = HANDLERS.get(str(item.get("t")))
            if handler is not None:
                handler(d, item)
        except BadLine as exc:
            if lineno == 1:
                raise TraceFormatError(f"not a wisp-goimport event stream: {exc}") from exc
            bad += 1
            first = first or f"line {lineno}: {_short(exc)}"
    total = len(lines)
    if not d.gs:
        raise TraceFormatError("the Go trace holds no goroutines")
    return [d.trace_file(data)], _notes(d, path, total, bad, first)


_BATCH = 50_000  # lines parsed per json.loads call: fast, and bounds the objects alive


def _parsed(lines: list[bytes]) -> Iterator[Any]:
    """Each line's JSON value, or the exception that line raised. Lines are parsed a batch
    at a time in one call (several times faster than line by line); only a batch holding a
    bad line is parsed again line by line, to keep its good ones."""
    for lo in range(0, len(lines), _BATCH):
        batch = lines[lo : lo + _BATCH]
        try:
            whole = json.loads(b"[" + b",".join(batch) + b"]")
        except (ValueError, RecursionError):
            whole = None
        if isinstance(whole, list) and len(whole) == len(batch):
            yield from whole
            continue
        for raw in batch:
            try:
                yield json.loads(raw)
            except (ValueError, RecursionError) as exc:
                yield exc


def _header(d: Decoder, item: Any) -> None:
    if not isinstance(item, dict) or item.get("t") != "header":
        raise TraceFormatError("not a wisp-goimport event stream (no header line)")
    d.header(item)


def _notes(d: Decoder, path: str, total: int, bad: int, first: str) -> list[str]:
    notes: list[str] = []
    if bad:
        notes.append(
            f"{path}: {bad} of {total} Go stream lines skipped (first: {first}); "
            "the others were imported"
        )
    err = d.summary.get("error")
    if not d.summary:
        notes.append(
            f"{path}: the Go event stream has no summary (cut short); goroutines still "
            "waiting at its end are not reported as stuck"
        )
    elif isinstance(err, str) and err:
        notes.append(
            f"{path}: the Go trace is damaged after some generations ({err}); "
            "the events before were imported"
        )
    if not d.clock_pairs:
        notes.append(
            f"{path}: this Go trace (go {d.go_version or '?'}) carries no wall-clock snapshot "
            "(Go 1.25+ traces do): its times stay on the trace's own clock"
        )
    if d.dropped_annotations:
        notes.append(
            f"{path}: {d.dropped_annotations} Go tasks, regions or logs beyond the "
            f"{MAX_ANNOTATIONS} kept of each kind were dropped"
        )
    return notes


def _short(exc: BaseException) -> str:
    s = str(exc) or type(exc).__name__
    return s if len(s) <= 80 else s[:77] + "..."
