"""The agent's stream writer against a real collector receiver: delivery, acknowledgement,
and falling back to files (never losing a chunk) when the collector is missing, refuses,
stops, stalls or comes back."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from willowisp.agent import stream
from willowisp.agent.stream import StreamWriter, parse_address
from willowisp.collect.native import NativeReceiver
from willowisp.wtrace.payload import Record
from willowisp.wtrace.reader import read_file

PID = "5f0c3a9e1d2b4c6f8a7e9d0b1c2a3f4e"
HELLO = {"process_id": PID, "service": "svc", "pid": 4242, "runtime": "python", "segment": 1}
PROCESS = Record(1, 0, (("process_id", PID), ("service", "svc")))


def note(i: int) -> Record:
    """A distinguishable chunk content (a stats-like record with a counter)."""
    return Record(6, 0, (("events", i),))


class Faults:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, where: str, message: str) -> int:
        self.seen.append((where, message))
        return 1000 + len(self.seen)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[NativeReceiver]:
    r = NativeReceiver(str(tmp_path / "col"), token="t0ken")
    r.start()
    try:
        yield r
    finally:
        r.stop()


def contents(path: str) -> list[tuple[int, int, object]]:
    """(record type, id, first attribute value) of every record, in file order."""
    tf = read_file(path)
    assert tf.problems == [] and not tf.truncated
    return [(r.rtype, r.id, r.attrs[0][1]) for c in tf.chunks for r in c.records]


def numbers(path: str) -> list[int]:
    return [int(v) for t, _, v in contents(path) if t == 6 and isinstance(v, int)]


def writer(address: str, tmp_path: Path, faults: Faults, token: str = "t0ken") -> StreamWriter:
    return StreamWriter(
        address, token, str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace"),
        hello=HELLO, on_fault=faults,
    )  # fmt: skip


def test_chunks_arrive_acknowledged_and_in_order(collector: NativeReceiver, tmp_path):
    """Every chunk is in the collector's file, in order; nothing falls back."""
    faults = Faults()
    w = writer(collector.address, tmp_path, faults)
    w.write_chunk([PROCESS])
    for i in range(1, 51):
        w.write_chunk([note(i)])
    assert w.sync()
    w.close()
    [path] = collector.stats.files
    assert numbers(path) == list(range(1, 51))
    assert contents(path)[0][0] == 1  # the process record first
    assert faults.seen == [] and not (tmp_path / "out").exists()
    assert Path(path).name == w.collector_file == "svc-4242-5f0c3a9e-1.wtrace"


def test_stream_over_a_unix_socket(tmp_path):
    """WILLOWISP_COLLECTOR=unix:/path reaches a collector listening on that socket."""
    folder = tempfile.mkdtemp(prefix="wisp-u-", dir="/tmp")
    r = NativeReceiver(str(tmp_path / "col"), unix_path=f"{folder}/c.sock")
    try:
        assert r.start() == f"unix:{folder}/c.sock"
        faults = Faults()
        w = writer(r.address, tmp_path, faults)
        w.write_chunk([PROCESS])
        w.write_chunk([note(7)])
        w.close()
    finally:
        r.stop()
        shutil.rmtree(folder, ignore_errors=True)
    assert faults.seen == []
    [path] = r.stats.files
    assert numbers(path) == [7]


def test_unreachable_collector_falls_back_to_the_file(tmp_path):
    """Nothing listens: the segment file gets a fault record, then every chunk."""
    with socket.socket() as held:  # bound, not listening: connections are refused
        held.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{held.getsockname()[1]}"
        faults = Faults()
        w = writer(address, tmp_path, faults)
        w.write_chunk([PROCESS])
        w.write_chunk([note(1)])
        w.close()
    [(where, message)] = faults.seen
    assert where == "stream" and "unreachable" in message and address in message
    path = str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace")
    got = contents(path)
    assert got[0] == (5, 1001, message)  # the fault record, first in the file
    assert numbers(path) == [1]


