"""Loading runs and files into columns: merging segments, numbering, raw time, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from golden.tracetext import WALL0, chunk, process, write_trace
from willowisp.ingest import load
from willowisp.model.spec import K
from willowisp.wtrace.framing import CODEC_NONE
from willowisp.wtrace.payload import EventBatch, Record
from willowisp.wtrace.writer import write_file

P1 = process("aa", 11, "orders", run_root=1)
P2 = process("bb", 22, "stock")


def test_segments_of_one_process_are_merged(tmp_path: Path) -> None:
    """Two segments sharing a process id become one process; records and events merge."""
    write_trace(
        tmp_path / "orders-11-aa000000-1.wtrace",
        chunk(
            P1,
            'rec unit 1 kind="thread" name="MainThread"',
            'rec resource 1 kind="lock" name="L"',
            "rec stats 0 events=2 dropped=0 faults=0 cost_ns_per_event=100",
            f"ev 1000 clock.anchor a={WALL0}",
            "ev 1100 lock.acquired u=1 r=1",
        ),
    )
    write_trace(
        tmp_path / "orders-11-aa000000-2.wtrace",
        chunk(
            P1.replace("segment=1", "segment=2"),
            "rec stats 0 events=5 dropped=3 faults=0 cost_ns_per_event=120",
            "ev 2000 lock.release u=1 r=1",
            seq=3,
        ),
    )
    trace = load([tmp_path])
    assert len(trace.processes) == 1
    p = trace.processes[0]
    assert len(p.files) == 2 and p.files[0].endswith("-1.wtrace")
    assert (p.stats.events, p.stats.dropped, p.stats.cost_ns_per_event) == (5, 3, 120)
    ev = trace.events
    assert ev.kind.tolist() == [K.CLOCK_ANCHOR, K.LOCK_ACQUIRED, K.LOCK_RELEASE]
    assert ev.seq.tolist() == [1, 2, 3]
    assert ev.unit.tolist() == [-1, 0, 0]  # the anchor is no unit's; MainThread is index 0
    assert ev.res.tolist() == [-1, 0, 0]
    assert trace.units[0].name == "MainThread" and trace.resources[0].name == "L"


def test_global_indices_and_sort_order(tmp_path: Path) -> None:
    """Units are numbered densely across processes; events sort by (process, time, seq)."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            P1,
            'rec unit 5 kind="thread" name="T5"',
            'rec unit 2 kind="thread" name="T2"',
            f"ev 100 clock.anchor a={WALL0}",
            "ev 300 unit.start u=5",
            "ev 200 unit.start u=2",
            "ev 200 unit.end u=2",
        ),
    )
    write_trace(
        tmp_path / "b.wtrace",
        chunk(P2, f"ev 100 clock.anchor a={WALL0 + 10}", "ev 150 unit.start u=1"),
    )
    trace = load([tmp_path])
    assert [p.service for p in trace.processes] == ["orders", "stock"]  # run_root first
    assert [(u.proc, u.number, u.name) for u in trace.units] == [
        (0, 2, "T2"),
        (0, 5, "T5"),
        (1, 1, "unit 1"),
    ]
    assert trace.units[2].kind == "unknown"  # named by an event, defined by no record
    ev = trace.events
    assert ev.proc.tolist() == [0, 0, 0, 0, 1, 1]
    assert ev.time.tolist() == [100, 200, 200, 300, 100, 150]
    assert ev.kind[1:3].tolist() == [K.UNIT_START, K.UNIT_END]  # same time: file order
    assert trace.unit_index(np.array([0, 0, 1, 1]), np.array([5, 3, 1, 2])).tolist() == [
        1,
        -1,
        2,
        -1,
    ]


def test_raw_time_uses_the_nearest_preceding_anchor(tmp_path: Path) -> None:
    """raw = time + (wall - mono) of the latest anchor at or before it; the first before it."""
    write_trace(
        tmp_path / "a.wtrace",
        chunk(
            P1,
            "ev 50 unit.start u=1",
            f"ev 100 clock.anchor a={WALL0}",
            "ev 150 unit.run u=1",
            f"ev 1000 clock.anchor a={WALL0 + 905}",
            "ev 1000 unit.yield u=1",
            "ev 1200 unit.end u=1",
        ),
    )
    ev = load([tmp_path]).events
    offsets = (ev.raw - ev.time).tolist()
    assert offsets == [WALL0 - 100] * 3 + [WALL0 - 95] * 3
    assert ev.time.tolist() == [50, 100, 150, 1000, 1000, 1200]  # never rewritten


