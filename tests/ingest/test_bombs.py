"""Hostile trace files a reviewer made: an embedded stream whose zstd pieces decompress past
its bound, JSON nested too deep for the parser, a float where a time belongs. Each gives one
clear line naming the file, never a traceback or a blow-up of memory, and the good data
beside it is still read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from golden.test_golden import GOLDEN, build_run
from willowisp.ingest.files import EmbeddedBudget, read_wtrace, split_embedded
from willowisp.wtrace.framing import CODEC_NONE, CODEC_ZSTD, file_header
from willowisp.wtrace.payload import DecodedEvents, Record
from willowisp.wtrace.reader import TraceFile, read_file
from willowisp.wtrace.writer import R_EMBEDDED, embedded_records, encode_chunk

MiB = 1024**2
PIECE = 60 * MiB  # each chunk under the 64 MiB chunk bound, as the reviewer's were


def _otlp(service: str) -> bytes:
    """A one-span OTLP/JSON request from ``service``."""
    span = {
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "00f067aa0ba902b7",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000000001000000",
    }
    resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
    doc = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": [span]}]}]}
    return json.dumps(doc).encode()


def _piece(stream: int, data: bytes, more: int) -> Record:
    return Record(R_EMBEDDED, stream, (("format", "otlp-json"), ("data", data), ("more", more)))


def write_bomb(path: Path, pieces: int) -> None:
    """Stream 1: ``pieces`` zstd chunks of 60 MiB of spaces (a few hundred bytes each on
    disk) then a last piece; stream 2: a good request from service ``kept``."""
    bomb = encode_chunk([_piece(1, b" " * PIECE, 1)], None, CODEC_ZSTD)
    with path.open("wb") as f:
        f.write(file_header())
        f.write(encode_chunk(embedded_records(2, "otlp-json", _otlp("kept")), None, CODEC_NONE))
        for _ in range(pieces):
            f.write(bomb)
        f.write(encode_chunk([_piece(1, b"{}", 0)], None, CODEC_NONE))


def run_measured(args: list[str], where: Path, timeout: float = 120) -> tuple[int, str, str, int]:
    """``python -m willowisp ARGS``: exit status, stdout, stderr and the peak RSS of that
    child alone in MiB: its VmHWM, read while it runs (its rusage would not do: Linux keeps
    the high-water mark of the forked copy of this test process, which a long test session
    grows past a GiB, in the child's ru_maxrss across exec; the peak comes while the file is
    decoded, long before the process ends)."""
    out, err = where / "stdout", where / "stderr"
    with out.open("wb") as so, err.open("wb") as se:
        proc = subprocess.Popen([sys.executable, "-m", "willowisp", *args], stdout=so, stderr=se)
    deadline = time.monotonic() + timeout
    peak_kb = 0
    while True:
        peak_kb = max(peak_kb, _hwm_kb(proc.pid))
        pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"willowisp {args} still running after {timeout} s")
        time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    return proc.returncode, out.read_text(), err.read_text(), peak_kb // 1024


def _hwm_kb(pid: int) -> int:
    """The process's peak resident size so far (VmHWM, kB); 0 once it is a zombie."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def test_embedded_stream_past_its_bound_is_unreadable_in_bounded_memory(tmp_path: Path) -> None:
    """600 MiB of decompressed pieces (the reviewer's bomb10, 20 KB on disk): that stream
    alone is unreadable (one line naming the file and the 256 MiB bound), memory stays far
    below what decoding it takes, and the file's other stream and another file are still
    analyzed."""
    bomb, good = tmp_path / "bomb.wtrace", tmp_path / "good.json"
    write_bomb(bomb, 10)
    good.write_bytes(_otlp("other"))
    code, out, err, rss = run_measured(
        ["analyze", "--format", "json", str(bomb), str(good)], tmp_path
    )
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"willowisp analyze: {bomb} (embedded stream 1, otlp-json): ")
    assert "256 MiB" in lines[0]
    doc = json.loads(out)
    assert {p["service"] for p in doc["processes"]} == {"kept", "other"}
    assert [u["path"] for u in doc["trace"]["unreadable_files"]] == [
        f"{bomb} (embedded stream 1, otlp-json)"
    ]
    # About 45 MiB to start, the 256 MiB the stream may hold, and one 60 MiB piece twice
    # (decompressed, and copied out of the chunk): ~400. Holding every decoded chunk until
    # the whole file was read took ~700.
    assert rss < 450, f"peak RSS {rss} MiB"


