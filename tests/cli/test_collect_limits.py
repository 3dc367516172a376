"""`willowisp collect` under hostile peers (a security review's findings): incomplete native
chunks share one memory budget (`busy` beyond it); a hello or an HTTP request head dripped a
byte at a time is cut off at an absolute deadline; an idle keep-alive connection makes room
for a new client at the connection limit; a chunked body of tiny chunks costs its bytes,
not an object per chunk. Real collector processes, raw sockets on 127.0.0.1."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from willowisp.channel.frames import MAX_MESSAGE_BODY, STREAM_MAGIC, pack_frame, parse_object
from willowisp.channel.frames import read_frame as _read_frame
from willowisp.collect.native import HELLO_TIMEOUT_S, MAX_PENDING_BYTES
from willowisp.collect.otlp_http import HEAD_TIMEOUT_S, MAX_CONNECTIONS
from willowisp.wtrace.framing import CHUNK_MAGIC, MAX_CHUNK_BYTES
from wispkit import faults_in

MIB = 1024 * 1024
TOKEN = "sekrit-token"
SLACK_S = 2.5  # how late past a deadline a close may come on a loaded 2-core machine
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class Collector:
    """`willowisp collect --native 0 --otlp-http 0 --token T`; addresses from its lines."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "willowisp", "collect", "--native", "0", "--otlp-http", "0",
             "--token", TOKEN, "--out", str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        lines = [self.proc.stdout.readline() for _ in range(3)]
        native = re.search(r"native stream on (\S+):(\d+), writing", lines[0])
        http_m = re.search(r"OTLP/HTTP on http://(\S+):(\d+)/v1/traces", lines[2])
        assert native and http_m, (lines, self.proc.stderr.read() if self.proc.stderr else "")
        self.native = (native.group(1), int(native.group(2)))
        self.http = (http_m.group(1), int(http_m.group(2)))

    def memory_mib(self, field: str) -> float:
        """VmRSS (now) or VmHWM (the peak so far) of the collector process."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError(f"no {field}")

    def post(self, body: bytes) -> int:
        conn = http.client.HTTPConnection(*self.http, timeout=30)
        try:
            conn.request("POST", "/v1/traces", body=body, headers=AUTH)
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "collected")
    try:
        yield c
    finally:
        c.stop()


# --- the native stream -------------------------------------------------------------------


def native_hello(c: Collector, n: int) -> socket.socket:
    """A connection past an accepted hello."""
    s = socket.create_connection(c.native, timeout=10)
    hello = {"op": "hello", "versions": [1], "token": TOKEN, "format": [1, 0],
             "process_id": f"{n:032x}", "pid": n, "service": "hog"}  # fmt: skip
    s.sendall(pack_frame(STREAM_MAGIC, hello))
    assert reply(s).get("ok") is True
    return s


def reply(s: socket.socket) -> dict:
    body = _read_frame(s, STREAM_MAGIC, MAX_MESSAGE_BODY)
    assert body is not None, "the collector closed without a message"
    return parse_object(body)


def chunk_header(stored: int, payload_crc: int = 0) -> bytes:
    """A chunk header of codec `none` (docs/format.md): magic, codec, 2 reserved, lengths."""
    return struct.pack("<4sBBHIII", CHUNK_MAGIC, 0, 0, 0, stored, stored, payload_crc)


def small_chunk() -> bytes:
    payload = b"an honest payload (the collector does not interpret it)"
    return chunk_header(len(payload), zlib.crc32(payload)) + payload


def honest_stream_acknowledged(c: Collector, deadline: float) -> None:
    """An honest connection's chunk is acknowledged; `busy` answers are retried (the
    collector releases a closed hog's reservation a moment after it sees the close)."""
    while True:
        s = native_hello(c, 999)
        try:
            s.sendall(small_chunk())
            msg = reply(s)
            if msg.get("op") == "ack":
                assert msg["chunks"] == 1
                s.sendall(pack_frame(STREAM_MAGIC, {"op": "bye"}))
                assert reply(s) == {"op": "bye", "chunks": 1}
                return
            assert msg["error"]["code"] == "busy", msg
            assert time.monotonic() < deadline, "still busy after the hogs left"
        finally:
            s.close()


def test_incomplete_chunks_share_one_budget(collector: Collector, tmp_path: Path):
    """Four connections each declare a 64 MiB chunk and send most of it: the 256 MiB budget
    is taken, so further chunks are answered `busy` at once (before their bodies are read)
    and the collector's memory stays near the budget; a real agent told `busy` keeps its
    chunks in its own file. Once the hogs leave, an honest stream and a real agent's
    stream are served again."""
    hogs_fit = MAX_PENDING_BYTES // MAX_CHUNK_BYTES
    assert hogs_fit == 4
    sent = 40 * MIB
    base = collector.memory_mib("VmRSS")
    hogs = []
    try:
        for n in range(hogs_fit):
            s = native_hello(collector, n)
            hogs.append(s)
            s.sendall(chunk_header(MAX_CHUNK_BYTES) + bytes(sent))
        for n in range(hogs_fit, hogs_fit + 4):
            s = native_hello(collector, n)
            with s:
                s.sendall(chunk_header(MAX_CHUNK_BYTES))
                msg = reply(s)
                assert msg["error"]["code"] == "busy" and msg["chunks"] == 0, msg
        grown = collector.memory_mib("VmHWM") - base
        # each hog's bytes are held once (not as pieces, not copied): 4 x 40 MiB plus
        # a buffer's growth slack; the old collector took 64 MiB more per extra hog
        assert grown < hogs_fit * sent / MIB + 64, grown
        refused_out = tmp_path / "refused-out"
        run_agent(collector, tmp_path, refused_out, "refused")
        assert any("busy" in m for m in faults_in(refused_out)), faults_in(refused_out)
    finally:
        for s in hogs:
            s.close()
    honest_stream_acknowledged(collector, time.monotonic() + 10)
    agent_out = tmp_path / "agent-out"
    run_agent(collector, tmp_path, agent_out, "honest")
    assert list(collector.out.glob("honest-*.wtrace")), sorted(collector.out.iterdir())
    assert not list(agent_out.glob("*.wtrace")), "the agent fell back to its own file"