def test_unreadable_files_do_not_stop_the_others(tmp_path: Path) -> None:
    """Not a trace, a newer major version, a missing path and an empty folder are each
    reported with one line; the good file is still loaded."""
    good = write_trace(tmp_path / "good.wtrace", chunk(P1, "ev 1 unit.start u=1"))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    newer = tmp_path / "newer.wtrace"
    newer.write_bytes(b"WTRACE\x02\x00" + bytes(8))
    empty = tmp_path / "empty"
    empty.mkdir()
    trace = load([good, text, newer, tmp_path / "missing.wtrace", empty])
    assert len(trace.processes) == 1 and len(trace.events) == 1
    problems = {Path(u.path).name: u.message for u in trace.unreadable}
    assert "not a .wtrace file" in problems["notes.txt"]
    assert "newer" in problems["newer.wtrace"]
    assert problems["missing.wtrace"] == "no such file or directory"
    assert problems["empty"] == "no .wtrace files in this folder"
    assert not any(u.partial for u in trace.unreadable)


def _three_chunks(path: Path) -> bytes:
    rec = [Record(1, 0, (("process_id", "c" * 32), ("pid", 3), ("service", "s")))]
    chunks = []
    for i in range(3):
        batch = EventBatch(first_seq=1 + i)
        batch.append(K.UNIT_START, 1, 1000 + i)
        chunks.append((rec if i == 0 else [], batch))
    write_file(path, chunks, codec=CODEC_NONE)
    return path.read_bytes()


def test_corrupt_chunk_is_skipped_and_reported(tmp_path: Path) -> None:
    """A chunk failing its checksum is skipped; the rest is used and the file is listed as
    damaged (partial)."""
    path = tmp_path / "s-3-cccccccc-1.wtrace"
    data = bytearray(_three_chunks(path))
    second = data.find(b"WCHK", data.find(b"WCHK") + 1)
    data[second + 24] ^= 0xFF  # inside the second chunk's payload
    path.write_bytes(bytes(data))
    trace = load([path])
    assert trace.events.time.tolist() == [1000, 1002]
    assert len(trace.unreadable) == 1 and trace.unreadable[0].partial
    assert "checksum" in trace.unreadable[0].message
    assert "the good chunks were used" in trace.unreadable[0].message


def test_truncated_tail_is_a_note_not_an_error(tmp_path: Path) -> None:
    """A writer killed mid-chunk leaves a readable prefix: a note, no unreadable entry."""
    path = tmp_path / "s.wtrace"
    data = _three_chunks(path)
    path.write_bytes(data[:-5])
    trace = load([path])
    assert trace.unreadable == []
    assert trace.events.time.tolist() == [1000, 1001]
    assert any("writer killed" in n for n in trace.notes)


def test_lost_process_record_is_attributed_by_file_name(tmp_path: Path) -> None:
    """A segment whose process record was lost joins the process its name points to."""
    write_trace(tmp_path / "orders-11-aa000000-1.wtrace", chunk(P1, "ev 1 unit.start u=1"))
    write_trace(tmp_path / "orders-11-aa000000-2.wtrace", chunk("ev 5 unit.end u=1", seq=2))
    trace = load([tmp_path])
    assert len(trace.processes) == 1
    assert trace.events.kind.tolist() == [K.UNIT_START, K.UNIT_END]
    assert any("no process record" in n for n in trace.notes)


def test_unknown_event_kinds_are_skipped_and_counted(tmp_path: Path) -> None:
    """Events of kinds this reader does not know are dropped and counted."""
    write_trace(
        tmp_path / "a.wtrace", chunk(P1, "ev 1 unit.start u=1", "ev 2 99 u=1", "ev 3 unit.end u=1")
    )
    trace = load([tmp_path])
    assert trace.unknown_kinds == 1
    assert trace.events.kind.tolist() == [K.UNIT_START, K.UNIT_END]
    assert trace.events.seq.tolist() == [1, 3]  # ids of the others do not change
