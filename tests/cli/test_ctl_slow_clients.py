"""The control channel's hello limit is absolute: clients that trickle a byte at a time are
closed with `timeout` 5 s after connecting, so they cannot keep `willowisp ctl` out."""

from __future__ import annotations

import glob
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROGRAM = "import os, sys\nprint(os.getpid(), flush=True)\nsys.stdin.read()\n"
SLOTS = 4  # the Python agent serves this many control connections at once
HEADER = b"WCTL" + struct.pack("<I", 60000)  # a frame that would take a long time to finish


@pytest.fixture
def program(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], int]]:
    """A Python program under `willowisp run` with the control channel on 127.0.0.1 too."""
    folder = tempfile.mkdtemp(prefix="wisp-slow-", dir="/tmp")
    os.chmod(folder, 0o700)
    env = {**os.environ, "WILLOWISP_RUNTIME_DIR": folder, "WILLOWISP_CONTROL": "tcp"}
    script = tmp_path / "prog.py"
    script.write_text(PROGRAM)
    proc = subprocess.Popen(
        [sys.executable, "-m", "willowisp", "run", "--out", str(tmp_path / "run"),
         "--", sys.executable, str(script)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        pid = int(proc.stdout.readline())
        yield proc, env, pid
    finally:
        if proc.poll() is None:
            proc.stdin.close()  # type: ignore[union-attr]
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        shutil.rmtree(folder, ignore_errors=True)


def _tcp_port(folder: str, pid: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for path in glob.glob(os.path.join(folder, f"{pid}-*.json")):
            tcp = json.loads(Path(path).read_text()).get("tcp", "")
            if tcp:
                return int(tcp.rpartition(":")[2])
        time.sleep(0.05)
    raise AssertionError(f"no control descriptor with a TCP address for pid {pid} in {folder}")


def _error_code(data: bytes) -> str:
    magic, length = struct.unpack("<4sI", data[:8])
    assert magic == b"WCTL" and len(data) >= 8 + length, data
    reply = json.loads(data[8 : 8 + length])
    assert reply["ok"] is False, reply
    return str(reply["error"]["code"])


def test_dripping_clients_are_timed_out_and_ctl_still_works(program) -> None:
    """Clients sending one byte every 0.5 s each get `timeout` about 5 s after connecting
    (not a fresh 5 s per byte), and `ctl status` then works while their sockets stay open."""
    _proc, env, pid = program
    port = _tcp_port(env["WILLOWISP_RUNTIME_DIR"], pid)
    t0 = time.monotonic()
    slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(SLOTS)]
    answered: dict[socket.socket, tuple[float, bytes]] = {}
    sent = 0
    try:
        while len(answered) < SLOTS and time.monotonic() - t0 < 12:
            for s in slow:
                if s not in answered:
                    s.send(HEADER[sent : sent + 1] if sent < len(HEADER) else b" ")
            sent += 1
            ready, _, _ = select.select([s for s in slow if s not in answered], [], [], 0.5)
            for s in ready:
                s.settimeout(2)
                answered[s] = (time.monotonic() - t0, s.recv(4096))
        assert len(answered) == SLOTS, f"only {len(answered)} of {SLOTS} were closed in 12 s"
        for when, data in answered.values():
            assert _error_code(data) == "timeout"
            assert 4.0 <= when <= 7.0, f"closed after {when:.1f} s, expected about 5 s"
        r = subprocess.run(
            [sys.executable, "-m", "willowisp", "ctl", str(pid), "status", "--format", "json"],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        [proc] = json.loads(r.stdout)["processes"]
        assert proc["result"]["control"]["busy"] == 0
    finally:
        for s in slow:
            s.close()