def run_agent(c: Collector, tmp_path: Path, out: Path, service: str) -> None:
    """A small Python program under `willowisp run`, streaming to the collector."""
    script = tmp_path / "prog.py"
    script.write_text("import threading\nlock = threading.Lock()\nwith lock:\n    pass\n")
    host, port = c.native
    env = {**os.environ, "WILLOWISP_SERVICE": service, "WILLOWISP_TOKEN": TOKEN,
           "WILLOWISP_COLLECTOR": f"{host}:{port}"}  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "willowisp", "run", "--out", str(out), "--",
         sys.executable, str(script)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def closed_at(s: socket.socket, drip: bytes, give_up: float) -> float:
    """Send ``drip`` a byte at a time, one every 0.5 s, until the collector closes the
    connection (waiting on the socket between bytes); the monotonic time it did."""
    for i in range(len(drip)):
        try:
            s.send(drip[i : i + 1])
        except OSError:
            return time.monotonic()
        readable, _, _ = select.select([s], [], [], 0.5)
        if readable:
            return time.monotonic()
        assert time.monotonic() < give_up, "the dripping connection is still open"
    raise AssertionError("ran out of bytes to drip")


def test_dripped_hello_is_closed_at_its_deadline(collector: Collector):
    """A hello sent one byte every half second (each read well inside any per-read limit)
    is cut off HELLO_TIMEOUT_S after connect with a `timeout` error."""
    s = socket.create_connection(collector.native, timeout=10)
    with s:
        start = time.monotonic()
        drip = struct.pack("<4sI", STREAM_MAGIC, 60000) + b" " * 200
        end = closed_at(s, drip, start + HELLO_TIMEOUT_S + SLACK_S)
        assert HELLO_TIMEOUT_S - 0.5 <= end - start <= HELLO_TIMEOUT_S + SLACK_S
        msg = reply(s)
        assert msg["error"]["code"] == "timeout" and "hello" in msg["error"]["message"], msg


# --- OTLP/HTTP ---------------------------------------------------------------------------


def eof(s: socket.socket, deadline: float) -> bool:
    """Whether the peer closed ``s`` before ``deadline`` (anything sent before is read)."""
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            return False
        try:
            if not s.recv(65536):
                return True
        except ConnectionError:
            return True
    return False


def test_stalled_heads_cannot_hold_the_http_connections(collector: Collector):
    """Unauthenticated connections that send "P" and stop fill the connection limit, next
    to one authorized keep-alive connection between requests. A new authorized POST still
    succeeds (the idle keep-alive connection is closed to make room), and the "P"
    connections are closed HEAD_TIMEOUT_S after connect, not after the 120 s idle limit."""
    kept = http.client.HTTPConnection(*collector.http, timeout=30)
    stalled: list[socket.socket] = []
    try:
        kept.request("POST", "/v1/traces", body=b'{"resourceSpans": []}', headers=AUTH)
        answer = kept.getresponse()
        answer.read()
        assert answer.status == 200 and not answer.will_close
        assert kept.sock is not None
        first = time.monotonic()
        for _ in range(MAX_CONNECTIONS - 1):
            s = socket.create_connection(collector.http, timeout=10)
            s.sendall(b"P")
            stalled.append(s)
        last = time.monotonic()
        assert collector.post(b'{"resourceSpans": []}') == 200
        assert eof(kept.sock, time.monotonic() + 5), "the idle keep-alive connection is open"
        assert first + HEAD_TIMEOUT_S - 0.5 > time.monotonic(), "the test itself was too slow"
        for s in stalled:
            assert eof(s, last + HEAD_TIMEOUT_S + SLACK_S), "a stalled head is still open"
        assert time.monotonic() >= first + HEAD_TIMEOUT_S - 0.5
        assert collector.post(b'{"resourceSpans": []}') == 200
    finally:
        kept.close()
        for s in stalled:
            s.close()


def test_tiny_chunks_cost_their_bytes(collector: Collector):
    """A 2 MiB chunked body in 2-byte chunks (a million of them) is accepted while the
    collector's peak memory grows by a few times the body, not by objects per chunk."""
    assert collector.post(b'{"resourceSpans": []}') == 200  # imports and files are warm
    before = collector.memory_mib("VmHWM")
    n = 1024 * 1024
    with socket.create_connection(collector.http, timeout=30) as s:
        s.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
            + f"\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"2\r\n{}\r\n"
            + b"2\r\n  \r\n" * (n - 1)
            + b"0\r\n\r\n"
        )
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    grown = collector.memory_mib("VmHWM") - before
    # measured: +12 MiB (the body, its copy, the store's chunks, a worker's arena); the
    # collector that kept a list of pieces grew by 138 MiB
    assert grown < 40, grown
    assert collector.post(json.dumps({"resourceSpans": []}).encode()) == 200