def test_text_report_and_validate_name_the_bound(tmp_path: Path) -> None:
    """``analyze`` lists the stream as unreadable; ``validate`` fails on it with one line,
    in the same bounded memory."""
    bomb = tmp_path / "bomb.wtrace"
    write_bomb(bomb, 10)
    code, out, err, _ = run_measured(["analyze", str(bomb)], tmp_path)
    assert code == 2 and "Traceback" not in err
    assert f"unreadable: {bomb} (embedded stream 1, otlp-json): decompressed, it is over" in out
    code, out, err, rss = run_measured(["validate", "--ci-mode", str(bomb)], tmp_path)
    assert code == 1 and "Traceback" not in err
    (line,) = [x for x in out.splitlines() if "unreadable-file" in x]
    assert "256 MiB bound on one stream" in line
    assert rss < 450, f"peak RSS {rss} MiB"


def test_load_bound_refuses_streams_past_it(tmp_path: Path) -> None:
    """Bounds per stream and per load: a stream past its own bound is refused, gives its
    bytes back and has its later pieces ignored to its end; bytes held by streams still
    open count against the load, so interleaved streams cannot add up past it."""
    path = tmp_path / "streams.wtrace"
    # (stream, more, bytes); bounds 1000 per stream, 1500 per load
    pieces = [(1, 0, 600), (2, 1, 600), (2, 1, 600), (2, 0, 600), (3, 1, 600)]
    pieces += [(4, 0, 600), (3, 0, 100)]  # 4 arrives while 3 holds 600: 1200 + 600 > 1500
    with path.open("wb") as f:
        f.write(file_header())
        for stream, more, size in pieces:
            f.write(encode_chunk([_piece(stream, b"x" * size, more)], None, CODEC_NONE))
    budget = EmbeddedBudget(per_stream=1000, per_load=1500)
    streams, native = split_embedded(read_file(path), budget)
    assert [(n, len(data), done) for n, _, data, done in streams] == [
        (1, 600, True),
        (3, 700, True),
    ]
    assert native is None
    per_stream = "decompressed, it is over the 1000-byte bound on one stream; left unread"
    per_load = (
        "decompressed, it would pass the 1500-byte bound on all embedded streams read "
        "together; left unread"
    )
    assert [(n, why) for n, _, why in budget.refused] == [(2, per_stream), (4, per_load)]
    assert budget.load_left == 1500 - 1300


def _contents(tf: TraceFile | None) -> object:
    if tf is None:
        return None
    chunks = [
        (c.index, c.offset, c.records, None if c.events is None else _columns(c.events))
        for c in tf.chunks
    ]
    return (tf.path, tf.major, tf.minor, tf.size, chunks, tf.problems, tf.truncated)


def _columns(ev: DecodedEvents) -> object:
    cols = (ev.kind, ev.unit, ev.time, ev.res, ev.arg, ev.loc)
    return ev.first_seq, [c.tolist() for c in cols]


def test_reading_chunk_by_chunk_keeps_the_same_contents(tmp_path: Path) -> None:
    """``read_wtrace`` (what ``analyze`` reads with, one chunk at a time) gives the same
    TraceFile and streams as reading the whole file and splitting it afterwards: for a run's
    segments, and for a file of events, a damaged chunk, interleaved streams, one of them
    refused, one never finished, and a tail the writer did not finish."""
    run = build_run(GOLDEN / "asyncio_locks", tmp_path / "run")
    mixed = tmp_path / "mixed.wtrace"
    (seg, *_) = sorted(run.glob("*.wtrace"))
    whole = seg.read_bytes()
    pieces = [(1, 1, 500), (2, 0, 300), (3, 1, 900), (1, 0, 10), (3, 1, 900), (4, 1, 5)]
    with mixed.open("wb") as f:
        f.write(whole)  # a header and chunks of records and events
        for n, (stream, more, size) in enumerate(pieces):
            chunk = encode_chunk([_piece(stream, bytes([65 + n]) * size, more)], None, CODEC_ZSTD)
            f.write(chunk[:-1] + b"?" if n == 3 else chunk)  # stream 1's end is damaged
        f.write(encode_chunk([_piece(5, b"{}", 0)], None, CODEC_NONE)[:30])
    for path in [*sorted(run.glob("*.wtrace")), mixed]:
        old_budget = EmbeddedBudget(per_stream=1000)
        whole_file = read_file(path)
        expected, native = split_embedded(whole_file, old_budget)
        assert native is whole_file  # every file here has events
        tf, streams = read_wtrace(str(path), budget := EmbeddedBudget(per_stream=1000))
        assert _contents(tf) == _contents(whole_file), path
        assert (streams or []) == expected, path
        assert (streams is None) == (path != mixed)  # None: no embedded record at all
        assert budget.refused == old_budget.refused and budget.load_left == old_budget.load_left
    assert [(n, len(d), done) for n, _, d, done in streams or []] == [
        (2, 300, True),
        (1, 500, False),
        (4, 5, False),
    ]
    assert [n for n, _, _ in budget.refused] == [3]
    assert len(tf.problems) == 1 and tf.truncated and tf.events > 0


