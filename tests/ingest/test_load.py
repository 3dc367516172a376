"""Loading runs and files into columns: merging segments, numbering, raw time, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


@pytest.mark.parametrize("guess_first", [True, False])
def test_a_provisional_unit_record_only_fills_gaps(tmp_path: Path, guess_first: bool) -> None:
    """The Go agent's record of a goroutine it knows only by number (provisional) never
    replaces the tracer's name and parent, in whichever segment order the two arrive; what
    the real record does not say (here its kind) still comes from the guess."""
    guess = 'rec unit 34 kind="goroutine" name="goroutine #33" parent=0 provisional=1'
    real = 'rec unit 34 name="main.poller #33" parent=2'
    first, second = (guess, real) if guess_first else (real, guess)
    write_trace(
        tmp_path / "orders-11-aa000000-1.wtrace",
        chunk(
            P1,
            'rec unit 2 kind="goroutine" name="main.main #1"',
            first,
            f"ev 1000 clock.anchor a={WALL0}",
            "ev 1100 unit.start u=34",
        ),
    )
    write_trace(
        tmp_path / "orders-11-aa000000-2.wtrace",
        chunk(P1.replace("segment=1", "segment=2"), second, "ev 2000 unit.end u=34", seq=3),
    )
    trace = load([tmp_path])
    (poller,) = [u for u in trace.units if u.number == 34]
    assert poller.name == "main.poller #33"
    assert trace.units[poller.parent].name == "main.main #1"
    assert poller.kind == "goroutine"


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


# A collector that wrote chunk 2 but died before acknowledging it: the agent fell back to
# its own file, starting with its process record and a fault, then chunk 2 again, then 3.
_CHUNK_1 = chunk(
    P1,
    'rec unit 1 kind="thread" name="Thread-1"',
    "rec stats 0 events=1 dropped=0 faults=0 cost_ns_per_event=100",
    f"ev 1000 clock.anchor a={WALL0}",
    "ev 1100 unit.start u=1",
)
_CHUNK_2 = chunk(
    "rec stats 0 events=3 dropped=0 faults=0 cost_ns_per_event=100",
    "ev 2000 lock.acquired u=1 r=1",
    "ev 2100 lock.release u=1 r=1",
    seq=3,
)
_HEAD = chunk(P1, 'rec fault 1 message="collector went away" where="stream"')
_CHUNK_3 = chunk(
    'rec unit 1 kind="thread" name="worker"',  # renamed after chunk 1: the last one wins
    "rec stats 0 events=4 dropped=0 faults=1 cost_ns_per_event=100",
    "ev 3000 unit.end u=1",
    seq=5,
)


def _collector_and_fallback(tmp_path: Path, fallback: tuple[str, ...]) -> list[Path]:
    """The collector's folder and the agent's, each with its segment 1 of process aa…
    (the same file name: the collector names files like the agent). The agent's folder
    comes first, so file order alone would merge the older definitions last."""
    name = "orders-11-aa000000-1.wtrace"
    (tmp_path / "collected").mkdir()
    (tmp_path / "run").mkdir()
    write_trace(tmp_path / "collected" / name, _CHUNK_1, _CHUNK_2)
    write_trace(tmp_path / "run" / name, *fallback)
    return [tmp_path / "run", tmp_path / "collected"]


def test_chunk_stored_twice_is_loaded_once(tmp_path: Path) -> None:
    """A chunk in both the collector's file and the agent's fallback file (same process,
    first sequence number and contents) is loaded once, said in a note, and definitions
    merge in the agent's write order (sequence numbers), not in file-name order."""
    trace = load(_collector_and_fallback(tmp_path, (_HEAD, _CHUNK_2, _CHUNK_3)))
    ev = trace.events
    assert ev.seq.tolist() == [1, 2, 3, 4, 5]
    assert ev.kind.tolist() == [
        K.CLOCK_ANCHOR,
        K.UNIT_START,
        K.LOCK_ACQUIRED,
        K.LOCK_RELEASE,
        K.UNIT_END,
    ]
    [p] = trace.processes
    assert [Path(f).parent.name for f in p.files] == ["collected", "run"]
    assert (p.stats.events, p.stats.faults) == (4, 1)  # the agent's last stats record
    assert [u.name for u in trace.units] == ["worker"]
    assert [f.message for f in trace.faults] == ["collector went away"]
    assert [f.events for f in trace.files] == [4, 3]  # what each file holds, repeats too
    [note] = [n for n in trace.notes if "seen twice" in n]
    assert note.startswith("1 chunk of process aa000000… (orders, pid 11) seen twice")
    assert "the repeats were dropped" in note
    assert trace.unreadable == []


