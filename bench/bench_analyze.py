"""Benchmark: ``willowisp analyze`` on a realistic 1,000,000-event run (not a test).

Generates a run folder like one ``willowisp run`` writes for four Python services calling
each other over HTTP: per process a dozen threads and a few asyncio tasks taking locks
(some contended), handing items through queues, notifying conditions, collecting garbage,
reading and writing rows of a shared SQLite database (some unprotected, some as a
read-modify-write under a lock: the data accesses the race analysis compares, on rows
every service touches), and making requests to the next service (one rpc resource per
request on each side, linked by trace context), with clock anchors every second, one zstd
chunk per 50 ms flush, and a second machine whose clock is 40 ms off.

Then it times, in this process, each stage (load, link, analyses, JSON) and, in a child
process, the whole command ``python -m willowisp analyze RUN --format json`` with its peak
RSS. The baseline, measured in the same run, is the time to read the files' bytes and
decompress their chunks: what any reader must pay before it can look at an event.

    python bench/bench_analyze.py [--events N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import numpy as np

from willowisp.analysis import critical_path, race, seams, structural
from willowisp.analysis.engine import ANALYSES, analyze
from willowisp.causality.link import Causality
from willowisp.ingest import load
from willowisp.model.spec import K
from willowisp.report.json_report import render_json
from willowisp.wtrace.framing import (
    CHUNK_HEADER_SIZE,
    FILE_HEADER_SIZE,
    parse_chunk_header,
    unpack_payload,
)
from willowisp.wtrace.payload import EventBatch, Record
from willowisp.wtrace.writer import SegmentWriter

SERVICES = ("gateway", "orders", "stock", "billing")
THREADS, TASKS, LOCKS, QUEUES, CONDS, ROWS = 12, 4, 16, 4, 2, 64
WRITE_SHARE = 0.3  # of the unprotected data accesses
FLUSH_NS = 50_000_000
WALL0 = 1_750_000_000_000_000_000
SKEW_NS = {"stock": 40_000_000}  # stock runs on a machine whose clock is 40 ms ahead

# Operation templates: rows of (kind, unit slot, time offset ns, resource slot, arg).
# Unit slot 0/1 = the op's two units; resource slot: "lock", "queue", "cond".
TEMPLATES = {
    "lock": [(K.LOCK_ACQUIRED, 0, 0, "lock", 0), (K.LOCK_RELEASE, 0, 2_000, "lock", 0)],
    "contended": [
        (K.LOCK_ACQUIRED, 0, 0, "lock", 0),
        (K.UNIT_BLOCK, 1, 500, "lock", 1),
        (K.LOCK_RELEASE, 0, 3_000, "lock", 0),
        (K.LOCK_ACQUIRED, 1, 3_500, "lock", 0),
        (K.LOCK_RELEASE, 1, 5_000, "lock", 0),
    ],
    "queue": [(K.QUEUE_PUT, 0, 0, "queue", -1), (K.QUEUE_GET, 1, 1_500, "queue", -1)],
    "notify": [
        (K.UNIT_BLOCK, 1, 0, "cond", 5),
        (K.SYNC_NOTIFY, 0, 2_000, "cond", -1),
        (K.UNIT_WAKE, 1, 2_500, "cond", 0),
    ],
    "gc": [(K.GC_BEGIN, 0, 0, "", 0), (K.GC_END, 0, 30_000, "", 12)],
    "step": [(K.UNIT_RUN, 2, 0, "", 1), (K.UNIT_YIELD, 2, 4_000, "", 0)],
    # arg -2: read or write at random (WRITE_SHARE writes)
    "data": [(K.DATA_ACCESS, 0, 0, "row", -2)],
    "rmw": [
        (K.LOCK_ACQUIRED, 0, 0, "lock", 0),
        (K.DATA_ACCESS, 0, 500, "row", 0),
        (K.DATA_ACCESS, 0, 1_000, "row", 1),
        (K.LOCK_RELEASE, 0, 1_500, "lock", 0),
    ],
}
MIX = {
    "lock": 0.32,
    "contended": 0.04,
    "queue": 0.13,
    "notify": 0.03,
    "gc": 0.06,
    "step": 0.2,
    "rpc": 0.05,
    "data": 0.04,
    "rmw": 0.01,
}  # share of operations; a request is 5 events (3 client, 2 server side)
RPC_CLIENT, RPC_SERVER = 3, 2  # events per request on each side


def _ops_for(n_events: int) -> dict[str, int]:
    per_op = {name: len(rows) for name, rows in TEMPLATES.items()}
    per_op["rpc"] = RPC_CLIENT + RPC_SERVER
    weight = sum(MIX[k] * per_op[k] for k in MIX)
    return {k: round(n_events * MIX[k] / weight) for k in MIX}


class Process:
    """Columns and records of one generated process."""

    def __init__(self, index: int, duration_ns: int) -> None:
        self.index = index
        self.service = SERVICES[index]
        self.pid = 4000 + index
        self.pid_hex = f"{index + 1:02x}" * 16
        self.mono0 = 10_000_000_000 * (index + 1)
        self.duration = duration_ns
        self.cols: list[np.ndarray] = []
        self.rpc_records: list[tuple[int, Record]] = []  # (first event time, record)
        self.next_res = 1 + LOCKS + QUEUES + CONDS + ROWS

    def add(
        self, kind: np.ndarray, unit: np.ndarray, t: np.ndarray, res: np.ndarray, arg: np.ndarray
    ) -> None:
        self.cols.append(np.stack([kind, unit, t, res, arg]).astype(np.int64))


def generate(folder: Path, n_events: int, seed: int = 7) -> int:
    rng = np.random.default_rng(seed)
    duration = 20_000_000_000
    procs = [Process(i, duration) for i in range(len(SERVICES))]
    per_proc = n_events // len(procs)
    ops = _ops_for(per_proc)
    for p in procs:
        slots = sum(n for k, n in ops.items() if k != "rpc")
        starts = np.sort(rng.choice(duration // 20_000, size=slots, replace=False)) * 20_000
        order = rng.permutation(slots)
        pos = 0
        for name, count in ops.items():
            if name == "rpc":
                continue
            t0 = starts[np.sort(order[pos : pos + count])] + p.mono0
            pos += count
            _tile(p, rng, name, t0)
    for p in procs:  # each service calls the next one; the last one calls the first
        _rpc(p, procs[(p.index + 1) % len(procs)], rng, ops["rpc"])
    total = 0
    for p in procs:
        total += _write(folder, p)
    return total


def _tile(p: Process, rng: np.random.Generator, name: str, t0: np.ndarray) -> None:
    rows = TEMPLATES[name]
    n = len(t0)
    units = np.stack(
        [
            rng.integers(1, THREADS + 1, n),
            rng.integers(1, THREADS + 1, n),
            rng.integers(THREADS + 1, THREADS + TASKS + 1, n),
        ]
    )
    units[1] = np.where(units[1] == units[0], units[0] % THREADS + 1, units[1])
    res_of = {
        "lock": 1 + rng.integers(0, LOCKS, n),
        "queue": 1 + LOCKS + rng.integers(0, QUEUES, n),
        "cond": 1 + LOCKS + QUEUES + rng.integers(0, CONDS, n),
        "row": 1 + LOCKS + QUEUES + CONDS + rng.integers(0, ROWS, n),
        "": np.zeros(n, np.int64),
    }
    tokens = rng.integers(1, 2**40, n)
    modes = (rng.random(n) < WRITE_SHARE).astype(np.int64)
    for kind, slot, dt, res, arg in rows:
        a = tokens if arg == -1 else modes if arg == -2 else np.full(n, arg)
        p.add(np.full(n, kind), units[slot], t0 + dt, res_of[res], a)


def _rpc(client: Process, server: Process, rng: np.random.Generator, n: int) -> None:
    t0 = np.sort(rng.choice(client.duration // 50_000, size=n, replace=False)) * 50_000
    t0 = t0 + client.mono0 + 7_000
    cu = rng.integers(1, THREADS + 1, n)
    su = rng.integers(1, THREADS + 1, n)
    c_res = client.next_res + np.arange(n)
    s_res = server.next_res + np.arange(n)
    client.next_res += n
    server.next_res += n
    shift = server.mono0 - client.mono0
    latency = 200_000 + rng.integers(0, 400_000, n)
    client.add(np.full(n, K.MSG_SEND), cu, t0, c_res, np.zeros(n))
    client.add(np.full(n, K.UNIT_BLOCK), cu, t0 + 5_000, c_res, np.full(n, 7))
    client.add(np.full(n, K.RPC_RESPONSE), cu, t0 + 2 * latency + 100_000, c_res, np.full(n, 200))
    server.add(np.full(n, K.MSG_RECV), su, t0 + shift + latency, s_res, np.zeros(n))
    server.add(np.full(n, K.RPC_REPLY), su, t0 + shift + latency + 90_000, s_res, np.full(n, 200))
    trace_ids = rng.integers(0, 2**62, n)
    for i in range(n):
        tid = f"{int(trace_ids[i]):032x}"
        span = f"{client.index:02x}{i:014x}"
        common = (
            ("kind", "rpc"),
            ("protocol", "http"),
            ("method", "POST"),
            ("target", f"/{server.service}/op"),
            ("trace_id", tid),
        )
        client.rpc_records.append(
            (
                int(t0[i]),
                Record(
                    3,
                    int(c_res[i]),
                    (
                        *common,
                        ("span_id", span),
                        ("library", "urllib"),
                        ("peer", f"10.0.0.{server.index}:8080"),
                        ("loc", 3),
                    ),
                ),
            )
        )
        server.rpc_records.append(
            (
                int(t0[i] + shift + latency[i]),
                Record(
                    3,
                    int(s_res[i]),
                    (
                        *common,
                        ("span_id", f"ff{i:014x}"),
                        ("parent_span_id", span),
                        ("library", "http.server"),
                        ("loc", 4),
                    ),
                ),
            )
        )


def _static_records(p: Process) -> list[Record]:
    recs = [
        Record(
            1,
            0,
            (
                ("process_id", p.pid_hex),
                ("pid", p.pid),
                ("host", f"{p.service}-host"),
                ("service", p.service),
                ("runtime", "python"),
                ("boot_id", "boot-b" if p.service in SKEW_NS else "boot-a"),
                ("time_ns", "time:[4026531834]"),
                ("fake_time", ""),
                ("simulated_offset_ns", 0),
                ("run_root", int(p.index == 0)),
                ("segment", 1),
            ),
        )
    ]
    for i, (f, line) in enumerate(
        [("app.py", 10), ("app.py", 20), ("client.py", 1340), ("server.py", 414)], 1
    ):
        recs.append(
            Record(4, i, (("file", f"/srv/{p.service}/{f}"), ("line", line), ("func", "f")))
        )
    for u in range(1, THREADS + TASKS + 1):
        kind = "thread" if u <= THREADS else "task"
        recs.append(Record(2, u, (("kind", kind), ("name", f"{kind}-{u}"), ("parent", 1))))
    for r in range(1, LOCKS + QUEUES + CONDS + 1):
        kind = "lock" if r <= LOCKS else "queue" if r <= LOCKS + QUEUES else "condition"
        recs.append(Record(3, r, (("kind", kind), ("name", f"{kind}_{r}"), ("loc", 1))))
    for j in range(ROWS):  # the same rows in every service: accesses compared across them
        row = f"id=k{j:010x}"
        attrs = (
            ("kind", "data"),
            ("name", f"sqlite:/srv/shop.db#stock[{row}]"),
            ("store", "sqlite"),
            ("table", "stock"),
            ("row", row),
            ("statement", "UPDATE stock SET qty = ? WHERE id = ?"),
            ("loc", 2),
        )
        recs.append(Record(3, 1 + LOCKS + QUEUES + CONDS + j, attrs))
    return recs


def _write(folder: Path, p: Process) -> int:
    ev = np.concatenate(p.cols, axis=1)
    anchors = np.arange(p.mono0, p.mono0 + p.duration + 1, 1_000_000_000)
    wall = anchors - p.mono0 + WALL0 + SKEW_NS.get(p.service, 0)
    ev = np.concatenate(
        [
            ev,
            np.stack(
                [
                    np.full(len(anchors), K.CLOCK_ANCHOR),
                    np.zeros(len(anchors)),
                    anchors,
                    np.zeros(len(anchors)),
                    wall,
                ]
            ).astype(np.int64),
        ],
        axis=1,
    )
    ev = ev[:, np.argsort(ev[2], kind="stable")]
    rpc = sorted(p.rpc_records, key=lambda r: r[0])
    rpc_times = np.array([t for t, _ in rpc], dtype=np.int64)
    edges = np.arange(p.mono0, p.mono0 + p.duration + 2 * FLUSH_NS, FLUSH_NS)
    cut = np.searchsorted(ev[2], edges)
    rcut = np.searchsorted(rpc_times, edges)
    path = folder / f"{p.service}-{p.pid}-{p.pid_hex[:8]}-1.wtrace"
    seq = 1
    with SegmentWriter(path) as w:
        for c in range(len(edges) - 1):
            lo, hi = int(cut[c]), int(cut[c + 1])
            recs = _static_records(p) if c == 0 else []
            recs += [r for _, r in rpc[int(rcut[c]) : int(rcut[c + 1])]]
            if hi == lo and not recs:
                continue
            recs.append(
                Record(
                    6,
                    0,
                    (
                        ("events", seq + hi - lo),
                        ("dropped", 0),
                        ("faults", 0),
                        ("cost_ns_per_event", 420),
                    ),
                )
            )
            batch = EventBatch(first_seq=seq)
            batch.kind = array("B", ev[0, lo:hi].astype(np.uint8).tobytes())
            for name, row, code in (
                ("unit", 1, "I"),
                ("time", 2, "q"),
                ("res", 3, "I"),
                ("arg", 4, "q"),
            ):
                col = array(code)
                col.frombytes(ev[row, lo:hi].astype(np.dtype(code).newbyteorder("<")).tobytes())
                setattr(batch, name, col)
            located = [K.LOCK_ACQUIRED, K.LOCK_RELEASE, K.UNIT_BLOCK, K.DATA_ACCESS]
            loc = np.where(np.isin(ev[0, lo:hi], located), 2, 0)
            batch.loc = array("I", loc.astype(np.uint32).tobytes())
            w.write_chunk(recs, batch if hi > lo else None)
            seq += hi - lo
    return int(ev.shape[1])


def baseline(folder: Path) -> float:
    """Seconds to read every file and decompress (and verify) every chunk."""
    start = time.perf_counter()
    for path in sorted(folder.glob("*.wtrace")):
        data = path.read_bytes()
        pos = FILE_HEADER_SIZE
        while pos < len(data):
            h = parse_chunk_header(data, pos)
            body = pos + CHUNK_HEADER_SIZE
            unpack_payload(h, memoryview(data)[body : body + h.stored_len])
            pos = body + h.stored_len
    return time.perf_counter() - start


def _timing_views(c: Causality) -> None:
    """The document's timing views stage by stage, and what ``diff`` needs beyond them:
    the critical path of every operation."""
    t = [time.perf_counter()]
    rhythms = structural.detect(c)
    t.append(time.perf_counter())
    ix = critical_path.build_index(c, rhythms.gaps)
    t.append(time.perf_counter())
    critical_path.slowest(ix)
    t.append(time.perf_counter())
    seams.by_group(ix, rhythms)
    t.append(time.perf_counter())
    ops = len(c.operations.trace_ids)
    for o in range(ops):
        critical_path.critical_path(ix, o)
    t.append(time.perf_counter())
    d = [f"{b - a:.2f} s" for a, b in itertools.pairwise(t)]
    print(
        f"timing views: rhythms {d[0]}, path index {d[1]}, slowest paths {d[2]}, "
        f"seams {d[3]}; every operation's critical path ({ops:,}) {d[4]}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keep", metavar="DIR", help="write the run here and keep it")
    args = ap.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="wisp-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t = time.perf_counter()
        n = generate(folder, args.events)
        size = sum(f.stat().st_size for f in folder.glob("*.wtrace"))
        print(
            f"generated {n:,} events in {len(SERVICES)} processes: {size / 1e6:.1f} MB "
            f"on disk ({time.perf_counter() - t:.1f} s)"
        )
        base = min(baseline(folder) for _ in range(3))
        t0 = time.perf_counter()
        trace = load([folder])
        t1 = time.perf_counter()
        result = analyze(trace)
        t2 = time.perf_counter()
        text = render_json(result.document())
        t3 = time.perf_counter()
        kinds = sorted({f.kind for f in result.findings})
        print(
            f"in process: load {t1 - t0:.2f} s, link + analyses {t2 - t1:.2f} s, "
            f"json {t3 - t2:.2f} s ({len(text) / 1e3:.0f} kB; findings: {kinds})"
        )
        each = []
        for name, run in ANALYSES:  # each one again, over the same linked trace
            t = time.perf_counter()
            run(result.causality)
            each.append(f"{name} {time.perf_counter() - t:.2f} s")
        print("per analysis: " + ", ".join(each))
        accesses = int(np.count_nonzero(trace.events.kind == K.DATA_ACCESS))
        t = time.perf_counter()
        races = race.find(result.causality)
        print(
            f"race: {time.perf_counter() - t:.2f} s for {accesses:,} data accesses, its "
            f"happens-before index included ({len(races)} findings, "
            f"{sum(int(dict(f.extra).get('count', 0)) for f in races):,} unordered pairs)"
        )
        _timing_views(result.causality)
        cmd = [sys.executable, "-m", "willowisp", "analyze", str(folder), "--format", "json"]
        t4 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, check=False)
        wall = time.perf_counter() - t4
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(
            f"end to end ({' '.join(['python -m willowisp analyze', 'RUN', '--format json'])}):"
            f" {wall:.2f} s, peak RSS {rss_mb:.0f} MB, exit {proc.returncode}"
        )
        print(f"baseline (read + decompress every chunk): {base:.2f} s")
        print(
            f"ratio: end to end / baseline = {wall / base:.1f}x; "
            f"in-process total / baseline = {(t3 - t0) / base:.1f}x; "
            f"{n / wall / 1e6:.2f} M events/s end to end"
        )
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