def _deep_run(tmp_path: Path) -> Path:
    """A golden run whose process also has a stats record with ``by_boundary`` nested
    100,000 deep, a hop whose headers are nested 200,000 deep, and a 400 KB fault."""
    run = build_run(GOLDEN / "asyncio_locks", tmp_path / "run")
    (seg,) = run.glob("*.wtrace")
    deep_obj = '{"a":' * 100_000 + "1" + "}" * 100_000
    deep_list = "[" * 200_000 + "]" * 200_000
    records = [
        Record(6, 0, (("by_boundary", deep_obj), ("events", 5), ("faults", 1))),
        Record(5, 77, (("message", "boom " + deep_list), ("where", "hook"))),
        Record(
            3,
            999_999,
            (("kind", "rpc"), ("side", "server"), ("protocol", "http"), ("headers", deep_list)),
        ),
    ]
    with seg.open("ab") as f:
        f.write(encode_chunk(records, None, CODEC_NONE))
    return run


def test_json_nested_too_deep_is_a_bad_value_everywhere(tmp_path: Path) -> None:
    """analyze (text, json), export to perfetto / otlp-json / chrome, and validate read a
    trace with JSON nested too deep for the parser as any bad value: no RecursionError."""
    run = _deep_run(tmp_path)
    commands = [
        (["analyze", str(run)], (0, 1)),
        (["analyze", "--format", "json", str(run)], (0, 1)),
        (["export", str(run), "--to", "perfetto", "-o", str(tmp_path / "t.pftrace")], (0,)),
        (["export", str(run), "--to", "otlp-json", "-o", str(tmp_path / "t.json")], (0,)),
        (["export", str(run), "--to", "chrome", "-o", str(tmp_path / "t.chrome")], (0,)),
        (["validate", "--ci-mode", str(run)], (1,)),
        (["query", "--no-cache", str(run), "SELECT * FROM processes", "--format", "json"], (0,)),
    ]
    for args, codes in commands:
        code, _, err, _ = run_measured(args, tmp_path)
        assert code in codes, (args, code, err[-2000:])
        assert "Traceback" not in err and "RecursionError" not in err, (args, err[-2000:])
    assert (tmp_path / "t.pftrace").stat().st_size > 0


def test_validate_cuts_a_huge_fault_message(tmp_path: Path) -> None:
    """A 400 KB fault message is cut to head and tail in validate's lines, JUnit and SARIF."""
    run = _deep_run(tmp_path)
    junit, sarif = tmp_path / "v.xml", tmp_path / "v.sarif"
    args = ["validate", "--ci-mode", str(run), "--junit", str(junit), "--sarif", str(sarif)]
    code, out, err, _ = run_measured(args, tmp_path)
    assert code == 1, err
    (line,) = [x for x in out.splitlines() if "agent-fault" in x and "boom" in x]
    assert "characters left out" in line
    assert max(map(len, out.splitlines())) < 1000
    assert junit.stat().st_size < 50_000 and "characters left out" in junit.read_text()
    doc = json.loads(sarif.read_text())
    texts = [r["message"]["text"] for r in doc["runs"][0]["results"]]
    assert any("boom" in t and "characters left out" in t for t in texts)
    assert sarif.stat().st_size < 50_000


def test_float_time_is_one_clear_error(tmp_path: Path) -> None:
    """startTimeUnixNano 1e308: one line saying the value is out of range, no numpy
    RuntimeWarning (with its source path) before it."""
    doc = json.loads(_otlp("svc"))
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = 1e308
    path = tmp_path / "float.json"
    path.write_text(json.dumps(doc))
    code, _, err, _ = run_measured(["analyze", str(path)], tmp_path)
    assert code == 2
    assert err.splitlines() == [
        f"willowisp analyze: {path}: no usable OTLP JSON span: 1 of 1 OTLP JSON span skipped "
        "as malformed (first: 1e+308 is out of the 64-bit range)"
    ]