def test_every_chunk_stored_twice(tmp_path: Path) -> None:
    """A collector that acknowledged nothing: all its chunks are repeats, counted."""
    trace = load(_collector_and_fallback(tmp_path, (_HEAD, _CHUNK_1, _CHUNK_2)))
    assert trace.events.seq.tolist() == [1, 2, 3, 4]
    assert any(n.startswith("2 chunks of process aa000000… (orders") for n in trace.notes)


@pytest.mark.parametrize(
    ("clash", "loaded"),
    [
        (
            chunk(  # one event differs
                "rec stats 0 events=3 dropped=0 faults=0 cost_ns_per_event=100",
                "ev 2000 lock.acquired u=1 r=1",
                "ev 2100 lock.release u=1 r=2",
                seq=3,
            ),
            6,
        ),
        (
            chunk(  # one record differs
                "rec stats 0 events=3 dropped=0 faults=9 cost_ns_per_event=100",
                "ev 2000 lock.acquired u=1 r=1",
                "ev 2100 lock.release u=1 r=1",
                seq=3,
            ),
            6,
        ),
        (
            chunk(  # one event fewer
                "rec stats 0 events=3 dropped=0 faults=0 cost_ns_per_event=100",
                "ev 2000 lock.acquired u=1 r=1",
                seq=3,
            ),
            5,
        ),
    ],
    ids=["event", "record", "count"],
)
def test_same_sequence_number_different_contents_is_damage(
    tmp_path: Path, clash: str, loaded: int
) -> None:
    """A chunk reusing a sequence number with other contents is not a repeat: both are
    kept (nothing is thrown away on a guess) and a note names both chunks."""
    folders = _collector_and_fallback(tmp_path, (_HEAD, clash))
    trace = load(folders)
    seqs = trace.events.seq.tolist()
    assert len(seqs) == loaded and seqs.count(3) == 2
    [note] = [n for n in trace.notes if "damage" in n]
    run, collected = (str(f / "orders-11-aa000000-1.wtrace") for f in folders)
    assert f"chunk 1 of {run} and chunk 1 of {collected} both start at sequence number 3" in note
    assert "both were kept" in note
    assert not any("seen twice" in n for n in trace.notes)


def test_a_file_left_with_nothing_but_its_damage_is_reported(tmp_path: Path) -> None:
    """A file whose only chunk with a process record and events is corrupt, the rest
    readable but empty, is damage to report, not an empty file to pass over silently."""
    path = tmp_path / "s-3-cccccccc-1.wtrace"
    proc = [Record(1, 0, (("process_id", "c" * 32), ("pid", 3), ("service", "s")))]
    first = EventBatch(first_seq=1)
    first.append(K.UNIT_START, 1, 1000)
    unit = [Record(2, 1, (("kind", "thread"), ("name", "t")))]
    write_file(path, [(proc, first), (unit, EventBatch(first_seq=2))], codec=CODEC_NONE)
    data = bytearray(path.read_bytes())
    data[data.find(b"WCHK") + 24] ^= 0xFF  # inside the first chunk's payload
    path.write_bytes(bytes(data))
    trace = load([path])
    assert trace.processes == []
    assert [u.path for u in trace.unreadable] == [str(path)]
    assert "checksum" in trace.unreadable[0].message
    assert "nothing readable" in trace.unreadable[0].message