def test_wrong_token_is_refused_and_falls_back(collector: NativeReceiver, tmp_path):
    """A collector that refuses the hello: the fault says why, the chunks are in the file."""
    faults = Faults()
    w = writer(collector.address, tmp_path, faults, token="wrong")
    w.write_chunk([note(1)])
    w.close()
    assert "unauthorized" in faults.seen[0][1]
    assert numbers(str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace")) == [1]
    assert collector.stats.files == []


def test_collector_stopping_mid_stream_loses_nothing(tmp_path):
    """Acknowledged chunks are in the collector's file; the rest go to the agent's file
    with a fault; together they are every chunk exactly once."""
    r = NativeReceiver(str(tmp_path / "col"))
    r.start()
    faults = Faults()
    w = writer(r.address, tmp_path, faults)
    w.write_chunk([PROCESS])
    for i in range(1, 11):
        w.write_chunk([note(i)])
    assert w.sync()
    r.stop()
    for i in range(11, 21):
        w.write_chunk([note(i)])
    w.close()
    [collected] = r.stats.files
    fallback = str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace")
    assert numbers(collected) == list(range(1, 11))
    assert numbers(fallback) == list(range(11, 21))
    # the collector said bye: an orderly fallback, nothing lost, counted but no fault
    assert faults.seen == [] and w.status()["fallbacks"] == 1
    assert contents(fallback)[0][0] == 1  # the fallback file describes its process


def test_collector_coming_back_gets_the_stream_again(tmp_path, monkeypatch):
    """After a fallback the writer retries (backing off, without end); a new connection
    starts with the process record, and the outage's chunks stay in the file."""
    monkeypatch.setattr(stream, "RETRY_DELAYS_S", (0.0, 0.0))
    r = NativeReceiver(str(tmp_path / "col"))
    r.start()
    host, port = r.address.rsplit(":", 1)
    faults = Faults()
    w = writer(r.address, tmp_path, faults)
    w.write_chunk([PROCESS])
    w.write_chunk([note(1)])
    assert w.sync()
    r.stop()
    w.write_chunk([note(2)])  # falls back
    r2 = NativeReceiver(str(tmp_path / "col"), host=host, port=int(port))
    r2.start()
    try:
        w.write_chunk([note(3)])  # reconnects
        assert w.sync()
        w.close()
    finally:
        r2.stop()
    first, second = sorted(r.stats.files + r2.stats.files)
    assert numbers(first) == [1] and numbers(second) == [3]
    assert contents(second)[0][0] == 1
    assert numbers(str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace")) == [2]
    assert faults.seen == []  # r stopped in order (bye): no fault


def test_stalled_collector_is_given_up_on(tmp_path, monkeypatch):
    """A collector that accepts the hello and then never acknowledges: past the bound on
    unacknowledged chunks the writer falls back, and those chunks are in the file."""
    monkeypatch.setattr(stream, "MAX_UNACKED_CHUNKS", 3)
    monkeypatch.setattr(stream, "SEND_TIMEOUT_S", 0.2)
    monkeypatch.setattr(stream, "RETRY_DELAYS_S", ())
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        address = f"127.0.0.1:{ls.getsockname()[1]}"

        def answer_hello() -> None:
            conn, _ = ls.accept()
            conn.recv(65536)
            body = b'{"ok":true,"op":"hello","version":1,"file":"x"}'
            conn.sendall(b"WSTR" + len(body).to_bytes(4, "little") + body)
            done.wait()
            conn.close()

        done = threading.Event()
        t = threading.Thread(target=answer_hello)
        t.start()
        try:
            faults = Faults()
            w = writer(address, tmp_path, faults)
            for i in range(1, 8):
                w.write_chunk([note(i)])
            w.close()
        finally:
            done.set()
            t.join()
    assert "not acknowledged" in faults.seen[0][1]
    assert numbers(str(tmp_path / "out" / "svc-4242-5f0c3a9e-1.wtrace")) == list(range(1, 8))


@pytest.mark.parametrize(
    ("address", "family", "where"),
    [
        ("127.0.0.1:4319", socket.AF_INET, ("127.0.0.1", 4319)),
        ("tcp://localhost:80", socket.AF_INET, ("localhost", 80)),
        ("[::1]:9", socket.AF_INET6, ("::1", 9)),
        ("unix:/run/wisp.sock", socket.AF_UNIX, "/run/wisp.sock"),
    ],
)
def test_collector_addresses(address, family, where):
    """WILLOWISP_COLLECTOR forms: host:port, tcp://host:port, [v6]:port, unix:/path."""
    assert parse_address(address) == (family, where)


@pytest.mark.parametrize("bad", ["", "nohost", "host:", "host:0", "host:99999", "unix:rel"])
def test_bad_collector_addresses(bad):
    """Anything else is a ValueError (the agent turns it into a fault and writes files)."""
    with pytest.raises(ValueError):
        parse_address(bad)
